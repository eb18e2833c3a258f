"""Pictures: grids of images for previews and training snapshots (numpy only)."""

from __future__ import annotations

import numpy as np


def image_grid(images: np.ndarray, columns: int = 8, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile ``(N, H, W, C)`` uint8 images into one ``(rows*(H+pad)+pad, columns*(W+pad)+pad, C)``
    image, left to right then top to bottom, with ``pad`` pixels of ``pad_value`` between."""
    N, H, W, C = images.shape
    columns = max(1, min(columns, N))
    rows = max(1, -(-N // columns))
    grid = np.full((rows * (H + pad) + pad, columns * (W + pad) + pad, C), pad_value, dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = pad + r * (H + pad), pad + c * (W + pad)
        grid[top:top + H, left:left + W] = image
    return grid
