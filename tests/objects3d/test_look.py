"""The look table: scene file -> arrays -> latent vector -> description round trips, one range per
quantity (what the prior draws, the configs accept and shards hold, scene files accept), and
the order of the camera's fields."""

import json

import numpy as np
import pytest
import torch

from inverse_air.config import ConfigError
from inverse_air.objects3d.codec import describe_look, describe_objects, targets_from_arrays
from inverse_air.objects3d.config import Objects3DConfig, RenderConfig, Variation
from inverse_air.objects3d.look import (FACTOR, FACTORS, GROUPS, IMAGE, OBJECT, TRUTH_ORDER, CameraPose, defaults,
                                        varied)
from inverse_air.objects3d.posterior import LookPosterior
from inverse_air.objects3d.prior import intervals, sample_prior
from inverse_air.objects3d.scene import SHAPES, scene_from_dict, scenes_to_arrays

SCENE = {"camera": {"elevation_deg": 52.0, "azimuth_deg": -12.5, "distance": 6.1},
         "light": {"direction": [0.3, 0.8, -0.52], "ambient": 0.3, "diffuse": 0.7},
         "ground_color": [0.3, 0.4, 0.5],
         "objects": [{"shape": "cube", "position": [0.3, -0.2], "yaw_deg": 30.0, "color": [0.8, 0.2, 0.4], "size": 0.5},
                     {"shape": "sphere", "position": [-0.5, 0.5], "yaw_deg": 0.0, "color": [0.3, 0.9, 0.6],
                      "size": 0.7}]}
"""A scene file giving every factor of the look, inside the default prior's ranges."""


def scene_value(data: dict, factor):
    for key in factor.scene:
        data = data[key]
    return data


def test_the_look_table_round_trips_from_scene_file_to_vector_to_description():
    """scene file -> arrays -> the latent vector the network reads -> back -> a scene file's terms."""
    scene = scene_from_dict(SCENE, 0.6)
    assert scene.to_dict() == SCENE
    arrays = scenes_to_arrays([scene], 3, RenderConfig())
    for f in FACTORS:  # every factor is in its array, where the table says
        given = scene_value(SCENE if f.per == IMAGE else SCENE["objects"][0], f)
        if f.direction:
            given = np.asarray(given) / np.linalg.norm(given)
        np.testing.assert_allclose(f.take(arrays[f.array][0]) if f.per == IMAGE else f.take(arrays[f.array][0, 0]),
                                   given, atol=1e-6, err_msg=f.name)
    targets = targets_from_arrays(arrays, 3)  # objects nearest first: the sphere, then the cube
    latents = intervals(Variation(), RenderConfig())
    image, objects = LookPosterior(varied(GROUPS, IMAGE), latents), LookPosterior(varied(GROUPS, OBJECT), latents)
    assert list(image.vector) + list(objects.vector) == [f.name for f in FACTORS]  # the table's order
    vector = image.to_vector(targets)  # (1, 11)
    assert vector.shape == (1, image.vector.size) and image.vector.size == 11
    assert float(vector.min()) >= -1 and float(vector.max()) <= 1
    look = describe_look(image.from_vector(vector))[0]
    per_step = [objects.from_vector(objects.to_vector({f.array: targets[f.array][:, i] for f in objects.factors}))
                for i in range(2)]
    steps = {"identity": targets["identity"][:, :2], "position": targets["position"][:, :2],
             "yaw": targets["yaw"][:, :2], "identity_probs": torch.nn.functional.one_hot(targets["identity"][:, :2], 3),
             **{k: torch.stack([step[k] for step in per_step], 1) for k in per_step[0]}}
    described = describe_objects(steps)[0]
    expected = dict(SCENE, objects=[SCENE["objects"][1], SCENE["objects"][0]])
    light = np.asarray(SCENE["light"]["direction"])
    expected["light"] = dict(SCENE["light"], direction=list(light / np.linalg.norm(light)))
    for f in FACTORS:
        if f.per == IMAGE:
            np.testing.assert_allclose(scene_value(look, f), scene_value(expected, f), atol=2e-4, err_msg=f.name)
        else:
            for step, obj in zip(described, expected["objects"]):
                np.testing.assert_allclose(scene_value(step, f), scene_value(obj, f), atol=2e-3, err_msg=f.name)
    assert [s["shape"] for s in described] == ["sphere", "cube"] and described[1]["yaw_deg"] == pytest.approx(30.0)


def test_the_camera_arrays_hold_the_named_fields_in_order():
    assert [f.field for f in FACTORS if f.array == "camera"] == list(CameraPose._fields)
    pose = CameraPose.of(np.array([[50.0, -10.0, 6.0]]))
    assert (pose.elevation_deg[0], pose.azimuth_deg[0], pose.distance[0]) == (50.0, -10.0, 6.0)
    assert [f.column for f in FACTORS if f.array == "camera"] == [0, 1, 2]


def test_the_ground_truth_order_is_the_shards():
    """Shards have always listed the objects' size, then colour, then the image's looks."""
    assert [f.array for f in TRUTH_ORDER] == ["size", "color", "camera", "camera", "camera", "light_direction",
                                             "ambient", "diffuse", "ground_color"]


def widest() -> Variation:
    """A prior whose every range is its factor's whole valid range (the camera's distance just
    inside it: the range is a factor of the render config's distance)."""
    ranges = {f.prior_range: f.valid for f in FACTORS if f.prior_range and not f.prior_scale}
    scale = RenderConfig().camera_distance
    low, high = FACTOR["camera_distance"].valid
    return Variation(**ranges, distance_range=(low / scale * (1 + 1e-9), high / scale * (1 - 1e-9)))


def scene_files(arrays: dict) -> list[dict]:
    """Prior samples written as scene files, every factor of the look in its place."""
    out = []
    for i, n in enumerate(arrays["count"]):
        scene = {"objects": []}
        for f in FACTORS:
            if f.per == IMAGE and f.array in arrays:
                *section, key = f.scene
                value = f.take(arrays[f.array][i]).tolist()
                (scene.setdefault(section[0], {}) if section else scene)[key] = value
        for k in range(n):
            obj = {"shape": SHAPES[arrays["shape"][i, k]], "position": arrays["position"][i, k].tolist(),
                   "yaw_deg": float(arrays["yaw"][i, k])}
            obj.update({f.scene[0]: arrays[f.array][i, k].tolist() for f in FACTORS if f.per == OBJECT})
            scene["objects"].append(obj)
        out.append(scene)
    return out


@pytest.mark.parametrize("variation, counts", [(Variation(), (0, 1, 2, 3)), (widest(), (1,))])
def test_the_priors_samples_are_valid_scene_files(variation, counts):
    """One range per quantity: whatever the prior draws (over the default ranges, and over the
    widest the configs accept) a scene file may say, and a shard may hold."""
    from inverse_air.config import DatasetConfig
    from inverse_air.objects3d.config import Scenes3DConfig
    from inverse_air.objects3d.kind import check_truth

    for f in FACTORS:
        interval = intervals(variation, RenderConfig())[f.name]
        if not f.direction:
            assert f.valid[0] <= interval.low <= interval.high <= f.valid[1], f.name
    rng = np.random.default_rng(0)
    arrays = sample_prior(rng.choice(counts, 200), rng, RenderConfig(), variation, 3)
    for scene in scene_files(arrays):
        scene_from_dict(json.loads(json.dumps(scene)), 0.6)
    config = DatasetConfig(scenes=Scenes3DConfig(variation=variation), counts=(0, 3))
    assert check_truth(arrays, config) is None


def test_the_render_configs_look_is_a_valid_scene_file():
    default = defaults(RenderConfig())
    scene = {"objects": [{"shape": "cube", "position": [0, 0]}]}
    for f in FACTORS:
        value = default[f.array][f.column] if f.column is not None else default[f.array]
        value = value[0] if f.channels == 1 and f.column is None else list(value) if f.channels > 1 else value
        *section, key = f.scene
        target = (scene.setdefault(section[0], {}) if section else scene) if f.per == IMAGE else scene["objects"][0]
        target[key] = value
    scene_from_dict(scene, 0.6)


@pytest.mark.parametrize("make, field", [
    (lambda: Variation(size_range=(0.01, 0.5)), "size_range[0]"),
    (lambda: Variation(elevation_range_deg=(40.0, 90.0)), "elevation_range_deg[1]"),
    (lambda: RenderConfig(camera_elevation_deg=90.0), "camera_elevation_deg"),
    (lambda: RenderConfig(object_scale=2.0), "object_scale"),
    (lambda: Objects3DConfig(variation=Variation(distance_range=(0.1, 1.0))), "variation.distance_range"),
    (lambda: RenderConfig(light_direction=(1e-320, 1e-320, 0.0)), "light_direction"),
])
def test_configs_refuse_what_the_look_table_calls_invalid(make, field):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.path == field


def test_every_scene_file_range_is_the_tables():
    """A value just outside a factor's valid range is refused, naming the field."""
    from inverse_air.objects3d.scene import SceneError

    for f in FACTORS:
        if f.direction or f.angle:
            continue
        bad = f.valid[1] + 0.5
        data = {"objects": [{"shape": "cube", "position": [0, 0]}]}
        *section, key = f.scene
        holder = (data.setdefault(section[0], {}) if section else data) if f.per == IMAGE else data["objects"][0]
        holder[key] = bad if f.channels == 1 else [bad] * f.channels
        with pytest.raises(SceneError, match=f"{key}.*outside \\[{f.valid[0]:g}, {f.valid[1]:g}\\]"):
            scene_from_dict(data, 0.6)


def test_metrics_and_texts_come_from_the_table():
    from inverse_air.objects3d.kind import look_text, metric_lines, step_text

    result = {"camera": {"elevation_deg": 56.8071, "azimuth_deg": -1.957, "distance": 5.795},
              "light": {"direction": [-0.4543, 0.5043, -0.7344], "ambient": 0.3702, "diffuse": 0.5354},
              "ground_color": [0.2014, 0.2513, 0.3504]}
    assert look_text(result) == [
        "  camera  elevation 56.8 deg  azimuth -2.0 deg  distance 5.79",
        "  light   direction (-0.45, +0.50, -0.73)  ambient 0.37  diffuse 0.54",
        "  ground  colour (0.20, 0.25, 0.35)"]
    step = {"shape": "cube", "position": [0.1946, -0.0816], "yaw_deg": -41.29, "color": [0.938, 0.669, 0.46],
            "size": 0.72, "shape_probs": {"sphere": 0.04, "cube": 0.85, "cylinder": 0.11}}
    assert step_text(step) == ("cube     position (+0.195, -0.082)  yaw  -41.3 deg  size 0.72  colour (0.94, 0.67, 0.46)"
                               "  [sphere 0.04 cube 0.85 cylinder 0.11]")
    m = {"identity_accuracy": 1.0, "position_error": {"median": 0.01}, "cube_yaw_error_deg": {"median": 2.0},
         **{f.metric: {"median": 0.5} for f in FACTORS}}
    lines = metric_lines(m)[3:]
    assert [line.split(" median")[0].strip() for line in lines] == [f.label for f in TRUTH_ORDER]
    assert lines[2] == "camera elevation   median 0.50 degrees"
