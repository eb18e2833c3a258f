"""Images in and out: reading images as a model's input, and converting between uint8 arrays
``(..., H, W, C)`` and float tensors ``(..., C, H, W)`` in [0, 1].

Every image becomes input through one function, :func:`decode` (files through
:func:`read_image`, PIL images and arrays through :func:`as_input`): 16-bit and float pixel
values are scaled to 8 bits or refused, never clipped to white or black; colour modes,
transparency, EXIF orientation and sizes are converted with a notice each; files of more than
:data:`MAX_IMAGE_PIXELS` are refused before they are decoded."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import PIL.Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""Files a directory contributes (:func:`list_images`); other files are skipped."""


def list_images(directory: str | os.PathLike) -> list[Path]:
    """The image files of a directory (:data:`IMAGE_SUFFIXES`, any case), sorted by name;
    hidden files (``.name``) and subdirectories are skipped: what every command reads of a
    directory of images.

    Raises:
        UserError: the directory cannot be listed.
    """
    directory = Path(directory)
    try:
        entries = list(directory.iterdir())
    except OSError as e:
        raise UserError(f"{directory}: cannot list the directory: {e.strerror or e}") from None
    return sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and p.is_file())


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


MAX_IMAGE_PIXELS = 8192 * 8192
"""The largest image read (width x height); larger ones are refused before they are decoded,
so a decompression bomb (a small file that decodes to gigabytes) costs nothing."""


def read_image(path: str | os.PathLike, size: int, channels: int) -> tuple[np.ndarray, list[str]]:
    """Read an image file as the model's input ``(size, size, channels)`` uint8
    (:func:`open_image`, then :func:`decode`).

    Raises:
        UserError: the file cannot be opened (:func:`open_image`), is truncated, or holds
            values that do not map to [0, 1] (:func:`decode`).
    """
    with open_image(path) as image:
        image.load()
        return decode(image, size, channels, str(path))


@contextmanager
def open_image(path: str | os.PathLike) -> Iterator["PIL.Image.Image"]:
    """An image file opened (its header read, its pixels not yet decoded): the one way image
    files are opened. Whatever is wrong with the file, now or while the block decodes it, is
    one line naming it.

    Raises:
        UserError: the file is missing, not a regular file, unreadable, not an image, larger
            than :data:`MAX_IMAGE_PIXELS` (refused from its header: a decompression bomb costs
            nothing), or truncated or corrupted.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    too_large = f"is more than this reads ({MAX_IMAGE_PIXELS:,} pixels; a decompression bomb?)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UserError(f"{path}: {width}x{height} pixels {too_large}")
                yield image
    except Image.DecompressionBombError:  # Pillow's own limit, above ours
        raise UserError(f"{path}: its size {too_large}") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except OSError as e:
        if e.errno is not None:  # the file system's error, not the image's
            raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
        raise UserError(f"{path}: unreadable image (truncated or corrupted?): {e}") from None
    except (SyntaxError, ValueError, EOFError) as e:
        raise UserError(f"{path}: unreadable image (truncated or corrupted?): {e}") from None


def decode(image, size: int, channels: int, source: str = "image") -> tuple[np.ndarray, list[str]]:
    """A PIL image as the model's input ``(size, size, channels)`` uint8, with a notice for
    each conversion: the one way every image (a file, a PIL image, an array) becomes input.

    - An image whose EXIF orientation tag says it is stored turned or mirrored (as phone
      cameras store photos) is turned upright first (:func:`upright`).
    - 16-bit grey (``I;16``, and ``I`` with values in 0..65535) is scaled to 8 bits
      (65535 -> 255); float images (``F``) must hold finite values in [0, 1] (scaled by 255).
      Anything else of more than 8 bits is refused rather than clipped to white or black.
    - Grey, palette and other colour modes are converted (transparent pixels composited on
      black).
    - A non-square image is padded to a square, centred, with the median colour of its outer
      pixels (so a plain background stays plain and nothing of the image is lost); then an
      image of another size is resized (bilinear). Where that square would have more than
      :data:`MAX_IMAGE_PIXELS` (a 30000x100 strip), the image is scaled to the model's size
      first (bilinear, keeping its aspect), then padded: memory stays that of the image.

    Raises:
        UserError: values that do not map to [0, 1] (naming ``source``).
    """
    from PIL import Image

    notices = []
    image = upright(image, notices)
    mode, (width, height) = image.mode, image.size
    if mode.startswith("I") or mode == "F":
        image = Image.fromarray(_high_depth_to_uint8(np.asarray(image), mode, source, notices))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        notices.append(f"{mode} image: transparent pixels composited on black")
        rgba = image.convert("RGBA")
        image = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image.alpha_composite(rgba)
    target = "RGB" if channels == 3 else "L"
    if image.mode != target:
        if mode not in ("RGBA", "LA", "PA", "RGBa", "La", "P", target):
            notices.append(f"{mode} image converted to {target}")
        image = image.convert(target)
    if width != height:
        side = max(width, height)
        if side * side > MAX_IMAGE_PIXELS:  # a square larger than any image read: scale down first
            scaled = max(1, round(width * size / side)), max(1, round(height * size / side))
            notices.append(f"{width}x{height} image scaled to {scaled[0]}x{scaled[1]} (its {side}x{side} square "
                           f"would be too large), then padded to {size}x{size} with its border's median colour")
            image = image.resize(scaled, Image.BILINEAR)
        else:
            notices.append(f"{width}x{height} image padded to {side}x{side} with its border's median colour")
        image = pad_to_square(image)
    if image.size != (size, size):
        notices.append(f"{image.size[0]}x{image.size[1]} image resized to the model's {size}x{size}")
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, channels), notices


EXIF_ORIENTATION = 0x0112
"""The EXIF tag saying how a stored image is to be turned or mirrored for display (1: as stored)."""


def upright(image, notices: list[str]):
    """A PIL image turned as its EXIF orientation tag says (``PIL.ImageOps.exif_transpose``),
    with a notice; the image itself when it has no such tag or the tag says "as stored"."""
    from PIL import ImageOps

    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # EXIF data Pillow cannot parse: the pixels are still the image
        return image
    if orientation not in range(2, 9):  # 1: as stored; other values mean nothing
        return image
    turned = ImageOps.exif_transpose(image)
    notices.append(f"turned upright as its EXIF orientation ({orientation}) says")
    return turned


def pad_to_square(image):
    """A PIL image (``L`` or ``RGB``) padded to a square of its longer side, centred, with the
    median colour of its outer pixels."""
    from PIL import Image

    array = np.asarray(image)
    pixels = array.reshape(array.shape[0], array.shape[1], -1)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # (2W + 2H, C)
    fill = tuple(int(v) for v in np.median(border, axis=0).round())
    width, height = image.size
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill[0] if image.mode == "L" else fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def _high_depth_to_uint8(array: np.ndarray, mode: str, source: str, notices: list[str]) -> np.ndarray:
    """16-bit and float pixel values -> uint8 (see :func:`decode`)."""
    array = np.asarray(array)
    if mode == "F" or array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise UserError(f"{source}: float image holds NaN or infinite values")
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if low < 0.0 or high > 1.0:
            raise UserError(f"{source}: float image with values in [{low:g}, {high:g}]; expected "
                            f"[0, 1] (save it as an 8-bit image instead)")
        notices.append(f"{mode} (float) image scaled from [0, 1] to 8 bits")
        return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    low, high = int(array.min(initial=0)), int(array.max(initial=0))
    if low < 0 or high > 65535:
        raise UserError(f"{source}: {mode} image with values in [{low}, {high}]; expected 16-bit "
                        f"values in [0, 65535]")
    notices.append(f"{mode} (16-bit) image scaled to 8 bits")
    return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)


def as_input(image, size: int, channels: int, source: str = "image") -> tuple[np.ndarray, list[str]]:
    """One image in any form the Python API takes as the model's input ``(size, size,
    channels)`` uint8 (:func:`decode`): a PIL image, or an ``(H, W)`` / ``(H, W, C)`` array
    (C = 1, 3 or 4) of uint8, uint16 (16 bits) or floats in [0, 1].

    Raises:
        UserError: another shape or dtype, or values out of range.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return decode(image, size, channels, source)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise UserError(f"{source}: expected an (H, W) or (H, W, C) image with C = 1, 3 or 4, got shape {array.shape}")
    if array.dtype == np.uint8 and array.shape[:2] == (size, size) and (array.ndim == 3) == (channels == 3) \
            and (array.ndim == 2 or array.shape[2] == channels):
        return array.reshape(size, size, channels), []  # already the model's input
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    notices: list[str] = []
    if array.dtype.kind == "f" or array.dtype == np.uint16 or (array.dtype.kind in "iu" and array.dtype != np.uint8):
        if array.dtype.kind in "iu" and array.dtype != np.uint16:
            high = int(array.max(initial=0)) if array.size else 0
            if array.min(initial=0) < 0 or high > 255:
                raise UserError(f"{source}: {array.dtype} image with values outside [0, 255]")
            array = array.astype(np.uint8)
        else:
            planes = array if array.ndim == 2 else np.moveaxis(array, -1, 0)
            label = "F" if array.dtype.kind == "f" else "I;16"
            array = _high_depth_to_uint8(planes, label, source, notices)
            array = array if array.ndim == 2 else np.moveaxis(array, 0, -1)
    elif array.dtype != np.uint8:
        raise UserError(f"{source}: unsupported image dtype {array.dtype}")
    decoded, more = decode(Image.fromarray(np.ascontiguousarray(array)), size, channels, source)
    return decoded, notices + more
