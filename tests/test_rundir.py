"""Run directories: a training run never overwrites a folder of someone else's files, and one
run at a time trains in a folder (inverse_air.rundir)."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from inverse_air.checkpoint import load_checkpoint
from inverse_air.cli import app
from inverse_air.errors import UserError
from inverse_air.rundir import MARKER, RunDirectory
from inverse_air.train import CHECKPOINT, Trainer, train

runner = CliRunner()


def train_cli(data, out, *more):
    return runner.invoke(app, ["train", "--data", str(data), "--out", str(out), "--steps", "1", "--batch-size", "4",
                               "--supervised", "--quiet", *map(str, more)])


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_someone_elses_files_is_refused(tiny_data, tmp_path):
    """``--out`` on a folder that holds a user's config.json, metrics.jsonl and images/ (not a
    run of ours): one line, nothing touched, with or without --resume."""
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    (mine / "config.json").write_text('{"my": "settings"}\n')
    (mine / "metrics.jsonl").write_text('{"my": 1}\n')
    (mine / "images" / "step-0000001.png").write_bytes(b"my picture")
    before = snapshot(mine)
    one_line_error(train_cli(tiny_data, mine), "--out", "not a training run's", "config.json, images, metrics.jsonl")
    one_line_error(train_cli(tiny_data, mine, "--resume"), "nothing to resume")
    assert snapshot(mine) == before


def test_new_empty_and_unfinished_run_folders_take_a_run(tiny_data, tmp_path):
    """A new folder, an empty one, and a run killed before its first checkpoint (its marker,
    config.json, images/) take a new run; a folder of an older version's run (a checkpoint, no
    marker) resumes."""
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new" / "run", tmp_path / "empty"):
        assert train_cli(tiny_data, out).exit_code == 0
        assert load_checkpoint(out / CHECKPOINT)["step"] == 1 and (out / MARKER).is_file()
    killed = tmp_path / "killed"
    (killed / "images").mkdir(parents=True)
    (killed / MARKER).write_text("12345\n")
    (killed / "config.json").write_text("{}\n")
    assert train_cli(tiny_data, killed).exit_code == 0
    (tmp_path / "new" / "run" / MARKER).unlink()
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "new" / "run"), "--resume", "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output


def test_a_refused_run_leaves_no_folder_behind(tiny_run_config, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="--batch-size 1,000,000,000 .* needs about"):
        Trainer(tiny_run_config(steps=2, supervised=True, batch_size=10**9), out, progress=False)
    assert not out.exists()


def test_the_snapshot_folder_is_not_the_data(tiny_run_config, tmp_path):
    """A run's ``images/`` may not be the folder it trains on (snapshots would overwrite it)."""
    out = tmp_path / "run"
    train(tiny_run_config(steps=4, sleep_fraction=1.0), out, progress=False)
    (out / CHECKPOINT).unlink()  # as if killed before its first checkpoint
    before = snapshot(out / "images")
    result = train_cli(out / "images", out, "--model", "2d")  # notices on reading the images, then:
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith("error: --out"), result.output
    assert "is also an input" in result.output and "Traceback" not in result.output
    assert snapshot(out / "images") == before


def test_one_run_at_a_time_and_no_stale_lock(tiny_data, tiny_run_config, tmp_path):
    """A run holds its folder locked: a second run there is refused, naming the first one's
    process; a lock whose process was killed (kill -9) does not block."""
    out = tmp_path / "run"
    first = Trainer(tiny_run_config(steps=2), out, progress=False)
    with pytest.raises(UserError, match=rf"another training run \(pid {os.getpid()}\) is using this folder"):
        Trainer(tiny_run_config(steps=2), out, progress=False)
    first.run()  # unlocks when it ends
    assert load_checkpoint(out / CHECKPOINT)["step"] == 2
    one_line_error(train_cli(tiny_data, out), "already holds a training run")

    other = tmp_path / "other"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from inverse_air.rundir import RunDirectory; RunDirectory(sys.argv[1], 'checkpoint.pt'); "
        "print('locked', flush=True); sys.stdin.read()"), str(other)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        one_line_error(train_cli(tiny_data, other), "--out", f"another training run (pid {holder.pid})")
    finally:
        holder.kill()  # SIGKILL: no cleanup runs
        holder.wait()
    assert train_cli(tiny_data, other).exit_code == 0


def test_the_lock_is_released_however_the_run_ends(tmp_path):
    held = RunDirectory(tmp_path / "a", CHECKPOINT)
    with pytest.raises(UserError, match="another training run"):
        RunDirectory(tmp_path / "a", CHECKPOINT)
    held.release()
    held.release()  # idempotent
    RunDirectory(tmp_path / "a", CHECKPOINT).release(undo=True)  # did not create it: kept
    assert (tmp_path / "a" / MARKER).is_file()
