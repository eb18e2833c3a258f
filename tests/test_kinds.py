"""The kind registry: lookup, presets that are whole configs, and a kind added from outside the
package working end to end with no edit to the package."""

import dataclasses
import json

import numpy as np
import pytest

from inverse_air import kinds
from inverse_air.config import AIRConfig, DatasetConfig, RunConfig, to_dict
from inverse_air.errors import UserError
from inverse_air.kinds import KINDS, get_kind, read_config, register
from inverse_air.objects2d.config import Compose2DConfig, Objects2DConfig

from conftest import TINY_AIR, TINY_OBJECTS_2D


def test_lookup_by_name():
    assert list(KINDS)[:2] == ["3d", "2d"] and "3d" in KINDS and "4d" not in KINDS
    assert KINDS["3d"].name == "3d" and KINDS["2d"].objects_config.kind == "2d"
    with pytest.raises(UserError, match="--model must be one of 3d, 2d.*got '4d'"):
        get_kind("4d")


@pytest.mark.parametrize("name", ["3d", "2d"])
def test_presets_are_whole_configs_that_round_trip_through_json(name):
    kind = KINDS[name]
    run = RunConfig(air=kind.air, train=kind.train, data="somewhere")
    assert read_config(RunConfig, json.loads(json.dumps(to_dict(run)))) == run
    assert read_config(DatasetConfig, json.loads(json.dumps(to_dict(kind.dataset)))) == kind.dataset
    assert to_dict(kind.air)["objects"]["kind"] == name == kind.dataset.kind == kind.air.kind
    assert kind.air.image_size == kind.dataset.scenes.image_size


def test_unknown_kinds_and_fields_are_reported():
    data = to_dict(KINDS["2d"].air)
    with pytest.raises(ValueError, match="unknown kind '4d'"):
        read_config(AIRConfig, {**data, "objects": {**data["objects"], "kind": "4d"}})
    with pytest.raises(ValueError, match="colour is an unknown Objects2DConfig field"):
        read_config(AIRConfig, {**data, "objects": {**data["objects"], "colour": 1}})


@dataclasses.dataclass(frozen=True)
class ToyScenes(Compose2DConfig):
    kind = "toy"


@dataclasses.dataclass(frozen=True)
class ToyObjects(Objects2DConfig):
    kind = "toy"


@pytest.fixture
def toy_kind():
    """A kind defined here, outside the package: the 2D model's pieces under another name and
    config classes of its own, on a 32x32 canvas."""
    base = KINDS["2d"]
    toy = dataclasses.replace(
        base, name="toy", summary="a test kind", objects_config=ToyObjects, scenes_config=ToyScenes,
        air=dataclasses.replace(base.air, objects=ToyObjects(**TINY_OBJECTS_2D)),
        dataset=dataclasses.replace(base.dataset, scenes=ToyScenes(canvas_size=32), num=16, counts=(0, 1),
                                    shard_size=8),
        shipped_model=None)
    register(toy)
    yield toy
    kinds._LOADED.pop("toy")


def test_a_kind_registered_from_outside_works_end_to_end(toy_kind, tmp_path):
    from typer.testing import CliRunner

    from inverse_air.cli import app
    from inverse_air.data import ShardDataset, render_dataset
    from inverse_air.decompose import Decomposer
    from inverse_air.evaluate import evaluate
    from inverse_air.plan import run_config_for
    from inverse_air.train import train

    data = render_dataset(tmp_path / "data", toy_kind.dataset, progress=False)
    assert json.loads((data / "manifest.json").read_text())["config"]["scenes"]["kind"] == "toy"
    assert ShardDataset(data).config == toy_kind.dataset
    with pytest.raises(ValueError, match="exists already"):
        register(toy_kind)
    config = run_config_for(data, "toy", {"steps": 2, "elbo_batch_size": 4, "log_every": 1,
                                          "checkpoint_every": 2, "image_every": 2}, TINY_AIR)
    assert isinstance(config.air.objects, ToyObjects) and config.air.image_size == 32
    train(config, tmp_path / "run", progress=False)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    metrics = evaluate(checkpoint, data)
    assert metrics["model"] == "toy" and metrics["num_scenes"] == 16 and "scale_error" in metrics
    images = ShardDataset(data).arrays()["images"]
    results = Decomposer(checkpoint, precision="fp32")(images[:3])
    assert [r["model"] for r in results] == ["toy"] * 3
    out = CliRunner().invoke(app, ["evaluate", str(checkpoint), "--data", str(data)])
    assert out.exit_code == 0 and "scale error" in out.output, out.output
    assert np.array(metrics["confusion"]).sum() == 16
