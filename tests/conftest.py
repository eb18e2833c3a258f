import pytest
import torch

torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="overwrite the golden images in scenes/ with the current renders")
    parser.addoption("--golden-actual", default=None, metavar="DIR",
                     help="write the actual renders of golden-image tests to DIR for inspection")


@pytest.fixture(scope="session")
def renderer():
    from inverse_air.config import RenderConfig
    from inverse_air.render3d import SceneRenderer

    return SceneRenderer(RenderConfig())


@pytest.fixture(scope="session")
def small_renderer():
    """A 32x32 renderer: cheap enough for gradient checks."""
    from inverse_air.config import RenderConfig
    from inverse_air.render3d import SceneRenderer

    return SceneRenderer(RenderConfig(image_size=32))
