import json

import numpy as np
import pytest

from inverse_air.objects3d.prior import sample_scene
from inverse_air.objects3d.scene import (POSITION_MAX, POSITION_MIN, SHAPES, ObjectSpec, Scene, SceneError,
                               load_scene, min_distance, save_scene, scene_from_dict,
                               scenes_to_arrays)

SCALE = 0.6


def write(tmp_path, text, name="s.json"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_scene_round_trips(tmp_path):
    path = write(tmp_path, json.dumps({"objects": [
        {"shape": "cube", "position": [0.3, -0.2], "yaw_deg": 30.0},
        {"shape": "sphere", "position": [-0.5, 0.4]}]}))
    scene = load_scene(path, SCALE)
    assert [o.shape for o in scene.objects] == ["cube", "sphere"]
    assert scene.objects[1].yaw_deg == 0.0
    assert scene.objects[0].label == SHAPES.index("cube")
    save_scene(scene, tmp_path / "copy.json")
    assert load_scene(tmp_path / "copy.json", SCALE) == scene


@pytest.mark.parametrize("text, expected", [
    ('{"objects": [', "invalid JSON at line 1"),
    ('{"objects": [{"shape": "pyramid", "position": [0, 0]}]}', "object 0: field 'shape': unknown shape \"pyramid\""),
    ('{"objects": [{"shape": "cube"}]}', "object 0: field 'position' is missing"),
    ('{"objects": [{"shape": "cube", "position": ["a", 0]}]}', "object 0: field 'position': expected a number"),
    ('{"objects": [{"shape": "cube", "position": [0]}]}', "object 0: field 'position': expected [x, z]"),
    ('{"objects": [{"shape": "cube", "position": [0, 0], "yaw_deg": "x"}]}', "object 0: field 'yaw_deg'"),
    ('{"objects": [{"shape": "cube", "position": [0, 0]}, {"shape": "cube", "position": [1.5, 0]}]}',
     "object 1: field 'position': x = 1.5 is outside the valid region [-1, 1]"),
    ('{"objects": [{"shape": "cube", "position": [0, 0]}, {"shape": "sphere", "position": [0.1, 0]}]}',
     "object 1: field 'position': overlaps object 0"),
    ('[1, 2]', "expected a JSON object with an 'objects' list"),
])
def test_bad_scene_files_name_file_object_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SceneError) as info:
        load_scene(path, SCALE)
    message = str(info.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_missing_file_is_a_scene_error(tmp_path):
    with pytest.raises(SceneError, match="cannot read"):
        load_scene(tmp_path / "nope.json", SCALE)


def test_sampled_scenes_are_valid_and_deterministic():
    rng = np.random.default_rng(7)
    for count in [0, 1, 2, 3, 3, 3, 4]:
        scene = sample_scene(rng, count, SCALE)
        assert len(scene.objects) == count
        # validation accepts what the sampler produces
        scene_from_dict(scene.to_dict(), SCALE)
        for o in scene.objects:
            assert POSITION_MIN <= o.position[0] <= POSITION_MAX
            assert 0.0 <= o.yaw_deg < 360.0
    a = sample_scene(np.random.default_rng(1), 3, SCALE)
    b = sample_scene(np.random.default_rng(1), 3, SCALE)
    assert a == b


def test_min_distance_is_sum_of_footprints():
    assert min_distance("sphere", "sphere", 1.0) == pytest.approx(1.0)
    assert min_distance("cube", "cube", 0.5) == pytest.approx(np.sqrt(0.5))
    assert Scene().to_dict() == {"objects": []}


def test_scenes_to_arrays_pads_empty_slots():
    scenes = [Scene((ObjectSpec("cylinder", (0.5, -0.25), 30.0),)), Scene()]
    a = scenes_to_arrays(scenes, 2)
    assert a["shape"].tolist() == [[2, -1], [-1, -1]]
    assert a["position"][0, 0].tolist() == [0.5, -0.25] and a["yaw"][0, 0] == 30.0
    with pytest.raises(ValueError, match="more than 0 slots"):
        scenes_to_arrays(scenes, 0)


def test_a_huge_yaw_is_reduced_by_whole_turns_and_renders(renderer):
    import math

    import torch

    from inverse_air.objects3d.render3d import scenes_to_tensors

    huge = scene_from_dict({"objects": [{"shape": "cube", "position": [0, 0], "yaw_deg": 1e300}]}, SCALE)
    assert huge.objects[0].yaw_deg == math.fmod(1e300, 360.0) and -360 <= huge.objects[0].yaw_deg <= 360
    assert scene_from_dict({"objects": [{"shape": "cube", "position": [0, 0], "yaw_deg": 750}]},
                           SCALE).objects[0].yaw_deg == 30.0
    assert scene_from_dict({"objects": [{"shape": "cube", "position": [0, 0], "yaw_deg": -30}]},
                           SCALE).objects[0].yaw_deg == -30.0  # in range: kept as it is
    image = renderer(*scenes_to_tensors([huge]))
    same = renderer(*scenes_to_tensors([Scene((ObjectSpec("cube", (0.0, 0.0), huge.objects[0].yaw_deg),))]))
    # exact: the same scene rendered twice in one process
    assert torch.isfinite(image).all() and torch.equal(image, same) and image.std() > 0.05
