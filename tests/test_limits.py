"""Requests that cannot fit the machine (memory, disk, shards, cores) are refused with one line
before they grow the process, and nothing already written is lost."""

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

import inverse_air.limits
from inverse_air.cli import app
from inverse_air.data import ShardDataset, render_dataset
from inverse_air.errors import UserError
from inverse_air.kinds import KINDS
from inverse_air.limits import available_memory, cpu_count

SCENES = Path(__file__).resolve().parent.parent / "scenes"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_the_machine_is_measured():
    assert 2**26 < available_memory() < 2**50 and cpu_count() >= 1


def test_a_training_batch_that_cannot_fit_is_refused_before_training(tiny_data, tmp_path):
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "run", "--batch-size", 100000, "--quiet")
    assert result.exit_code == 1 and "--batch-size 100,000 (sleep steps) needs about" in result.output, result.output
    assert "available; use a smaller --batch-size" in result.output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_huge_max_objects_is_refused_before_anything_grows(tmp_path):
    """``--max-objects 10**12`` once built a count prior of 10**12 entries (23 GB) before any
    check: now the flag's range is checked first. Run with 8 GB of address space, so that a
    regression fails with a MemoryError instead of filling this machine's memory."""
    import os
    import resource
    import subprocess
    import sys

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    cmd = [sys.executable, "-m", "inverse_air", "train", "--data", str(SCENES / "mnist"), "--model", "2d",
           "--out", str(tmp_path / "run"), "--max-objects", str(10**12), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limited,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr == "error: --max-objects must be between 1 and 8, got 1000000000000\n"
    assert not (tmp_path / "run").exists()


def test_a_render_that_cannot_fit_is_refused_before_it_starts(tmp_path, monkeypatch):
    """Every object is rasterized over the whole image: 784 cubes at 1024x1024 peaked at 22 GB
    and more. Here 49 cubes at 512x512 (about 1.2 GB) against 500 MB available."""
    import json

    grid = [{"shape": "cube", "position": [-1 + i / 3, -1 + j / 3], "size": 0.05} for i in range(7) for j in range(7)]
    (tmp_path / "grid.json").write_text(json.dumps({"objects": grid}))
    monkeypatch.setattr(inverse_air.limits, "available_memory", lambda: 500_000_000)
    result = invoke("render-scene", tmp_path / "grid.json", "-o", tmp_path / "grid.png", "--image-size", 512)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: rendering 49 objects at 512x512 needs about 1.23 GB of memory; "
                                    "this machine has 500 MB available; use a smaller --image-size or fewer objects")
    assert not (tmp_path / "grid.png").exists()
    result = invoke("render-scene", tmp_path / "grid.json", "-o", tmp_path / "grid.png", "--image-size", 64)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, fragment", [
    (["--num", 10**12], "makes 1,000,000,000 shards; at most 100,000"),
    (["--num", 10**6, "--shard-size", 10**6, "--image-size", 1024], "needs about"),
])
def test_a_dataset_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, args, fragment):
    result = invoke("render-dataset", tmp_path / "d", *args)
    assert result.exit_code == 1 and fragment in result.output, result.output
    assert not (tmp_path / "d").exists()


def test_loading_a_dataset_larger_than_memory_is_refused(tiny_data_2d, monkeypatch):
    monkeypatch.setattr(inverse_air.limits, "available_memory", lambda: 100_000)
    with pytest.raises(UserError, match="loading its 48 scenes needs about .* of memory"):
        ShardDataset(tiny_data_2d).arrays()


def test_inference_batches_that_cannot_fit_are_refused(tiny_data_2d, monkeypatch):
    from inverse_air.decompose import Decomposer

    decomposer = Decomposer("2d")
    monkeypatch.setattr(inverse_air.limits, "available_memory", lambda: 10_000_000)
    result = invoke("decompose", SCENES / "mnist", "--model", "2d", "--batch-size", 10**9)
    assert result.exit_code == 0, result.output  # 8 images: the batch is 8, not a billion
    monkeypatch.setattr(inverse_air.limits, "available_memory", lambda: 10_000)
    with pytest.raises(UserError, match=r"--batch-size 256 \(1 images a batch\) needs about"):
        decomposer(SCENES / "mnist" / "digits-1.png")
    result = invoke("evaluate", decomposer.checkpoint, "--data", tiny_data_2d)  # the checkpoint alone
    assert result.exit_code == 1 and "loading this 3,884,855-byte checkpoint needs about" in result.output


def test_a_dataset_that_will_not_fit_the_disk_stops_after_its_first_shard(tmp_path, monkeypatch):
    import inverse_air.data

    monkeypatch.setattr(inverse_air.data, "disk_free", lambda path: 1_000)
    config = dataclasses.replace(KINDS["2d"].dataset, num=100, shard_size=20)
    with pytest.raises(UserError, match="the remaining 4 shards need about .* of disk"):
        render_dataset(tmp_path / "d", config, progress=False)
    assert [p.name for p in (tmp_path / "d").glob("shard-*")] == ["shard-00000.npz"]
    monkeypatch.undo()
    render_dataset(tmp_path / "d", config, progress=False)  # room again: resumes
    assert len(ShardDataset(tmp_path / "d")) == 100


def test_more_workers_than_cores_are_refused(tmp_path):
    with pytest.raises(UserError, match=f"between 1 and this machine's {cpu_count()} CPU cores"):
        render_dataset(tmp_path / "d", KINDS["2d"].dataset, workers=cpu_count() + 1, progress=False)
