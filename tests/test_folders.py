"""Folders of images as datasets: reading (sizes, channels, conversions), labels.jsonl and its
errors, the images training monitors on, and what train and evaluate do with a folder."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from inverse_air.data import open_dataset
from inverse_air.errors import UserError
from inverse_air.folders import ImageFolder, read_labels


def save(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def grey_blobs(root, n=6, size=24, seed=0):
    """``n`` grey images with a bright square or two on a dark ground."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = np.full((size, size), 10, np.uint8)
        for _ in range(1 + i % 2):
            top, left = rng.integers(0, size - 6, size=2)
            image[top:top + 6, left:left + 6] = 230
        save(root / f"img{i:02d}.png", image)
    return root


def write_labels(folder, lines):
    (folder / "labels.jsonl").write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))


# ---------------------------------------------------------------- reading
def test_a_folder_is_read_at_the_median_side_in_grey_when_every_image_is_grey(tmp_path):
    save(tmp_path / "a.png", np.zeros((20, 20)))
    save(tmp_path / "b.png", np.full((30, 30, 3), 77))  # RGB, but grey: equal channels
    save(tmp_path / "c.png", np.zeros((40, 40)))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"skipped")
    notices = []
    folder = ImageFolder(tmp_path, "2d", notice=notices.append)
    assert len(folder) == 3 and [p.name for p in folder.paths] == ["a.png", "b.png", "c.png"]
    assert folder.image_size == 30 and folder.channels == 1
    arrays = folder.arrays()
    assert arrays["images"].shape == (3, 30, 30, 1) and arrays["images"].dtype == np.uint8
    assert (arrays["images"][1] == 77).all() and arrays["count"].tolist() == [-1, -1, -1]
    assert folder.counts is None
    assert any("median of their longer sides" in n for n in notices)
    assert any("resized to the model's 30x30" in n and "(2 images like this one)" in n for n in notices)


def test_colour_non_square_and_clamped_sizes(tmp_path):
    image = np.zeros((10, 40, 3), np.uint8)
    image[:, :, 0] = 200  # a red strip: padded above and below with its border's median (red)
    save(tmp_path / "wide.png", image)
    notices = []
    folder = ImageFolder(tmp_path, "2d", notice=notices.append)
    assert folder.image_size == 40 and folder.channels == 3
    assert (folder.images[0, :, :, 0] == 200).all() and (folder.images[0, :, :, 1:] == 0).all()
    assert any("10 image padded to 40x40" in n for n in notices)
    save(tmp_path / "wide.png", np.zeros((300, 300, 3)))
    assert ImageFolder(tmp_path, "2d", notice=notices.append).image_size == 128  # clamped
    assert ImageFolder(tmp_path, "2d", image_size=20, channels=1, notice=notices.append).images.shape == (1, 20, 20, 1)


def test_folder_errors_are_one_line_naming_the_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: holds no image files"):
        open_dataset(tmp_path / "empty", "2d")
    with pytest.raises(UserError, match="no such directory"):
        open_dataset(tmp_path / "missing", "2d")
    grey_blobs(tmp_path / "bad", n=2)
    (tmp_path / "bad" / "img01.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    with pytest.raises(UserError, match=r"img01.png: (not an image|unreadable)"):
        open_dataset(tmp_path / "bad", "2d")


def test_an_image_that_does_not_fit_in_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    import inverse_air.limits as limits

    grey_blobs(tmp_path, n=3)
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)
    with pytest.raises(UserError, match="its 3 images at 24x24x1 needs about"):
        ImageFolder(tmp_path, "2d", notice=lambda text: None)


# ---------------------------------------------------------------- labels.jsonl
def test_labels_for_some_images_give_counts_and_boxes(tmp_path):
    grey_blobs(tmp_path, n=4)
    write_labels(tmp_path, [{"image": "img02.png", "count": 2, "boxes": [[0.25, 0.1, 0.2], [0.3, -0.5, 0.5]]},
                            "", {"image": "img00.png", "count": 0, "boxes": []}])
    folder = ImageFolder(tmp_path, "2d", notice=lambda text: None)
    arrays = folder.arrays()
    assert arrays["count"].tolist() == [0, -1, 2, -1] and folder.counts == (0, 2)
    assert arrays["box"].shape == (4, 2, 3) and np.allclose(arrays["box"][2], [[0.25, 0.1, 0.2], [0.3, -0.5, 0.5]])
    assert float(np.abs(arrays["box"][[0, 1, 3]]).max()) == 0.0
    only = ImageFolder(tmp_path, "2d", labelled_only=True, notice=lambda text: None)
    assert [p.name for p in only.paths] == ["img00.png", "img02.png"] and only.arrays()["count"].tolist() == [0, 2]
    write_labels(tmp_path, [{"image": "img01.png", "count": 3}])  # counts alone: no box array
    assert set(read_labels(tmp_path / "labels.jsonl", [f"img{i:02d}.png" for i in range(4)], "2d")) == {"count"}


@pytest.mark.parametrize("line, message", [
    ("{not json", r"line 1: invalid JSON"),
    ("[1, 2]", r"line 1: expected a JSON object"),
    ({"image": "img00.png"}, r"line 1: field 'count' is missing"),
    ({"image": "nope.png", "count": 1}, r"line 1: image 'nope.png' is not an image file of"),
    ({"image": "img00.png", "count": -1}, r"line 1: field 'count' must be a non-negative integer"),
    ({"image": "img00.png", "count": True}, r"line 1: field 'count' must be a non-negative integer"),
    # once an OverflowError, a ValueError and a 27 GB confusion matrix in evaluate:
    ({"image": "img00.png", "count": 10**30}, r"line 1: field 'count' must be at most 100 .*, got 1000000000"),
    ({"image": "img00.png", "count": 5 * 10**9}, r"line 1: field 'count' must be at most 100"),
    ({"image": "img00.png", "count": 101}, r"line 1: field 'count' must be at most 100 \(a model finds at most 8"),
    ({"image": "img00.png", "count": 1, "colour": "red"}, r"line 1: unknown field 'colour' \(a 2d model's labels"),
    ({"image": "img00.png", "count": 2, "boxes": [[0.2, 0, 0]]}, r"line 1: field 'boxes' must list 2 objects"),
    ({"image": "img00.png", "count": 1, "boxes": [[0.2, 0]]}, r"line 1: box 0: expected \[scale, x, y\]"),
    ({"image": "img00.png", "count": 1, "boxes": [[1.5, 0, 0]]}, r"line 1: box 0: .* is not a window on the image"),
    ({"image": "img00.png", "count": 1, "boxes": [[0.2, 0, float("nan")]]}, r"line 1: (invalid JSON|box 0)"),
])
def test_each_bad_labels_line_is_one_line_naming_the_file_and_line(tmp_path, line, message):
    grey_blobs(tmp_path, n=2)
    write_labels(tmp_path, [line])
    with pytest.raises(UserError, match=message) as error:
        ImageFolder(tmp_path, "2d", notice=lambda text: None)
    assert "labels.jsonl" in str(error.value) and "\n" not in str(error.value)


def test_labels_twice_or_objects_on_some_lines_only_are_refused(tmp_path):
    grey_blobs(tmp_path, n=2)
    write_labels(tmp_path, [{"image": "img00.png", "count": 0}, {"image": "img00.png", "count": 1}])
    with pytest.raises(UserError, match=r"line 2: image 'img00.png' is labelled twice \(also on line 1\)"):
        ImageFolder(tmp_path, "2d", notice=lambda text: None)
    write_labels(tmp_path, [{"image": "img00.png", "count": 0, "boxes": []}, {"image": "img01.png", "count": 1}])
    with pytest.raises(UserError, match=r"line 2: has no 'boxes' where other lines do"):
        ImageFolder(tmp_path, "2d", notice=lambda text: None)


def test_monitoring_images_are_held_out_labelled_first_and_fixed(tmp_path):
    grey_blobs(tmp_path, n=40)
    write_labels(tmp_path, [{"image": f"img{i:02d}.png", "count": 1} for i in (5, 17, 33)])
    folder = ImageFolder(tmp_path, "2d", notice=lambda text: None)
    monitor = folder.monitor_indices(256)
    assert len(monitor) == 4 and {5, 17, 33} <= set(monitor.tolist())  # one in ten, labelled ones first
    training = folder.training_indices(256)
    assert len(training) == 36 and not set(training.tolist()) & set(monitor.tolist())
    assert np.array_equal(ImageFolder(tmp_path, "2d", notice=lambda text: None).monitor_indices(256), monitor)
    small = ImageFolder(grey_blobs(tmp_path / "small", n=5), "2d", notice=lambda text: None)
    assert small.monitor_indices(256).tolist() == [0, 1, 2, 3, 4] and small.training_indices(256) is None


# ---------------------------------------------------------------- train and evaluate on folders
TINY_TRAIN = {"steps": 4, "elbo_batch_size": 8, "log_every": 2, "checkpoint_every": 4, "image_every": 2}


def metric_lines(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_on_an_unlabelled_folder_reports_the_elbo_and_the_count_histogram(tmp_path):
    from inverse_air.plan import run_config_for
    from inverse_air.train import train

    folder = grey_blobs(tmp_path / "images", n=30)
    config = run_config_for(folder, "2d", TINY_TRAIN, {"max_steps": 2})
    air = config.air
    assert (air.image_size, air.channels, air.max_steps) == (24, 1, 2)
    # Nobody counted: a geometric prior (each object costs the same, 1e-10: 23 nats), its tail
    # not floored.
    assert np.allclose(np.log(air.count_prior), [0.0, np.log(1e-10), np.log(1e-20)], atol=1e-6)
    assert air.count_prior_floor <= air.count_prior[-1]
    assert air.objects.scale_prior_mean == 0.25 and air.objects.window_size == air.objects.glimpse_size == 12
    # The folder preset: windows laid over each other, bounded to half to 1.5 times the object size.
    assert (air.objects.composite, air.dair, air.pixel_sigma) == ("over", True, 0.5)
    assert (air.objects.scale_min, air.objects.scale_max) == (0.125, 0.375)
    last = train(config, tmp_path / "run", progress=False)
    lines = metric_lines(tmp_path / "run")
    assert [l["step"] for l in lines] == [2, 4] and last["step"] == 4
    for line in lines:
        assert "monitor_count_accuracy" not in line
        assert len(line["monitor_count_hist"]) == 3 and sum(line["monitor_count_hist"]) == pytest.approx(1.0, abs=1e-3)
        assert line["monitor_elbo"] == pytest.approx(line["monitor_log_likelihood"] - line["monitor_kl"], rel=1e-4)
    assert (tmp_path / "run" / "images" / "step-0000002.png").exists()
    from inverse_air.train import Trainer

    text = Trainer.progress_text(lines[-1])
    assert set(text) == {"phase", "loss", "elbo", "counts"} and text["counts"].count("/") == 2


def test_labels_turn_on_count_accuracy_and_never_reach_the_loss(tmp_path):
    from inverse_air.plan import run_config_for
    from inverse_air.train import Trainer

    folder = grey_blobs(tmp_path / "images", n=30)
    write_labels(folder, [{"image": f"img{i:02d}.png", "count": 1 + i % 2} for i in range(30)])
    config = run_config_for(folder, "2d", TINY_TRAIN, {"max_steps": 2})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    batch = trainer.batches.data(0, 8, targets=False)
    assert batch[1] is None  # the ELBO phase's batches carry no labels
    trainer.run()
    line = metric_lines(tmp_path / "run")[-1]
    assert 0.0 <= line["monitor_count_accuracy"] <= 1.0 and "count_acc" in Trainer.progress_text(line)
    assert run_config_for(folder, "2d", TINY_TRAIN, {"max_steps": 2}, "dataset").air.count_prior == \
        pytest.approx((0.0, 0.5, 0.5))  # uniform over the counts the labels hold


def test_an_rgb_folder_of_another_size_trains_the_2d_model_in_colour(tmp_path):
    from inverse_air.plan import run_config_for
    from inverse_air.train import train

    rng = np.random.default_rng(0)
    folder = tmp_path / "colour"
    folder.mkdir()
    for i in range(12):
        image = np.zeros((20, 28, 3), np.uint8)
        image[5:12, 4 + i:11 + i] = rng.integers(60, 255, size=3)
        save(folder / f"c{i:02d}.png", image)
    config = run_config_for(folder, "2d", TINY_TRAIN, {}, object_size=7, window_size=10)
    air = config.air
    assert (air.image_size, air.channels) == (28, 3)
    assert air.objects.scale_prior_mean == pytest.approx(0.25) and air.objects.window_size == 10
    train(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    # The sizes read back in pixels from the run's model: the same ones resume, others are refused.
    from inverse_air.plan import resume_config

    assert resume_config(tmp_path / "run", object_size=7, window_size=10) == config
    with pytest.raises(UserError, match=r"--object-size 8: the run in .* was trained with --object-size 7;"):
        resume_config(tmp_path / "run", object_size=8)
    with pytest.raises(UserError, match=r"--window-size 12: .* trained with --window-size 10"):
        resume_config(tmp_path / "run", window_size=12)


def test_the_2d_sizes_are_one_typed_value_of_the_kind():
    """--object-size and --window-size reach the 2D kind as its WindowSizes, checked when made
    (a size the kind does not take, or out of range, is named by its flag), and a model's
    sizes read back in pixels."""
    from inverse_air.config import ConfigError
    from inverse_air.kinds import KINDS
    from inverse_air.objects2d.config import WindowSizes
    from inverse_air.plan import _folder_sizes

    assert _folder_sizes(KINDS["2d"], {"object_size": 7, "window_size": None}) == WindowSizes(object_size=7.0)
    assert _folder_sizes(KINDS["2d"], {"object_size": None}) is None
    with pytest.raises(ConfigError, match="object_size must be a positive number of pixels, got -1"):
        _folder_sizes(KINDS["2d"], {"object_size": -1})
    with pytest.raises(ConfigError, match="window_size must be between 4 and 256, got 2"):
        _folder_sizes(KINDS["2d"], {"window_size": 2})
    with pytest.raises(UserError, match="--window-size: the 3d model takes no such size"):
        _folder_sizes(KINDS["3d"], {"window_size": 12})
    fitted = KINDS["2d"].fit_to_images(KINDS["2d"].folder_air, 40, 1, WindowSizes(object_size=10.0))
    assert WindowSizes.of(fitted.objects) == WindowSizes(object_size=10.0, window_size=15)
    # The decoder draws at 1.5 times the object size, the glimpse reads the object size (at least 12).
    fitted = KINDS["2d"].fit_to_images(KINDS["2d"].folder_air, 64, 3)
    assert (fitted.objects.window_size, fitted.objects.glimpse_size) == (24, 16)
    assert fitted.encoder_channels == fitted.baseline_channels == (16, 32)


def test_the_2d_folder_preset_anneals_the_presence_prior_and_a_run_can_change_it(tmp_path, tiny_data_2d):
    """A 2D folder run anneals its presence prior from 0.99 over 1,000 steps (its 1e-10 per
    object would switch every object off before the decoder draws); the multi-MNIST preset
    (a dataset) does not; a training field sets either."""
    from inverse_air.plan import run_config_for

    folder = grey_blobs(tmp_path / "images", n=30)
    preset = run_config_for(folder, "2d", TINY_TRAIN, {"max_steps": 2}).train
    assert (preset.presence_anneal_steps, preset.presence_anneal_start) == (1000, 0.99)
    assert preset.steps == TINY_TRAIN["steps"]  # the folder preset's other fields: overridden as asked
    assert run_config_for(tiny_data_2d, "2d", TINY_TRAIN, {}).train.presence_anneal_steps == 0
    asked = run_config_for(folder, "2d", {**TINY_TRAIN, "presence_anneal_steps": 500}, {"max_steps": 2}).train
    assert (asked.presence_anneal_steps, asked.presence_anneal_start) == (500, 0.99)
    assert run_config_for(folder, "2d", {**TINY_TRAIN, "presence_anneal_steps": 0},
                          {"max_steps": 2}).train.presence_anneal_steps == 0


def test_elbo_steps_use_the_annealed_presence_prior_and_monitoring_the_models_own(tmp_path):
    """Each ELBO step's presence chain uses the schedule's prior at that step (step 0: the
    start; from the anneal's end: the model's own); the monitoring ELBO (and so anything chosen
    by it) always uses the model's own. 1e-6: float32 rounding."""
    from inverse_air.schedules import annealed_presence_prior
    from inverse_air.plan import run_config_for
    from inverse_air.train import Trainer

    folder = grey_blobs(tmp_path / "images", n=30)
    config = run_config_for(folder, "2d", {**TINY_TRAIN, "presence_anneal_steps": 2, "presence_anneal_start": 0.9},
                            {"max_steps": 2})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    own = trainer.model.prior_pres.clone()
    assert (own < 0.5).all()  # the geometric prior: far from the start
    used, monitored = [], []
    loss, monitor = trainer.loss, trainer.monitor
    trainer.loss = lambda *args: (used.append(trainer.model.prior_pres.clone()), loss(*args))[1]
    trainer.monitor = lambda: (result := monitor(), monitored.append(trainer.model.prior_pres.clone()))[0]
    trainer.run()
    assert len(used) == 4 and len(monitored) == 2
    assert torch.allclose(used[0], torch.full_like(own, 0.9), atol=1e-6)
    assert torch.allclose(used[1], annealed_presence_prior(own, 0.9, 2, 1), atol=1e-6)
    logit = lambda p: torch.log(p) - torch.log1p(-p)  # between the two, in log-odds (the prior is 1e-10)
    assert (logit(used[1]) - logit(own) > 1).all() and (logit(torch.tensor(0.9)) - logit(used[1]) > 1).all()
    for p in used[2:] + monitored:
        assert torch.allclose(p, own, atol=1e-6)


def test_best_pt_keeps_the_interval_of_the_best_held_out_elbo_and_survives_resume(tmp_path, tiny_data_2d):
    """On a folder, best.pt holds the model of the log interval whose monitoring ELBO (held-out
    images, no labels) was highest: its step is that line's, and the ELBO of the monitoring
    images recomputed from best.pt is that line's (the same computation on the same weights:
    1e-4 relative). A resumed run carries on from the best so far; a rendered dataset (whose
    monitoring scenes are trained on) keeps no best.pt."""
    from inverse_air.checkpoint import load_checkpoint
    from inverse_air.evaluate import evaluate
    from inverse_air.checkpoint import build_model
    from inverse_air.elbo import image_terms
    from inverse_air.plan import run_config_for
    from inverse_air.train import MONITOR_SIZE, Trainer, train
    from inverse_air.images import images_to_tensor

    folder = grey_blobs(tmp_path / "images", n=40)
    run = tmp_path / "run"
    flags = {**TINY_TRAIN, "steps": 6, "log_every": 1, "checkpoint_every": 3, "elbo_lr": 1e-2}
    train(run_config_for(folder, "2d", flags, {"max_steps": 2}), run, progress=False)
    lines = metric_lines(run)
    elbos = [line["monitor_elbo"] for line in lines]
    best = load_checkpoint(run / "best.pt")
    assert best["step"] == lines[elbos.index(max(elbos))]["step"] and best["optimizer"] is None
    assert best["extra"]["monitor_elbo"] == max(elbos)
    model = build_model(best["config"].air)
    model.load_state_dict(best["weights"])
    model.eval()
    monitor = open_dataset(folder, "2d").monitor_indices(MONITOR_SIZE)
    x = images_to_tensor(open_dataset(folder, "2d").arrays()["images"][monitor])
    assert float(image_terms(model, x)["elbo"].mean()) == pytest.approx(max(elbos), rel=1e-4)
    assert evaluate(run / "best.pt", folder)["num_scenes"] == 40  # a checkpoint like any other

    resumed = Trainer(run_config_for(folder, "2d", {**flags, "steps": 8}, {"max_steps": 2}), run, resume=True,
                      progress=False)
    assert resumed.best_elbo == max(elbos)  # the checkpoint at step 6 is the last
    resumed.release()

    other = tmp_path / "dataset-run"
    train(run_config_for(tiny_data_2d, "2d", {**TINY_TRAIN, "log_every": 1}, {}), other, progress=False)
    assert not (other / "best.pt").exists() and (other / "checkpoint.pt").exists()


@pytest.fixture
def trained_2d(tmp_path):
    from inverse_air.plan import run_config_for
    from inverse_air.train import train

    folder = grey_blobs(tmp_path / "first", n=20)
    train(run_config_for(folder, "2d", TINY_TRAIN, {"max_steps": 2}), tmp_path / "first-run", progress=False)
    return tmp_path / "first-run" / "checkpoint.pt"


def test_init_starts_from_the_checkpoints_model_with_a_new_optimizer(trained_2d, tmp_path):
    import torch

    from inverse_air.checkpoint import load_checkpoint
    from inverse_air.plan import run_config_for
    from inverse_air.train import Trainer

    rng = np.random.default_rng(1)
    other = tmp_path / "other"
    other.mkdir()
    for i in range(12):  # colour images of another size: brought to the checkpoint's 24x24 grey
        save(other / f"o{i:02d}.png", rng.integers(0, 255, size=(32, 32, 3)))
    config = run_config_for(other, None, {"steps": 2, "log_every": 1}, {}, init=trained_2d)
    saved = load_checkpoint(trained_2d)
    assert config.init == str(trained_2d.absolute()) and config.air == saved["config"].air
    assert config.train.sleep_fraction == 0.0 and config.train.steps == 2
    trainer = Trainer(config, tmp_path / "tuned", progress=False)
    assert trainer.step == 0 and not trainer.optimizer.state and trainer.monitor_x.shape[1:] == (1, 24, 24)
    weights = trainer.model.state_dict()
    for name, value in saved["weights"].items():
        if name != "signal_stats":
            assert torch.equal(weights[name], value), name  # copied, not computed
    assert weights["signal_stats"].tolist() == [0.0, 1.0, 0.0]  # learning-signal statistics start afresh
    trainer.run()
    assert load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")["config"].init == config.init


@pytest.mark.parametrize("flags, message", [
    (dict(air={"max_steps": 3}), r"--max-objects 3: the model of --init .* has 2"),
    (dict(air={"dair": False}), r"--dair False: the model of --init"),
    (dict(object_size=5), r"--object-size 5: --init .* fixes the model \(24x24x1 images\)"),
    (dict(image_size=32), r"--image-size 32: --init"),
    (dict(model="3d"), r"is a 2d model checkpoint, expected a 3d model"),
])
def test_init_refuses_settings_that_contradict_the_checkpoint(trained_2d, tmp_path, flags, message):
    from inverse_air.plan import run_config_for

    folder = grey_blobs(tmp_path / "data", n=4)
    flags = dict(flags)
    air, model = flags.pop("air", {}), flags.pop("model", None)
    with pytest.raises(UserError, match=message):
        run_config_for(folder, model, {}, air, init=trained_2d, **flags)


def test_init_runs_on_a_small_3d_folder(tiny_run_config, tiny_data, tmp_path):
    from inverse_air.checkpoint import save_checkpoint
    from inverse_air.data import ShardDataset
    from inverse_air.checkpoint import build_model
    from inverse_air.plan import run_config_for
    from inverse_air.train import train

    config = tiny_run_config()
    save_checkpoint(tmp_path / "model3d.pt", build_model(config.air), config, step=0)
    folder = tmp_path / "renders"
    folder.mkdir()
    arrays = ShardDataset(tiny_data).arrays()
    for i, image in enumerate(arrays["images"][:12]):
        save(folder / f"r{i:02d}.png", image)
    scratch = run_config_for(folder, "3d", {}, {}).air  # a new 3D model sleeps on its count prior: uniform
    assert scratch.count_prior == pytest.approx((0.25,) * 4) and scratch.image_size == 64
    tuned = run_config_for(folder, None, {"steps": 2, "elbo_batch_size": 2, "log_every": 1}, {},
                           init=tmp_path / "model3d.pt")
    assert tuned.air.kind == "3d" and tuned.train.sleep_fraction == 0.0
    last = train(tuned, tmp_path / "run", progress=False)
    assert last["step"] == 2 and last["phase"] == "elbo"
    # Labels in scene-file terms turn on the 3D metrics of evaluate.
    from inverse_air.evaluate import evaluate
    from inverse_air.objects3d.scene import SHAPES

    lines = []
    for i in range(6):
        slots = np.flatnonzero(arrays["shape"][i] >= 0)
        objects = [{"shape": SHAPES[arrays["shape"][i, k]], "position": arrays["position"][i, k].tolist(),
                    "yaw_deg": float(arrays["yaw"][i, k])} for k in slots]
        lines.append({"image": f"r{i:02d}.png", "count": int(arrays["count"][i]), "objects": objects})
    write_labels(folder, lines)
    metrics = evaluate(tmp_path / "run" / "checkpoint.pt", folder)
    assert metrics["num_scenes"] == 6 and "identity_accuracy" in metrics and "count_accuracy" in metrics
    write_labels(folder, [{"image": "r00.png", "count": 1, "objects": [{"shape": "cone", "position": [0, 0]}]}])
    with pytest.raises(UserError, match=r"labels.jsonl: line 1: object 0: field 'shape': unknown shape \"cone\""):
        evaluate(tmp_path / "run" / "checkpoint.pt", folder)


def test_evaluate_on_a_labelled_folder_unlabelled_and_counted_only(trained_2d, tmp_path):
    from inverse_air.evaluate import evaluate

    folder = grey_blobs(tmp_path / "scored", n=10)
    unlabelled = evaluate(trained_2d, folder)
    assert unlabelled["labelled"] is False and unlabelled["num_scenes"] == 10
    assert len(unlabelled["count_hist"]) == 3 and "count_accuracy" not in unlabelled
    write_labels(folder, [{"image": f"img{i:02d}.png", "count": 1 + i % 2} for i in range(0, 10, 2)])
    counted = evaluate(trained_2d, folder)
    assert counted["num_scenes"] == 5 and 0 <= counted["count_accuracy"] <= 1
    assert np.array(counted["confusion"]).sum() == 5 and "position_error" not in counted
    write_labels(folder, [{"image": "img00.png", "count": 1, "boxes": [[0.25, 0.0, 0.0]]},
                          {"image": "img01.png", "count": 0, "boxes": []}])
    boxed = evaluate(trained_2d, folder)
    assert boxed["num_scenes"] == 2 and "position_error" in boxed and "scale_error" in boxed
    refined = evaluate(trained_2d, folder, refine=1)  # decompose --refine's answers, scored
    assert refined["refine"] == 1 and boxed["refine"] == 0
    assert refined["num_scenes"] == 2 and np.array(refined["confusion"]).sum() == 2


@pytest.mark.parametrize("flag, value, message", [
    ("--image-size", -1, "--image-size must be between 8 and 1024, got -1"),
    ("--image-size", 0, "--image-size must be between 8 and 1024, got 0"),
    ("--image-size", 2000, "--image-size must be between 8 and 1024, got 2000"),
    ("--steps", 0, "--steps must be between 1 and"),
])
@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_flag_ranges_are_checked_before_any_image_is_read(tmp_path, kind, flag, value, message):
    from typer.testing import CliRunner

    from inverse_air.cli import app

    folder = grey_blobs(tmp_path / "blobs", n=3)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # innocent: never reached
    result = CliRunner().invoke(app, ["train", "--model", kind, "--data", str(folder), "--out", str(tmp_path / "run"),
                                      flag, str(value), "--quiet"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.output


def test_folder_flags_and_their_errors_on_the_command_line(trained_2d, tiny_data_2d, tmp_path):
    from typer.testing import CliRunner

    from inverse_air.cli import app

    folder = grey_blobs(tmp_path / "cli", n=6)
    run = lambda *args: CliRunner().invoke(app, list(map(str, args)))
    cases = [
        (["train", "--model", "3d", "--data", folder, "--object-size", 10], "--object-size: the 3d model takes no such size"),
        (["train", "--model", "2d", "--data", tiny_data_2d, "--image-size", 32], "--image-size: "),
        (["train", "--model", "2d", "--data", folder, "--count-prior", "dataset"], "--count-prior dataset: "),
        (["train", "--model", "2d", "--data", folder, "--max-objects", 9], "--max-objects must be between 1 and 8"),
        (["train", "--model", "2d", "--data", folder, "--object-size", 0.1],
         "--object-size must be between 0.24 and 24, got 0.1 (pixels, for 24x24 images)"),
        (["train", "--model", "2d", "--data", folder, "--object-size", 30],
         "--object-size must be between 0.24 and 24"),
        (["train", "--model", "2d", "--data", folder, "--supervised"], "--supervised: "),
        (["train", "--data", folder, "--init", trained_2d, "--max-objects", 5], "--max-objects 5: the model of --init"),
    ]
    for args, message in cases:
        result = run(*args, "--out", tmp_path / "out", "--quiet")
        lines = result.output.strip().splitlines()  # notices about reading the folder, then one error
        assert result.exit_code == 1 and lines[-1].startswith("error: ") and message in lines[-1], (args, result.output)
        assert all(line.startswith("notice: ") for line in lines[:-1]), result.output
        assert not (tmp_path / "out" / "checkpoint.pt").exists()
    result = run("evaluate", trained_2d, "--data", folder)
    assert result.exit_code == 0 and "labels             none" in result.output and "inferred counts" in result.output
