import json
import os
from pathlib import Path

import imageio.v3 as iio
import pytest
from typer.testing import CliRunner

from inverse_air.cli import app

SCENES = Path(__file__).resolve().parent.parent / "scenes"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_render_scene_writes_a_png(tmp_path):
    out = tmp_path / "two.png"
    result = invoke("render-scene", SCENES / "two_objects.json", "-o", out, "--image-size", 48)
    assert result.exit_code == 0, result.output
    assert iio.imread(out).shape == (48, 48, 3)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("text, expected", [
    ('{"objects": [}', "invalid JSON"),
    ('{"objects": [{"shape": "cone", "position": [0, 0]}]}', "object 0: field 'shape': unknown shape"),
    ('{"objects": [{"shape": "cube"}]}', "object 0: field 'position' is missing"),
    ('{"objects": [{"shape": "cube", "position": [0, "near"]}]}', "object 0: field 'position': expected a number"),
    ('{"objects": [{"shape": "cube", "position": [0, -3]}]}', "object 0: field 'position': z = -3 is outside"),
    ('{"objects": [{"shape": "cube", "position": [0, 0]}, {"shape": "cube", "position": [0.2, 0.2]}]}',
     "object 1: field 'position': overlaps object 0"),
])
def test_render_scene_bad_input_one_line_exit_1_nothing_written(tmp_path, text, expected):
    scene = tmp_path / "bad.json"
    scene.write_text(text)
    out = tmp_path / "out.png"
    result = invoke("render-scene", scene, "-o", out)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(scene) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob("*.png*"))


def test_render_scene_missing_file(tmp_path):
    result = invoke("render-scene", tmp_path / "missing.json", "-o", tmp_path / "x.png")
    assert result.exit_code == 1 and "cannot read" in result.output


def test_render_dataset_and_refuse_other_settings(tmp_path):
    out = tmp_path / "ds"
    args = ["render-dataset", out, "--model", "2d", "--num", 12, "--counts", "0,1,2", "--seed", 1]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"] == [0, 1, 2] and manifest["model"] == "2d"
    # the same command again resumes (nothing to do) and succeeds
    assert invoke(*args).exit_code == 0
    result = invoke(*args[:-1], 2)
    assert result.exit_code == 1 and "other settings" in result.output and "seed" in result.output


def test_render_dataset_3d(tmp_path):
    result = invoke("render-dataset", tmp_path / "ds", "--num", 6, "--image-size", 24, "--counts", "1,2")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["config"]["scenes"]["render"]["image_size"] == 24


@pytest.mark.parametrize("extra, expected", [
    (["--counts", "a,b"], "--counts: expected comma-separated integers"),
    (["--counts", "0,12"], "--counts"),
    (["--image-size", "2"], "--image-size must be between"),
    (["--workers", "0"], "--workers must be between 1 and this machine's"),
    (["--workers", "1000"], "--workers must be between 1 and this machine's"),
    (["--num", "0"], "--num must be between 1 and"),
])
def test_render_dataset_bad_options(tmp_path, extra, expected):
    result = invoke("render-dataset", tmp_path / "ds", *extra)
    assert result.exit_code == 1
    assert expected in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "ds").exists()


def test_usage_error_is_exit_2():
    assert invoke("render-dataset").exit_code == 2


@pytest.mark.parametrize("args", [["render-dataset", "d", "--model", "4d"], ["render-dataset", "d", "--split", "val"],
                                  ["train", "--out", "r", "--model", "4d"], ["evaluate", "c.pt", "--data", "d", "--precision", "fp8"],
                                  ["decompose", "x.png", "--device", "tpu"], ["train", "--out", "r", "--count-prior", "flat"]])
def test_a_value_outside_an_options_choices_is_a_usage_error(args, tmp_path):
    result = invoke(*args)
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output


def test_interrupted_render_dataset_says_how_to_resume(tmp_path, monkeypatch):
    import inverse_air.data

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inverse_air.data, "render_dataset", interrupted)
    result = invoke("render-dataset", tmp_path / "ds", "--num", 5)
    assert result.exit_code == 130 and "run the same command again to resume" in result.output


def test_render_scene_bad_image_size(tmp_path):
    result = invoke("render-scene", SCENES / "cube.json", "-o", tmp_path / "x.png", "--image-size", 4)
    assert result.exit_code == 1 and "--image-size must be between 8 and 1024" in result.output
    assert not (tmp_path / "x.png").exists()


def test_render_scene_finds_the_kind_in_the_registry(tmp_path):
    """render-scene draws a kind's scene files through its registry record: 3D by default, and
    a kind without scene files is refused in one line, before anything is read or written."""
    out = tmp_path / "x.png"
    result = invoke("render-scene", SCENES / "cube.json", "-o", out, "--model", "2d")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "error: --model 2d: this kind has no scene files (render-scene draws those of 3d)"]
    assert not out.exists()
    assert invoke("render-scene", SCENES / "cube.json", "-o", out, "--model", "3d").exit_code == 0 and out.exists()


@pytest.fixture
def unreadable(monkeypatch):
    """``unreadable(path)``: reading ``path`` fails as it does for a user without the right to
    (the tests may run as root, who may read anything): opening it is refused, and click's
    own check says so too (``os.access``)."""
    import builtins
    import io

    refused = set()
    real_open, real_access = builtins.open, os.access

    def open_(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and str(file) in refused:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (str(path) not in refused or not mode & os.R_OK)
                        and real_access(path, mode, **kw))
    return lambda path: refused.add(str(path))


def test_an_unreadable_input_is_one_line_and_exit_1_for_every_command(tmp_path, unreadable):
    models = Path(__file__).resolve().parent.parent / "inverse_air" / "objects2d" / "models"
    sources = {"scene.json": SCENES / "cube.json", "image.png": SCENES / "cube.png", "checkpoint.pt": models / "air2d.pt"}
    for name, source in sources.items():
        (tmp_path / name).write_bytes(source.read_bytes())
        unreadable(tmp_path / name)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_bytes((SCENES / "cube.png").read_bytes())
    unreadable(folder / "a.png")
    cases = [(["render-scene", tmp_path / "scene.json", "-o", tmp_path / "out.png"], "scene.json"),
             (["decompose", tmp_path / "image.png"], "image.png"),
             (["decompose", SCENES / "cube.png", "--model", tmp_path / "checkpoint.pt"], "checkpoint.pt"),
             (["evaluate", tmp_path / "checkpoint.pt", "--data", folder], "checkpoint.pt"),
             (["train", "--model", "2d", "--data", folder, "--out", tmp_path / "run", "--quiet"], "a.png")]
    for args, name in cases:
        result = invoke(*args)
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert result.exit_code == 1 and "Usage" not in result.output, (args, result.output)
        assert len(errors) == 1 and name in errors[0] and "cannot read: Permission denied" in errors[0], result.output
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, name", [
    (["render-scene", "", "-o", "x.png"], "SCENE"), (["render-scene", SCENES / "cube.json", "-o", ""], "-o"),
    (["render-dataset", ""], "OUT_DIR"), (["render-dataset", "d", "--model", "2d", "--mnist", ""], "--mnist"),
    (["train", "--data", "", "--out", "run"], "--data"), (["train", "--data", "d", "--out", ""], "--out"),
    (["train", "--data", "d", "--out", "run", "--init", ""], "--init"),
    (["evaluate", "", "--data", "d"], "CHECKPOINT"), (["evaluate", "c.pt", "--data", ""], "--data"),
    (["decompose", ""], "IMAGES"), (["decompose", SCENES / "cube.png", "--overlay", ""], "--overlay"),
])
def test_an_empty_path_is_refused_not_read_as_the_current_directory(tmp_path, monkeypatch, args, name):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"error: {name}: an empty path; give a file or directory"], result.output
    assert list(tmp_path.iterdir()) == []


def test_an_empty_model_name_is_refused_not_read_as_the_default():
    from inverse_air import Decomposer
    from inverse_air.errors import UserError

    result = invoke("decompose", SCENES / "cube.png", "--model", "")
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1
    assert result.output.startswith("error: --model '': an empty name; give a checkpoint file, a kind (3d, 2d)")
    with pytest.raises(UserError, match="an empty name"):
        Decomposer("")


# ---------------------------------------------------------------- train / evaluate
def test_train_then_evaluate_json(tiny_data, tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "--data", tiny_data, "--out", run, "--steps", 2, "--batch-size", 4,
                    "--elbo-batch-size", 2, "--sleep-fraction", 0.5, "--quiet")
    assert result.exit_code == 0, result.output
    assert "trained to step 2" in result.output
    result = invoke("evaluate", run / "checkpoint.pt", "--data", tiny_data, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["num_scenes"] == 64 and "confusion" in metrics and metrics["images_per_s"] > 0
    result = invoke("evaluate", run / "checkpoint.pt", "--data", tiny_data)
    assert result.exit_code == 0 and "count accuracy" in result.output
    # Running again into the same directory without --resume is refused; --resume continues.
    result = invoke("train", "--data", tiny_data, "--out", run, "--steps", 3, "--batch-size", 4, "--quiet")
    assert result.exit_code == 1 and "--resume" in result.output
    result = invoke("train", "--data", tiny_data, "--out", run, "--steps", 3, "--resume", "--quiet")
    assert result.exit_code == 0 and "trained to step 3" in result.output


@pytest.mark.parametrize("model, data, expected", [
    ("3d", "/nonexistent", "no such directory"),
])
def test_train_bad_input(tiny_data, tmp_path, model, data, expected):
    result = invoke("train", "--model", model, "--data", data or tiny_data, "--out", tmp_path / "run",
                    "--steps", 1, "--quiet")
    assert result.exit_code == 1, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_evaluate_bad_checkpoint_one_line(tiny_data, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    result = invoke("evaluate", bad, "--data", tiny_data)
    assert result.exit_code == 1
    assert "not a readable checkpoint" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("text, expected", [("abc", "expected START:STOP"), ("3:9", "is not within")])
def test_render_dataset_bad_shard_range(tmp_path, text, expected):
    result = invoke("render-dataset", tmp_path / "d", "--model", "2d", "--num", 20, "--shard-size", 10,
                    "--shard-range", text)
    assert result.exit_code == 1 and expected in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_render_dataset_one_part(tmp_path):
    result = invoke("render-dataset", tmp_path / "d", "--model", "2d", "--num", 20, "--shard-size", 10,
                    "--shard-range", "1:2")
    assert result.exit_code == 0, result.output
    assert "shards 1:2 ready" in result.output and (tmp_path / "d" / "shard-00001.npz").exists()


def test_train_then_evaluate_2d(tiny_data_2d, tiny_data, tmp_path):
    run = tmp_path / "run2d"
    result = invoke("train", "--model", "2d", "--data", tiny_data_2d, "--out", run, "--steps", 2,
                    "--elbo-batch-size", 4, "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", run / "checkpoint.pt", "--data", tiny_data_2d, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["num_scenes"] == 48 and "scale_error" in metrics and "identity_accuracy" not in metrics
    result = invoke("evaluate", run / "checkpoint.pt", "--data", tiny_data_2d)
    assert result.exit_code == 0 and "count accuracy" in result.output and "scale error" in result.output
    # A 2D model on a 3D dataset: one line naming both.
    result = invoke("evaluate", run / "checkpoint.pt", "--data", tiny_data)
    assert result.exit_code == 1 and "a 3d dataset" in result.output and "2d model" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, expected", [
    (["--data", "3D"], "a 3d dataset, but --model is a 2d model"),
    (["--sleep-fraction", "0.5"], "the 2d model has no sleep phase"),
])
def test_train_2d_bad_input(tiny_data_2d, tiny_data, tmp_path, extra, expected):
    args = ["train", "--model", "2d", "--data", tiny_data_2d, "--out", tmp_path / "run", "--steps", 1, "--quiet"]
    if extra[0] == "--data":
        args[4], extra = tiny_data, []
    result = invoke(*args, *extra)
    assert result.exit_code == 1, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- help, version, quiet, logs
def test_help_shows_every_default():
    wide = CliRunner(env={"COLUMNS": "300", "TERM": "dumb"})
    for command in ("render-scene", "render-dataset", "train", "evaluate", "decompose"):
        text = wide.invoke(app, [command, "--help"]).output
        assert " ." not in text.replace("...", ""), text  # a bracketed default eaten by markup
    train = wide.invoke(app, ["train", "--help"]).output
    assert "the 3d preset's 10000, the 2d preset's 25000" in train and "<3d|2d>" in train
    assert "<dataset|uniform|geometric>" in train and "<auto|cpu|cuda>" in train
    dataset = wide.invoke(app, ["render-dataset", "--help"]).output
    assert "the 3d preset's 64, the 2d preset's 50" in dataset and "<train|test>" in dataset
    assert "the 5,000 embedded digits" in dataset and "--quiet" in dataset
    assert "[default: 256]" in wide.invoke(app, ["evaluate", "--help"]).output


def test_version():
    from inverse_air import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"inverse-air {__version__}"


def test_render_dataset_quiet_prints_nothing_and_logs_are_not_spammed(tmp_path):
    result = invoke("render-dataset", tmp_path / "q", "--model", "2d", "--num", 40, "--shard-size", 2, "--quiet")
    assert result.exit_code == 0 and result.output == ""
    result = invoke("render-dataset", tmp_path / "p", "--model", "2d", "--num", 40, "--shard-size", 2)
    assert result.exit_code == 0
    assert result.stderr.count("\r") <= 3, result.stderr  # not a redraw per shard: stderr is no terminal


@pytest.mark.parametrize("args, expected", [
    (["evaluate", "CKPT", "--data", "DATA", "--batch-size", 0], "error: --batch-size must be at least 1, got 0"),
    (["decompose", SCENES / "cube.png", "--batch-size", -2], "error: --batch-size must be at least 1, got -2"),
    (["decompose", SCENES / "cube.png", "--refine", -1], "error: --refine must be between 0 and"),
    (["evaluate", "CKPT", "--data", "DATA", "--refine", -1], "error: --refine must be between 0 and"),
    (["train", "--out", "RUN"], "error: --data is required for a new run"),
])
def test_bad_sizes_are_one_line(tiny_data, tmp_path, args, expected):
    from inverse_air.decompose import shipped_model

    args = [{"CKPT": shipped_model("3d"), "DATA": tiny_data, "RUN": tmp_path / "run"}.get(a, a) for a in args]
    result = invoke(*args)
    assert result.exit_code == 1 and result.output.startswith(expected), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_clis_choices_are_the_librarys():
    from inverse_air import cli
    from inverse_air.air import PRECISIONS
    from inverse_air.decompose import PRECISIONS as DECOMPOSE_PRECISIONS
    from inverse_air.plan import COUNT_PRIORS

    values = lambda enum: tuple(member.value for member in enum)
    assert values(cli.Precision) == PRECISIONS and values(cli.DecomposePrecision) == DECOMPOSE_PRECISIONS
    assert values(cli.CountPrior) == COUNT_PRIORS and values(cli.Model) == tuple(cli.KINDS)
