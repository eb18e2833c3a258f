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


def test_each_camera_and_light_field_is_optional(renderer, tmp_path):
    """A camera (or light) giving some of its fields takes the render config's value for the
    others: the same image as giving those values."""
    cases = [({"camera": {"elevation_deg": 35.0}},
              {"camera": {"elevation_deg": 35.0, "azimuth_deg": 0.0, "distance": 5.8}}),
             ({"camera": {"distance": 7.0}, "light": {"ambient": 0.2}},
              {"camera": {"elevation_deg": 60.0, "azimuth_deg": 0.0, "distance": 7.0},
               "light": {"direction": [-0.4, 1.0, 0.6], "ambient": 0.2, "diffuse": 0.65}}),
             ({"light": {"direction": [1.0, 1.0, 0.0]}, "camera": {}},
              {"light": {"direction": [1.0, 1.0, 0.0], "ambient": 0.35, "diffuse": 0.65}})]
    objects = [{"shape": "cube", "position": [0.2, 0.1], "yaw_deg": 20.0}]
    plain = renderer.render_scenes([scene_from_dict({"objects": objects}, SCALE)])[0].astype(int)
    for partial, full in cases:
        scene = load_scene(write(tmp_path, json.dumps({**partial, "objects": objects})), SCALE)
        image = renderer.render_scenes([scene])[0].astype(int)
        same = renderer.render_scenes([scene_from_dict({**full, "objects": objects}, SCALE)])[0].astype(int)
        assert np.abs(image - same).max() <= 1 and np.abs(image - plain).max() > 20, partial
        assert load_scene(write(tmp_path, json.dumps(scene.to_dict()), "copy.json"), SCALE) == scene


@pytest.mark.parametrize("direction", [[1e-320, 1e-320, 1e-320], [0, 0, 0], [1e-310, 0, 0], [1.7e308, 1.7e308, 1.7e308]])
def test_a_light_direction_without_a_length_is_refused(tmp_path, direction):
    """A direction whose length is 0, subnormal or overflows has no direction: one line naming
    the file and field (not a black image)."""
    path = write(tmp_path, json.dumps({"light": {"direction": direction, "ambient": 0.3, "diffuse": 0.7},
                                       "objects": []}))
    with pytest.raises(SceneError) as info:
        load_scene(path, SCALE)
    message = str(info.value)
    assert str(path) in message and "field 'light': direction" in message and "no direction" in message
    assert "\n" not in message


def test_a_huge_light_direction_is_normalized_in_float64(renderer):
    """[1e200, 1e200, 1e200] points where [1, 1, 1] does (it rendered as diffuse 0)."""
    objects = [{"shape": "cube", "position": [0.0, 0.0]}]
    light = {"ambient": 0.3, "diffuse": 0.7}
    huge = renderer.render_scenes([scene_from_dict({"light": {**light, "direction": [1e200] * 3},
                                                    "objects": objects}, SCALE)])[0]
    unit = renderer.render_scenes([scene_from_dict({"light": {**light, "direction": [1.0] * 3},
                                                    "objects": objects}, SCALE)])[0]
    assert np.abs(huge.astype(int) - unit).max() <= 1


def test_render_scene_refuses_a_light_without_direction_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from inverse_air.cli import app

    path = write(tmp_path, json.dumps({"light": {"direction": [1e-320] * 3, "ambient": 0.3, "diffuse": 0.7},
                                       "objects": []}))
    result = CliRunner().invoke(app, ["render-scene", str(path), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 1 and not (tmp_path / "out.png").exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "field 'light': direction" in lines[0]
