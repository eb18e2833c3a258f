import numpy as np

from inverse_air.viz import image_grid


def test_image_grid_places_images_in_reading_order():
    images = np.stack([np.full((4, 5, 3), i, dtype=np.uint8) for i in range(5)])
    grid = image_grid(images, columns=3, pad=1, pad_value=200)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 7, 0] == 1 and grid[1, 13, 0] == 2
    assert grid[6, 1, 0] == 3 and grid[6, 7, 0] == 4
    assert grid[6, 13, 0] == 200  # the empty sixth cell stays padding
    assert grid[0, 0, 0] == 200


def test_decomposition_figure_frames_present_steps_in_their_colour():
    from inverse_air.viz import STEP_COLORS, decomposition_figure

    B, N, H = 2, 3, 8
    images = np.zeros((B, H, H, 3), np.uint8)
    steps = np.zeros((B, N, H, H, 3), np.uint8)
    present = np.array([[True, True, False], [False, False, False]])
    fig = decomposition_figure(images, images, steps, present, scale=1)
    pad = 2
    assert fig.shape == (B * (H + pad) + pad, (N + 2) * (H + pad) + pad, 3)
    tile = lambda r, c: fig[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (H + pad): pad + c * (H + pad) + H]
    assert (tile(0, 2)[0, 0] == STEP_COLORS[0]).all() and (tile(0, 3)[0, 0] == STEP_COLORS[1]).all()
    assert (tile(0, 4)[0, 0] == 128).all() and (tile(1, 2)[0, 0] == 128).all()
    assert (tile(0, 2)[H // 2, H // 2] == 0).all()  # inside the frame: the image


def test_to_uint8_channels_last():
    import torch

    from inverse_air.viz import to_uint8

    out = to_uint8(torch.tensor([[[[0.0, 1.2]], [[0.5, -1.0]], [[1.0, 0.2]]]]))
    assert out.shape == (1, 1, 2, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 128, 255] and out[0, 0, 1].tolist() == [255, 0, 51]
