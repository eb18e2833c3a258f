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

    from inverse_air.images import to_uint8

    out = to_uint8(torch.tensor([[[[0.0, 1.2]], [[0.5, -1.0]], [[1.0, 0.2]]]]))
    assert out.shape == (1, 1, 2, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 128, 255] and out[0, 0, 1].tolist() == [255, 0, 51]


def test_windows_are_outlined_in_step_colours():
    from inverse_air.viz import STEP_COLORS, draw_windows, windows_figure

    image = np.zeros((20, 20, 3), np.uint8)
    # A window of 10 pixels whose top-left pixel is (row 2, column 4): scale 0.5, centre (9, 7).
    boxes = np.array([[0.5, 2 * 9 / 20 - 1, 2 * 7 / 20 - 1], [0.3, 0.0, 0.0]], np.float32)
    out = draw_windows(image, boxes, np.array([True, False]))
    red = (out == STEP_COLORS[0]).all(-1)
    assert red[2, 4:14].all() and red[11, 4:14].all() and red[2:12, 4].all() and red[2:12, 13].all()
    assert red.sum() == 36 and not red[3:11, 5:13].any()
    assert not (out == STEP_COLORS[1]).all(-1).any()  # absent: not drawn
    figure = windows_figure(np.zeros((3, 20, 20, 1), np.uint8), np.zeros((3, 20, 20, 1), np.uint8),
                            np.stack([boxes] * 3), np.ones((3, 2), bool), columns=2, scale=1)
    assert figure.shape == (2 + 4 * 22, 2 + 2 * 22, 3)
