import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

# Two threads, as on the CI machines; INVERSE_AIR_TEST_THREADS=1 on a machine whose cores are
# busy with something else (oversubscribed threads make CPU training many times slower).
torch.set_num_threads(int(os.environ.get("INVERSE_AIR_TEST_THREADS", "2")))

# A suite started in the background by a shell without job control (`make test &`, some CI
# runners) inherits Ctrl-C ignored, and so would the commands it starts; the tests that press
# Ctrl-C need it as a terminal delivers it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# ---------------------------------------------------------------- comparing float results
# Float results are not bit-reproducible across CPUs, kernel sets (MKL, oneDNN, PyTorch's
# vectorized kernels), batch sizes and layouts: they differ in the last bits
# (docs/reproducibility.md), and a rounded number printed by decompose may then differ in its last
# digit. Tests compare them with these tolerances, never exactly; exact comparisons are kept for
# integers, for bytes made by integer code, and for one computation repeated in one process.

RESULT_TOLERANCES = (
    ("prob", 1e-3),       # presence and shape probabilities (printed to 1e-4)
    ("position", 1e-3),   # world units on the ground (printed to 1e-4); evaluate's position_error
    ("box", 1e-3),        # 2D windows: scale and centre in canvas half-widths (printed to 1e-4)
    ("window_px", 0.2),   # 2D windows in canvas pixels (printed to 0.1)
    ("_deg", 0.05),       # yaw, camera angles and yaw errors in degrees (printed to 0.01)
)
"""``(part of a key, tolerance)``: a number under a key holding that part (the innermost such
key of its path) may differ by the tolerance; any other number by :data:`OTHER_TOLERANCE`."""
OTHER_TOLERANCE = 3e-3
"""Colours and sizes (printed to 1e-3), light, ground, distances, accuracies, errors."""


def result_tolerance(path: tuple) -> float:
    for key in reversed(path):
        for part, tolerance in RESULT_TOLERANCES:
            if isinstance(key, str) and part in key:
                return tolerance
    return OTHER_TOLERANCE


def assert_results_agree(actual, expected, path: tuple = ()):
    """``actual`` and ``expected`` (decompose or evaluate results: dicts, lists, numbers,
    strings, nested) agree as results of different machines or batch sizes do: the same keys,
    lengths, strings, booleans and integers (counts, shapes, confusion matrices); floats within
    :func:`result_tolerance` of their key (a cube's ``yaw_deg`` modulo 90: its symmetry)."""
    where = "/".join(map(str, path)) or "the result"
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{where}: keys {actual} vs {expected}"
        for key in expected:
            assert_results_agree(actual[key], expected[key], path + (key,))
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), f"{where}: {actual} vs {expected}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_results_agree(a, e, path + (i,))
    elif isinstance(expected, float) or isinstance(actual, float):
        assert all(isinstance(v, (int, float)) for v in (actual, expected)), f"{where}: {actual!r} vs {expected!r}"
        difference = abs(actual - expected)
        if path and path[-1] == "yaw_deg":
            difference = abs((actual - expected + 45.0) % 90.0 - 45.0)
        tolerance = result_tolerance(path)
        assert difference <= tolerance, f"{where}: {actual} vs {expected} (tolerance {tolerance})"
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r} vs {expected!r}"


def assert_datasets_agree(actual_dir, expected_dir):
    """Two datasets of one config, one made on another machine, agree: the same shards, each
    of the same bytes, or else (3D only) holding the same arrays: the ground truth exactly (numpy's
    seeded generator draws the same numbers on every machine), the images within one grey level
    on at most 0.1% of their values (rendered in float32, then rounded: float results differ
    across machines in the last bits; docs/reproducibility.md). 2D shards are made by integer
    code: the same bytes on every machine."""
    from inverse_air.data import ShardDataset

    kind = ShardDataset(expected_dir).config.kind
    names = lambda d: sorted(p.name for p in Path(d).glob("shard-*.npz"))
    assert names(actual_dir) == names(expected_dir)
    for name in names(expected_dir):
        actual, expected = Path(actual_dir) / name, Path(expected_dir) / name
        if actual.read_bytes() == expected.read_bytes():
            continue
        assert kind == "3d", f"{name}: other bytes"
        with np.load(actual) as a, np.load(expected) as e:
            assert sorted(a.files) == sorted(e.files), name
            for key in e.files:
                assert a[key].dtype == e[key].dtype and a[key].shape == e[key].shape, (name, key)
                if key == "images":
                    difference = np.abs(a[key].astype(np.int16) - e[key])
                    assert difference.max() <= 1 and (difference > 0).mean() <= 1e-3, (name, difference.max())
                else:
                    np.testing.assert_array_equal(a[key], e[key], err_msg=f"{name}: {key}")


def one_line_error(result, *fragments):
    """Assert that a ``CliRunner`` result is one ``error:`` line holding ``fragments``, exit status 1."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="overwrite the golden images in scenes/ with the current renders")
    parser.addoption("--golden-actual", default=None, metavar="DIR",
                     help="write the actual renders of golden-image tests to DIR for inspection")


@pytest.fixture(scope="session")
def renderer():
    from inverse_air.objects3d.config import RenderConfig
    from inverse_air.objects3d.render3d import SceneRenderer

    return SceneRenderer(RenderConfig())


@pytest.fixture(scope="session")
def small_renderer():
    """A 32x32 renderer: cheap enough for gradient checks."""
    from inverse_air.objects3d.config import RenderConfig
    from inverse_air.objects3d.render3d import SceneRenderer

    return SceneRenderer(RenderConfig(image_size=32))


TINY_AIR = dict(encoder_channels=(8, 8), encoder_features=32, lstm_size=32, baseline_channels=(4,))
"""A small inference network for fast tests (the object model and priors are the real ones)."""


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 64-scene 3D dataset of 32x32 images with 0-3 objects (two shards)."""
    import dataclasses

    from inverse_air.data import render_dataset
    from inverse_air.kinds import KINDS

    preset = KINDS["3d"].dataset
    config = dataclasses.replace(preset, num=64, seed=3, shard_size=32, scenes=preset.scenes.with_image_size(32))
    return render_dataset(tmp_path_factory.mktemp("tiny3d"), config, progress=False)


@pytest.fixture
def tiny_run_config(tiny_data):
    """Build a tiny RunConfig on ``tiny_data``: ``tiny_run_config(**train_overrides)``."""
    from inverse_air.plan import run_config_for

    def make(air=None, **train):
        train = {"batch_size": 8, "elbo_batch_size": 4, "log_every": 2, "checkpoint_every": 3,
                 "image_every": 4, **train}
        return run_config_for(tiny_data, "3d", train, {**TINY_AIR, **(air or {})})

    return make


TINY_OBJECTS_2D = dict(z_what_size=8, window_size=10, glimpse_size=10, decoder_hidden=16)
"""A small 2D object model (Objects2DConfig fields) for fast tests; priors are the real ones."""


@pytest.fixture(scope="session")
def tiny_data_2d(tmp_path_factory):
    """A 48-scene multi-MNIST dataset (50x50, 0-2 digits, two shards)."""
    import dataclasses

    from inverse_air.data import render_dataset
    from inverse_air.kinds import KINDS

    config = dataclasses.replace(KINDS["2d"].dataset, num=48, seed=3, shard_size=24)
    return render_dataset(tmp_path_factory.mktemp("tiny2d"), config, progress=False)


@pytest.fixture
def tiny_run_config_2d(tiny_data_2d):
    """Build a tiny 2D RunConfig on ``tiny_data_2d``: ``tiny_run_config_2d(**train_overrides)``."""
    import dataclasses

    from inverse_air.plan import run_config_for

    def make(air=None, **train):
        train = {"batch_size": 8, "elbo_batch_size": 8, "log_every": 2, "checkpoint_every": 3,
                 "image_every": 4, **train}
        config = run_config_for(tiny_data_2d, "2d", train, {**TINY_AIR, **(air or {})})
        objects = dataclasses.replace(config.air.objects, **TINY_OBJECTS_2D)
        return dataclasses.replace(config, air=dataclasses.replace(config.air, objects=objects))

    return make
