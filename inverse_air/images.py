"""Images in and out: reading image files as a model's input, and converting between uint8
arrays ``(..., H, W, C)`` and float tensors ``(..., C, H, W)`` in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""Files a directory argument contributes (sorted by name); other files are skipped."""


def images_to_tensor(images: np.ndarray):
    """``(B, H, W, C)`` uint8 -> ``(B, C, H, W)`` float32 tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1], channels first (``(..., C, H, W)`` tensor or array) ->
    ``(..., H, W, C)`` uint8."""
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    array = np.moveaxis(array, -3, -1)
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def read_image(path: str | os.PathLike, size: int, channels: int) -> tuple[np.ndarray, list[str]]:
    """Read an image as the model's input ``(size, size, channels)`` uint8.

    Grey, palette and RGBA images are converted (transparent pixels composited on black) and
    other sizes resized (bilinear), each with a notice.

    Raises:
        UserError: the file is missing, unreadable, not an image or truncated.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    notices = []
    if not path.exists():
        raise UserError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            image.load()
            mode, (width, height) = image.mode, image.size
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                notices.append(f"{mode} image: transparent pixels composited on black")
                rgba = image.convert("RGBA")
                image = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                image.alpha_composite(rgba)
            target = "RGB" if channels == 3 else "L"
            if image.mode != target:
                if mode not in ("RGBA", "LA", "PA", "P", target):
                    notices.append(f"{mode} image converted to {target}")
                image = image.convert(target)
            if (width, height) != (size, size):
                notices.append(f"{width}x{height} image resized to the model's {size}x{size}")
                image = image.resize((size, size), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: unreadable image (truncated or corrupted?): {e}") from None
    return array.reshape(size, size, channels), notices
