import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from inverse_air import data as data_module
from inverse_air.config import DatasetConfig
from inverse_air.data import ShardDataset, render_dataset
from inverse_air.errors import UserError
from inverse_air.objects2d.config import Compose2DConfig
from inverse_air.objects2d.multimnist import Composer, load_digits
from inverse_air.objects3d.config import RenderConfig, Scenes3DConfig, Variation

from conftest import assert_datasets_agree

TINY_3D = DatasetConfig(scenes=Scenes3DConfig(render=RenderConfig(image_size=32), variation=Variation.none()),
                        num=25, counts=(0, 1, 2, 3), seed=5, shard_size=10)
"""Scenes of the fixed look (``--fixed-appearance``)."""
TINY_2D = DatasetConfig(scenes=Compose2DConfig(), num=40, counts=(0, 1, 2), seed=5, shard_size=16)


def shard_bytes(directory):
    """Every shard's bytes. Compared exactly between datasets made on this machine in this
    process (workers, resumes, shard ranges): rendering is deterministic on one machine, so the
    bytes are the same. Data made elsewhere: :func:`conftest.assert_datasets_agree`."""
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.npz"))}


def test_3d_dataset_has_full_ground_truth(tmp_path):
    render_dataset(tmp_path / "d", TINY_3D, progress=False)
    ds = ShardDataset(tmp_path / "d")
    assert len(ds) == 25 and ds.manifest["shards"] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    a = ds.arrays()
    assert a["images"].shape == (25, 32, 32, 3) and a["images"].dtype == np.uint8
    assert a["shape"].shape == (25, 3) and a["position"].shape == (25, 3, 2) and a["yaw"].shape == (25, 3)
    assert ((a["shape"] >= 0).sum(1) == a["count"]).all()
    assert set(np.unique(a["count"])) <= {0, 1, 2, 3}
    # empty scenes are all background, scenes with objects are not
    from inverse_air.images import to_uint8
    from inverse_air.objects3d.render3d import SceneRenderer

    background = to_uint8(SceneRenderer(TINY_3D.scenes.render).background[None])[0]
    for image, count in zip(a["images"], a["count"]):  # exact: an empty scene is the background itself
        assert np.array_equal(image, background) == (count == 0)


def test_the_counts_limit_is_what_reliably_fits_and_is_checked_before_anything_is_written(tmp_path):
    from typer.testing import CliRunner

    from inverse_air.cli import app
    from inverse_air.objects3d.prior import sample_prior

    invoke = lambda *args: CliRunner().invoke(app, [str(a) for a in args])
    # 3D, the default look (sizes up to 0.8): 6 objects, which failed about one scene in 20
    result = invoke("render-dataset", tmp_path / "six", "--num", 200, "--counts", 6, "--image-size", 8, "--quiet")
    assert result.exit_code == 0, result.output
    for scenes in (Scenes3DConfig(), Scenes3DConfig(variation=Variation.none()),
                   Scenes3DConfig(render=RenderConfig(object_scale=0.9), variation=Variation.none()),
                   Scenes3DConfig(variation=dataclasses.replace(Variation(), size_range=(0.85, 0.9)))):
        counts = np.full(40, scenes.max_objects)
        arrays = sample_prior(counts, np.random.default_rng(1), scenes.render, scenes.variation)
        assert (arrays["shape"] >= 0).all(), scenes
    # 2D: fewer digits fit a smaller canvas; more than fit is refused before anything is written
    composer = lambda size: Composer(load_digits("train"), Compose2DConfig(canvas_size=size))
    for size in (14, 24, 28, 32, 36, 44, 50, 64):
        limit = Compose2DConfig(canvas_size=size).max_objects
        assert all(composer(size).compose(np.random.default_rng(i), limit) for i in range(20))
    assert [Compose2DConfig(canvas_size=size).max_objects for size in (20, 28, 32, 36, 50, 64)] == [1, 1, 2, 2, 5, 5]
    result = invoke("render-dataset", tmp_path / "two", "--model", "2d", "--num", 20, "--counts", 2, "--image-size", 20)
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "error: --counts must be at most 1 (what fits a 20x20 canvas without overlapping ink reliably), got 2"]
    assert not (tmp_path / "two").exists()


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    render_dataset(tmp_path / "one", TINY_3D, workers=1, progress=False)
    render_dataset(tmp_path / "two", TINY_3D, workers=2, progress=False)
    assert shard_bytes(tmp_path / "one") == shard_bytes(tmp_path / "two")
    other = dataclasses.replace(TINY_3D, seed=6)
    render_dataset(tmp_path / "other", other, progress=False)
    assert shard_bytes(tmp_path / "one") != shard_bytes(tmp_path / "other")


def test_resume_after_interruption_gives_the_same_dataset(tmp_path, monkeypatch):
    render_dataset(tmp_path / "full", TINY_2D, progress=False)
    real_write = data_module.write_npz
    calls = {"n": 0}

    def dying_write(path, arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            path.with_name(path.name + ".tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt
        real_write(path, arrays)

    monkeypatch.setattr(data_module, "write_npz", dying_write)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(tmp_path / "cut", TINY_2D, progress=False)
    assert len(list((tmp_path / "cut").glob("*.npz"))) == 1
    with pytest.raises(UserError, match="incomplete"):
        ShardDataset(tmp_path / "cut")
    monkeypatch.setattr(data_module, "write_npz", real_write)
    render_dataset(tmp_path / "cut", TINY_2D, progress=False)
    assert shard_bytes(tmp_path / "cut") == shard_bytes(tmp_path / "full")
    assert not list((tmp_path / "cut").glob("*.tmp"))
    assert len(ShardDataset(tmp_path / "cut")) == 40
    preview = lambda d: (d / "preview.png").read_bytes()  # of 2D images: integer code
    assert preview(tmp_path / "cut") == preview(tmp_path / "full")


def test_refuses_to_mix_settings(tmp_path):
    render_dataset(tmp_path / "d", TINY_2D, progress=False)
    before = shard_bytes(tmp_path / "d")
    with pytest.raises(UserError, match="other settings.*seed"):
        render_dataset(tmp_path / "d", dataclasses.replace(TINY_2D, seed=9), progress=False)
    with pytest.raises(UserError, match=r"other settings \(different scenes.digit_scale_std\)"):
        render_dataset(tmp_path / "d", dataclasses.replace(TINY_2D, scenes=Compose2DConfig(digit_scale_std=0.2)),
                       progress=False)
    assert shard_bytes(tmp_path / "d") == before
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        render_dataset(tmp_path / "junk", TINY_2D, progress=False)


@pytest.mark.parametrize("change, field", [
    (dict(num=0), "num"), (dict(counts=(-1, 2)), "counts[0]"), (dict(counts=(0, 9)), "counts"),
    (dict(split="val"), "split"), (dict(shard_size=0), "shard_size"),
])
def test_bad_settings(tmp_path, change, field):
    from inverse_air.config import ConfigError

    with pytest.raises(ConfigError) as e:
        render_dataset(tmp_path / "d", dataclasses.replace(TINY_2D, **change), progress=False)
    assert e.value.path == field
    assert not (tmp_path / "d").exists()


def test_2d_boxes_hold_the_digits(tmp_path):
    render_dataset(tmp_path / "d", TINY_2D, progress=False)
    a = ShardDataset(tmp_path / "d").arrays()
    assert a["images"].shape == (40, 50, 50, 1)
    for image, count, boxes, digits in zip(a["images"][..., 0], a["count"], a["box"], a["digit"]):
        assert (digits >= 0).sum() == count
        inside = np.zeros_like(image, dtype=bool)
        for scale, x, y in boxes[:count]:
            w = scale * 50
            left, top = (x + 1) / 2 * 50 - w / 2, (y + 1) / 2 * 50 - w / 2
            assert 0 <= left and left + w <= 50 and 0 <= top and top + w <= 50
            assert 14 <= w <= 28
            inside[round(top):round(top + w), round(left):round(left + w)] = True
        assert image[~inside].max(initial=0) == 0  # no ink outside the windows
        assert (image.max() > 0) == (count > 0)


def test_embedded_train_and_test_pools_are_disjoint_and_balanced():
    train, test = load_digits("train"), load_digits("test")
    assert len(train.labels) == 4000 and len(test.labels) == 1000
    flat_train = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in flat_train for img in test.images)
    counts = np.bincount(test.labels, minlength=10)
    assert counts.min() > 60  # every class in the test pool, not just 8s and 9s


def test_reads_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    header = lambda magic, dims: magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header(0x0803, images.shape) + images.tobytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(header(0x0801, labels.shape) + labels.tobytes())
    pool = load_digits("test", str(tmp_path))
    assert np.array_equal(pool.images, images) and pool.labels.tolist() == list(range(7))
    with pytest.raises(UserError, match="no MNIST file train-images"):
        load_digits("train", str(tmp_path))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(header(0x0801, (9,)) + labels.tobytes())
    with pytest.raises(UserError, match="truncated"):
        load_digits("test", str(tmp_path))


def test_composer_is_deterministic():
    composer = Composer(load_digits("test"))
    a = composer.compose(np.random.default_rng(1), 3)
    b = composer.compose(np.random.default_rng(1), 3)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_shard_ranges_merged_equal_one_run_byte_for_byte(tmp_path):
    import shutil

    render_dataset(tmp_path / "one", TINY_2D, progress=False)
    render_dataset(tmp_path / "a", TINY_2D, progress=False, shard_range=(0, 1))
    render_dataset(tmp_path / "b", TINY_2D, progress=False, shard_range=(1, 3))
    assert [p.name for p in sorted((tmp_path / "b").glob("*.npz"))] == ["shard-00001.npz", "shard-00002.npz"]
    with pytest.raises(UserError, match="incomplete"):
        ShardDataset(tmp_path / "a")
    merged = tmp_path / "merged"
    shutil.copytree(tmp_path / "a", merged)
    for shard in (tmp_path / "b").glob("*.npz"):
        shutil.copy(shard, merged)
    render_dataset(merged, TINY_2D, progress=False)  # finds every shard: nothing to render
    files = lambda d: {p.name: p.read_bytes() for p in sorted(d.iterdir())}
    assert files(merged) == files(tmp_path / "one")
    with pytest.raises(UserError, match="shard-range 2:5 is not within"):
        render_dataset(tmp_path / "c", TINY_2D, progress=False, shard_range=(2, 5))


def test_crowded_canvases_start_over_instead_of_failing():
    """Three to five digits sometimes leave no room for the last one; the composer then starts
    the canvas over rather than refusing a valid request."""
    composer = Composer(load_digits("test"))
    rng = np.random.default_rng(0)
    for count in (3, 5):
        for _ in range(150):
            canvas, boxes, labels = composer.compose(rng, count)
            assert boxes.shape == (count, 3) and canvas.max() > 0


# ---------------------------------------------------------------- format 1
V1 = Path(__file__).resolve().parent / "data" / "v1"


@pytest.mark.parametrize("kind", ["3d", "2d"])
def test_format_1_datasets_are_read_and_resumed(tmp_path, kind):
    """A dataset written before kinds had packages (format 1): read with the same config, and
    re-running its render-dataset command in it finds it complete (nothing re-rendered)."""
    import shutil

    ds = ShardDataset(V1 / f"data{kind}")
    assert ds.manifest["format_version"] == 1 and ds.config.kind == kind and len(ds) == 12
    old = json.loads((V1 / f"data{kind}" / "manifest.json").read_text())["config"]
    assert ds.config.num == old["num"] and list(ds.config.counts) == old["counts"] and ds.config.seed == old["seed"]
    if kind == "3d":
        assert ds.config.scenes.render.image_size == old["render"]["image_size"] == 24
    else:
        assert ds.config.scenes.canvas_size == old["compose"]["canvas_size"] == 32 and ds.config.scenes.mnist is None
    copy = tmp_path / "copy"
    shutil.copytree(V1 / f"data{kind}", copy)
    before = shard_bytes(copy)
    render_dataset(copy, ds.config, progress=False)
    assert shard_bytes(copy) == before  # found complete: not a byte rewritten
    # and the same settings today make the same data (made on another machine: 3D renders
    # may round a pixel the other way)
    render_dataset(tmp_path / "new", ds.config, progress=False)
    assert_datasets_agree(tmp_path / "new", copy)



def test_making_2d_data_imports_no_torch(tmp_path):
    """The 2D kind's record and shard maker need no torch: composing digits stays light."""
    import subprocess
    import sys

    code = ("import dataclasses, sys; from inverse_air.data import render_dataset; "
            "from inverse_air.kinds import KINDS; "
            f"render_dataset({str(tmp_path / 'd')!r}, dataclasses.replace(KINDS['2d'].dataset, num=5), progress=False); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert ShardDataset(tmp_path / "d").config.kind == "2d"


# ---------------------------------------------------------------- failures and damage
def test_a_failed_first_run_does_not_block_the_corrected_retry(tmp_path, monkeypatch):
    """A run that fails before its first shard (a bad setting found late) leaves a manifest;
    the corrected command takes the directory over instead of refusing it."""
    import inverse_air.objects2d.kind as kind2d

    def failing(self, rng, counts):
        raise UserError("could not place 5 non-overlapping digits")

    monkeypatch.setattr(kind2d.ShardMaker, "__call__", failing)
    with pytest.raises(UserError, match="could not place"):
        render_dataset(tmp_path / "d", dataclasses.replace(TINY_2D, counts=(5,)), progress=False)
    assert (tmp_path / "d" / "manifest.json").exists() and not list((tmp_path / "d").glob("shard-*"))
    monkeypatch.undo()
    render_dataset(tmp_path / "d", TINY_2D, progress=False)
    assert ShardDataset(tmp_path / "d").config == TINY_2D


def test_a_damaged_shard_is_made_again_not_reported_ready(tmp_path):
    render_dataset(tmp_path / "full", TINY_2D, progress=False)
    render_dataset(tmp_path / "cut", TINY_2D, progress=False)
    shard = tmp_path / "cut" / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    manifest = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    (tmp_path / "cut" / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    notices = []
    render_dataset(tmp_path / "cut", TINY_2D, progress=False, notice=notices.append)
    assert len(notices) == 1 and "shard-00001.npz" in notices[0] and "made it again" in notices[0]
    assert shard_bytes(tmp_path / "cut") == shard_bytes(tmp_path / "full")


def _edited_copy(source, tmp_path, edit):
    import shutil

    from inverse_air.files import write_npz

    copy = tmp_path / "edited"
    shutil.copytree(source, copy)
    with np.load(copy / "shard-00001.npz") as shard:
        arrays = {k: shard[k].copy() for k in shard.files}
    edit(arrays)
    write_npz(copy / "shard-00001.npz", arrays)
    return copy


@pytest.mark.parametrize("edit, fragment", [
    (lambda a: a["box"].__setitem__((0, 0, 1), np.nan), "box holds NaN"),
    (lambda a: a["count"].__setitem__(0, 7), "count 7 in scene 0 is not one of the dataset's counts"),
    (lambda a: a["digit"].__setitem__((0, 0), 12), "digit holds labels outside"),
    (lambda a: a.__setitem__("images", a["images"].astype(np.float32)), "float32 array"),
    (lambda a: a.__setitem__("images", a["images"][:3]), "expected uint8 (24, 50, 50, 1)"),
    (lambda a: a.pop("digit"), "holds box.npy, count.npy, images.npy"),
])
def test_hand_edited_shards_are_refused_naming_the_shard(tiny_data_2d, tmp_path, edit, fragment):
    copy = _edited_copy(tiny_data_2d, tmp_path, edit)
    with pytest.raises(UserError, match="shard-00001.npz") as e:
        ShardDataset(copy).arrays()
    assert fragment in str(e.value)


@pytest.mark.parametrize("edit, fragment", [
    (lambda a, i: a["color"].__setitem__((i, 0, 0), 1.5), "color outside [0, 1]"),
    (lambda a, i: a["shape"].__setitem__((i, 0), 7), "shape holds labels outside"),
    (lambda a, i: a["position"].__setitem__((i, 0, 0), 3.0), "position outside the scene square"),
    (lambda a, i: a["count"].__setitem__(i, 0), "shape's filled slots do not match count"),
    (lambda a, i: a.pop("camera"), "a 3d shard holds"),
])
def test_hand_edited_3d_shards_are_refused_naming_the_shard(tiny_data, tmp_path, edit, fragment):
    def edit_a_scene_with_objects(arrays):
        edit(arrays, int(np.flatnonzero(arrays["count"] > 0)[0]))

    copy = _edited_copy(tiny_data, tmp_path, edit_a_scene_with_objects)
    with pytest.raises(UserError, match="shard-00001.npz") as e:
        ShardDataset(copy).arrays()
    assert fragment in str(e.value)


def test_a_shard_header_claiming_huge_arrays_is_refused_before_allocating(tiny_data_2d, tmp_path):
    """The header of a .npy member is checked before its data is read: a shard that says its
    images are (10**9, 50, 50, 1) costs nothing."""
    import zipfile

    copy = _edited_copy(tiny_data_2d, tmp_path, lambda a: None)
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 50, 50, 1), np.uint8))
    header["shape"] = (10**9, 50, 50, 1)
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(copy / "shard-00001.npz") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["images.npy"] = buffer.getvalue() + b"\0" * 100
    with zipfile.ZipFile(copy / "shard-00001.npz", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(UserError, match=r"images: uint8 array of shape \(1000000000, 50, 50, 1\)"):
        ShardDataset(copy).arrays()


def test_a_manifest_whose_shard_list_was_edited_is_refused(tiny_data_2d, tmp_path):
    import shutil

    copy = tmp_path / "d"
    shutil.copytree(tiny_data_2d, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"] = ["../../etc/passwd", "shard-00001.npz"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="its shards do not match its configuration"):
        ShardDataset(copy)


def test_ctrl_c_with_workers_is_one_line_and_keeps_whole_shards(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "d"
    cmd = [sys.executable, "-m", "inverse_air", "render-dataset", str(out), "--model", "2d", "--num", "400000",
           "--shard-size", "2000", "--workers", "2"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("shard-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("interrupted:"), stderr
    assert not list(out.glob("*.tmp"))
    for shard in out.glob("shard-*.npz"):  # every shard left is whole
        with np.load(shard) as data:
            assert len(data["count"]) == 2000


def test_a_bad_digit_source_is_one_error_whatever_the_workers(tmp_path):
    """Refused before anything is written with one worker; with two, the workers' failure
    comes back as the same error (a pool whose initializer fails would respawn forever)."""
    config = dataclasses.replace(TINY_2D, scenes=Compose2DConfig(mnist=str(tmp_path / "none")))
    with pytest.raises(UserError, match="not a directory"):
        render_dataset(tmp_path / "one", config, progress=False)
    assert not (tmp_path / "one").exists()
    with pytest.raises(UserError, match="not a directory"):
        render_dataset(tmp_path / "two", config, workers=2, progress=False)
    assert not list((tmp_path / "two").glob("shard-*"))


def test_3d_datasets_vary_their_look_by_default(tmp_path):
    """Each scene its own camera, light and ground, each object its own colour and size, all in
    the shards; an empty scene shows just its own ground."""
    import torch

    from inverse_air.kinds import KINDS
    from inverse_air.objects3d.render3d import SceneRenderer

    config = dataclasses.replace(KINDS["3d"].dataset, num=12, seed=2, shard_size=12, counts=(0, 1, 2),
                                 scenes=KINDS["3d"].dataset.scenes.with_image_size(32))
    assert config.scenes.variation.varied == ("camera", "light", "ground", "color", "size")
    render_dataset(tmp_path / "d", config, progress=False)
    a = ShardDataset(tmp_path / "d").arrays()
    assert a["camera"].shape == (12, 3) and a["color"].shape == (12, 2, 3) and a["size"].shape == (12, 2)
    assert len(np.unique(a["ground_color"][:, 0])) == 12
    renderer = SceneRenderer(config.scenes.render)
    for i in np.flatnonzero(a["count"] == 0):
        with torch.no_grad():
            empty = renderer(torch.full((1, 0), -1), torch.zeros(1, 0, 2), torch.zeros(1, 0),
                             camera=torch.from_numpy(a["camera"][i:i + 1]),
                             ground_color=torch.from_numpy(a["ground_color"][i:i + 1]))
        assert np.abs(a["images"][i].astype(int) - (empty[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(int)).max() <= 1


def test_fixed_appearance_makes_todays_data():
    """``--fixed-appearance`` data are the data of before the look could vary: the same scenes,
    the same renders (``tests/data/v1/data3d`` was made by that code, on another machine: the
    same bytes here, but another CPU may round a pixel the other way)."""
    import tempfile

    ds = ShardDataset(V1 / "data3d")
    assert ds.config.scenes.variation == Variation.none()
    with tempfile.TemporaryDirectory() as tmp:
        render_dataset(tmp, ds.config, progress=False)
        assert_datasets_agree(tmp, V1 / "data3d")

