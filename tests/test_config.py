"""Every config value is validated where it is made: presets, flags (through
dataclasses.replace), manifests and checkpoints (through from_dict) alike."""

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from inverse_air.cli import app
from inverse_air.config import ConfigError, DatasetConfig, RunConfig, TrainConfig, to_dict
from inverse_air.kinds import read_config
from inverse_air.data import ShardDataset
from inverse_air.errors import UserError
from inverse_air.kinds import KINDS
from inverse_air.objects3d.config import RenderConfig, Variation

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("make, path, problem", [
    (lambda: TrainConfig(steps=0), "steps", "must be between 1 and"),
    (lambda: TrainConfig(steps=-5), "steps", "must be between 1 and"),
    (lambda: TrainConfig(sleep_fraction=1.5), "sleep_fraction", "must be between 0 and 1, got 1.5"),
    (lambda: TrainConfig(sleep_fraction=-0.1), "sleep_fraction", "must be between 0 and 1"),
    (lambda: TrainConfig(batch_size=-3), "batch_size", "must be at least 1"),
    (lambda: TrainConfig(seed=-1), "seed", "must be between 0 and"),
    (lambda: TrainConfig(seed=2**64), "seed", "must be between 0 and"),
    (lambda: TrainConfig(steps="5"), "steps", "must be an integer, got str"),
    (lambda: TrainConfig(steps=True), "steps", "must be an integer, got bool"),
    (lambda: TrainConfig(lr=float("nan")), "lr", "must be a finite number"),
    (lambda: TrainConfig(supervised=1), "supervised", "must be true or false"),
    (lambda: RenderConfig(image_size=4), "image_size", "must be between 8 and 1024"),
    (lambda: RenderConfig(object_color=(1, 2, 3)), "object_color[1]", "must be between 0 and 1"),
    (lambda: RenderConfig(camera_target=(0, 0)), "camera_target", "must hold 3 values"),
    (lambda: dataclasses.replace(KINDS["2d"].dataset, split="val"), "split", "must be one of train, test"),
    (lambda: dataclasses.replace(KINDS["2d"].dataset, counts=()), "counts", "must not be empty"),
    (lambda: dataclasses.replace(KINDS["2d"].dataset, counts=(0, 9)), "counts", "must be at most 5"),
    (lambda: dataclasses.replace(KINDS["2d"].dataset, scenes=KINDS["2d"].dataset.scenes.with_image_size(8)),
     "canvas_size", "must be at least the smallest digit window"),
    (lambda: dataclasses.replace(KINDS["3d"].air, count_prior=(1.0,)), "count_prior", "needs 4 entries"),
    (lambda: Variation(size_range=(0.8, 0.4)), "size_range", "low <= high"),
    (lambda: Variation(ambient_range=(0.2, 1.5)), "ambient_range[1]", "must be between 0 and 1"),
    (lambda: Variation(camera="yes"), "camera", "must be true or false"),
])
def test_bad_values_are_refused_when_made(make, path, problem):
    with pytest.raises(ConfigError) as e:
        make()
    assert e.value.path == path and problem in e.value.problem


def test_ints_given_for_floats_become_floats_and_lists_tuples():
    config = TrainConfig(lr=1)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert RenderConfig(object_color=[1, 0, 0]).object_color == (1.0, 0.0, 0.0)


@pytest.mark.parametrize("edit, path", [
    (lambda d: d["scenes"]["render"].update(image_size="64"), "scenes.render.image_size"),
    (lambda d: d.update(num=-5), "num"),
    (lambda d: d.update(seed=1.5), "seed"),
    (lambda d: d["scenes"].update(kind="4d"), "scenes.kind"),
    (lambda d: d.pop("scenes"), "scenes"),
    (lambda d: d["scenes"]["render"].update(fov_deg=1e300), "scenes.render.fov_deg"),
])
def test_from_dict_names_the_dotted_path(edit, path):
    data = to_dict(KINDS["3d"].dataset)
    edit(data)
    with pytest.raises(ConfigError) as e:
        read_config(DatasetConfig, data)
    assert e.value.path == path


@pytest.mark.parametrize("args, expected", [
    (["train", "--steps", 0], "error: --steps must be between 1 and 1,000,000,000, got 0"),
    (["train", "--steps", -5], "error: --steps must be between 1 and"),
    (["train", "--sleep-fraction", 1.5], "error: --sleep-fraction must be between 0 and 1, got 1.5"),
    (["train", "--sleep-fraction", -0.1], "error: --sleep-fraction must be between 0 and 1"),
    (["train", "--batch-size", -3], "error: --batch-size must be at least 1, got -3"),
    (["train", "--seed", -1], "error: --seed must be between 0 and"),
    (["train", "--seed", 10**30], "error: --seed must be between 0 and"),
])
def test_train_flags_out_of_range_one_line_naming_the_flag(tiny_data, tmp_path, args, expected):
    result = invoke(*args[:1], "--data", tiny_data, "--out", tmp_path / "run", *args[1:], "--quiet")
    assert result.exit_code == 1, result.output
    assert result.output.strip().startswith(expected) and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, expected", [
    (["--seed", -1], "error: --seed must be between 0 and"),
    (["--seed", 10**30], "error: --seed must be between 0 and"),
    (["--model", "2d", "--image-size", 8], "error: --image-size must be at least the smallest digit window"),
    (["--num", 0], "error: --num must be between 1 and"),
    (["--shard-size", 0], "error: --shard-size must be between 1 and"),
])
def test_render_dataset_flags_refused_before_anything_is_written(tmp_path, args, expected):
    result = invoke("render-dataset", tmp_path / "d", *args)
    assert result.exit_code == 1 and result.output.startswith(expected), result.output
    assert not (tmp_path / "d").exists()


def test_a_hand_edited_manifest_is_refused_naming_the_field(tiny_data_2d, tmp_path):
    import shutil

    copy = tmp_path / "d"
    shutil.copytree(tiny_data_2d, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["scenes"]["digit_scale_std"] = -1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"manifest.json: config.scenes.digit_scale_std must be between 0"):
        ShardDataset(copy)
    manifest["config"]["scenes"]["digit_scale_std"] = 0.1
    manifest["num_scenes"] = 10**9
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="num_scenes do not match its configuration"):
        ShardDataset(copy)


def test_a_checkpoint_with_a_value_out_of_range_is_refused(tmp_path):
    from inverse_air.checkpoint import load_checkpoint
    from inverse_air.decompose import shipped_model

    payload = torch.load(shipped_model("2d"), weights_only=True)
    config = json.loads(payload["config"])
    config["train"]["sleep_fraction"] = 1.5
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(UserError, match=r"m.pt: checkpoint configuration: train.sleep_fraction must be between 0 and 1"):
        load_checkpoint(tmp_path / "m.pt")
    payload["config"] = json.dumps({**config, "train": {**config["train"], "sleep_fraction": 0.0}})
    payload["model_kind"] = "3d"  # the record says 3d, the configuration is a 2d model's
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(UserError, match="says it is a 3d model but its configuration is of a 2d model"):
        load_checkpoint(tmp_path / "m.pt")


def test_every_preset_validates_and_round_trips():
    for name in KINDS:
        kind = KINDS[name]
        run = RunConfig(air=kind.air, train=kind.train, data="/data")
        assert read_config(RunConfig, json.loads(json.dumps(to_dict(run)))) == run
