"""Reading and writing PNG files safely."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from .errors import UserError


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``(H, W, C)`` or ``(H, W)`` uint8 image atomically (temporary name, rename)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserError(f"{path}: directory {path.parent} does not exist")
    tmp = path.with_name(path.name + ".tmp")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    iio.imwrite(tmp, image, extension=".png")
    os.replace(tmp, path)
