"""Outputs are never inputs, unwritable outputs and unreadable JSON are one line, and a full
disk loses nothing (files.check_output, files.read_json, the atomic writers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from inverse_air.cli import app
from inverse_air.errors import UserError
from inverse_air.files import check_output, read_json

SCENES = Path(__file__).resolve().parent.parent / "scenes"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_an_output_that_is_an_input_is_refused(tmp_path):
    scene = tmp_path / "two.json"
    scene.write_text((SCENES / "two_objects.json").read_text())
    before = scene.read_bytes()
    one_line_error(invoke("render-scene", scene, "-o", scene), "-o", "is also an input")
    os.link(scene, tmp_path / "hard.json")
    (tmp_path / "soft.json").symlink_to(scene)
    for alias in ("hard.json", "soft.json"):  # the same file by another name
        one_line_error(invoke("render-scene", scene, "-o", tmp_path / alias), "is also an input")
    assert scene.read_bytes() == before

    image = tmp_path / "good.png"
    image.write_bytes((SCENES / "sphere.png").read_bytes())
    before = image.read_bytes()
    one_line_error(invoke("decompose", image, "--overlay", image), "--overlay", "is also an input")
    one_line_error(invoke("decompose", tmp_path, "--overlay", image), "--overlay", "is also an input")
    assert image.read_bytes() == before


def test_a_checkpoint_is_never_an_overlay(tmp_path):
    """``decompose --model m.pt --overlay m.pt`` (or a hard or symbolic link to it) would
    overwrite the checkpoint with a PNG."""
    from inverse_air.decompose import shipped_model

    model = tmp_path / "m.pt"
    model.write_bytes(shipped_model("3d").read_bytes())
    before = model.read_bytes()
    os.link(model, tmp_path / "hard.pt")
    (tmp_path / "soft.png").symlink_to(model)
    for overlay in (model, tmp_path / "hard.pt", tmp_path / "soft.png"):
        one_line_error(invoke("decompose", SCENES / "cube.png", "--model", model, "--overlay", overlay),
                       "--overlay", "is also an input")
    one_line_error(invoke("decompose", SCENES / "cube.png", "--model", tmp_path / "hard.pt", "--overlay", model),
                   "is also an input")
    assert model.read_bytes() == before


def test_devices_fifos_and_sockets_are_never_replaced_by_a_file(tmp_path, monkeypatch):
    """An output that exists and is not a regular file is refused (one line, exit 1) and left
    as it was: ``-o /dev/null`` as root would otherwise replace the device with a file. (A FIFO
    stands in for the device here: the check is the same, and nothing in /dev is touched.)"""
    import socket
    import stat

    from inverse_air.files import write_image

    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    link = tmp_path / "link.png"
    link.symlink_to(fifo)
    for out in (fifo, link):
        one_line_error(invoke("render-scene", SCENES / "cube.json", "-o", out), "-o", "is a FIFO")
        one_line_error(invoke("decompose", SCENES / "cube.png", "--overlay", out), "--overlay", "is a FIFO")
    with pytest.raises(UserError, match="is a FIFO"):  # the writer itself refuses, whoever calls it
        write_image(fifo, np.zeros((4, 4), dtype=np.uint8))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.png", "link.png"]  # no temporary file left
    server = socket.socket(socket.AF_UNIX)
    try:
        monkeypatch.chdir(tmp_path)  # a short relative name: socket paths are limited to about 100 bytes
        server.bind("sock")
        one_line_error(invoke("render-scene", SCENES / "cube.json", "-o", "sock"), "-o", "is a socket")
        assert stat.S_ISSOCK(os.stat("sock").st_mode)
    finally:
        server.close()
    with pytest.raises(UserError, match="is a device"):  # the check alone: it writes nothing
        check_output("/dev/null", "-o")


def test_a_run_directory_inside_its_dataset_is_refused(tiny_data, tmp_path):
    before = sorted(p.name for p in Path(tiny_data).iterdir())
    for out in (tiny_data, Path(tiny_data) / "run"):
        one_line_error(invoke("train", "--data", tiny_data, "--out", out, "--steps", 1, "--quiet"),
                       "--out", "is also an input")
    assert sorted(p.name for p in Path(tiny_data).iterdir()) == before


@pytest.mark.parametrize("make_out, fragment", [
    (lambda d: d, "is a directory"),
    (lambda d: d / "file.txt" / "x.png", "is not a directory"),
    (lambda d: d / "file.txt" / "more" / "x.png", "is not a directory"),
    (lambda d: d / "x.gif", "suffix gives the image format; use one of .png, .jpg, .jpeg, .bmp"),
    (lambda d: d / "x", "suffix gives the image format"),
])
def test_unusable_file_outputs_are_one_line_before_any_work(tmp_path, make_out, fragment):
    (tmp_path / "file.txt").write_text("a file")
    out = make_out(tmp_path)
    one_line_error(invoke("render-scene", SCENES / "cube.json", "-o", out), fragment)
    one_line_error(invoke("decompose", SCENES / "cube.png", "--overlay", out), "--overlay", fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".JPG": b"\xff\xd8\xff",
         ".bmp": b"BM"}


@pytest.mark.parametrize("suffix", list(MAGIC))
def test_image_outputs_are_in_the_format_their_suffix_names(tmp_path, suffix):
    from PIL import Image

    out, overlay = tmp_path / f"scene{suffix}", tmp_path / f"overlay{suffix}"
    assert invoke("render-scene", SCENES / "cube.json", "-o", out).exit_code == 0
    assert invoke("decompose", SCENES / "cube.png", "--overlay", overlay).exit_code == 0
    for path in (out, overlay):
        assert path.read_bytes().startswith(MAGIC[suffix]), path
        assert Image.open(path).format == {".png": "PNG", ".bmp": "BMP"}.get(suffix.lower(), "JPEG")
    assert Image.open(out).size == (64, 64)


def test_missing_parent_folders_of_every_output_are_created(tiny_data, tmp_path):
    """One rule for every output path: missing folders on the way are created."""
    assert invoke("render-scene", SCENES / "cube.json", "-o", tmp_path / "a" / "b" / "cube.png").exit_code == 0
    assert invoke("decompose", SCENES / "cube.png", "--overlay", tmp_path / "c" / "o.png").exit_code == 0
    assert invoke("render-dataset", tmp_path / "d" / "data", "--num", 2, "--model", "2d", "--quiet").exit_code == 0
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "e" / "run", "--steps", 1, "--quiet")
    assert result.exit_code == 0, result.output
    for made in ("a/b/cube.png", "c/o.png", "d/data/manifest.json", "e/run/checkpoint.pt"):
        assert (tmp_path / made).is_file(), made


def test_unusable_directory_outputs_are_one_line(tiny_data, tmp_path):
    (tmp_path / "file.txt").write_text("a file")
    one_line_error(invoke("train", "--data", tiny_data, "--out", tmp_path / "file.txt", "--steps", 1, "--quiet"),
                   "--out", "not a directory")
    one_line_error(invoke("train", "--data", tiny_data, "--out", tmp_path / "file.txt" / "run", "--steps", 1,
                          "--quiet"), "--out", "is not a directory")
    one_line_error(invoke("render-dataset", tmp_path / "file.txt", "--num", 2), "not a directory")


@pytest.mark.parametrize("content, fragment", [
    (b"\xff\xfe\x00bad", "not UTF-8 text"),
    ((SCENES / "cube.png").read_bytes(), "it looks like a PNG image"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"objects": [' + b"1" * 5000 + b"]}", "unreadable JSON"),
    (b"", "invalid JSON"),
])
def test_scene_files_that_are_not_json_are_one_line(tmp_path, content, fragment):
    scene = tmp_path / "scene.json"
    scene.write_bytes(content)
    one_line_error(invoke("render-scene", scene, "-o", tmp_path / "x.png"), str(scene), fragment)
    assert not (tmp_path / "x.png").exists()


def test_read_json_refuses_what_is_not_a_small_regular_file(tmp_path, monkeypatch):
    import inverse_air.files

    with pytest.raises(UserError, match="not a regular file"):
        read_json("/dev/zero")  # would never end
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="not a regular file"):
        read_json(tmp_path / "fifo")  # would block
    (tmp_path / "big.json").write_text(json.dumps(list(range(1000))))
    monkeypatch.setattr(inverse_air.files, "MAX_JSON_BYTES", 100)
    with pytest.raises(UserError, match="too large"):
        read_json(tmp_path / "big.json")


def test_check_output_allows_a_new_file_and_a_new_directory(tmp_path):
    assert check_output(tmp_path / "new.png", "-o", inputs=[tmp_path / "in.png"]) == tmp_path / "new.png"
    assert check_output(tmp_path / "a" / "b", "--out", directory=True, inputs=[tmp_path / "data"])


def _limited(limit_bytes: int):
    """preexec_fn: files of at most ``limit_bytes`` (writes beyond fail like a full disk)."""
    def set_limit():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return set_limit


def test_a_full_disk_is_one_line_and_keeps_what_was_there(tiny_data, tmp_path):
    """Writes that fail with the disk full (here: a file size limit) are one line, exit 1,
    and leave no half file: the checkpoint (written through memory), a shard, a PNG."""
    env = {**os.environ, "INVERSE_AIR_TEST_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "inverse_air", "train", "--data", str(tiny_data), "--out", str(tmp_path / "run"),
           "--steps", "2", "--batch-size", "4", "--elbo-batch-size", "2", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=_limited(60_000))
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "checkpoint.pt: cannot write: File too large" in done.stderr, done.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not list((tmp_path / "run").glob("*.tmp"))

    cmd = [sys.executable, "-m", "inverse_air", "render-dataset", str(tmp_path / "d"), "--model", "2d", "--num", "400",
           "--shard-size", "200", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=_limited(20_000))
    assert done.returncode == 1 and "cannot write: File too large" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not list((tmp_path / "d").glob("*.tmp"))
    assert not list((tmp_path / "d").glob("shard-*"))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)  # room again: the same command finishes
    assert done.returncode == 0, done.stderr
