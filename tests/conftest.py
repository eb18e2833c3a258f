import os

import pytest
import torch

# Two threads, as on the CI machines; INVERSE_AIR_TEST_THREADS=1 on a machine whose cores are
# busy with something else (oversubscribed threads make CPU training many times slower).
torch.set_num_threads(int(os.environ.get("INVERSE_AIR_TEST_THREADS", "2")))


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
    from inverse_air.train import run_config_for

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

    from inverse_air.train import run_config_for

    def make(air=None, **train):
        train = {"batch_size": 8, "elbo_batch_size": 8, "log_every": 2, "checkpoint_every": 3,
                 "image_every": 4, **train}
        config = run_config_for(tiny_data_2d, "2d", train, {**TINY_AIR, **(air or {})})
        objects = dataclasses.replace(config.air.objects, **TINY_OBJECTS_2D)
        return dataclasses.replace(config, air=dataclasses.replace(config.air, objects=objects))

    return make
