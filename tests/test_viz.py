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
