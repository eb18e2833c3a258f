"""Writing files so that nothing is ever half-written: every writer here writes to a temporary
name beside the target and renames it over the target only once the file is complete (a
rename within a directory is atomic), so a killed process, a full disk or an error leaves the
old file (or none), never a broken one.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import UserError

TMP_SUFFIX = ".tmp"
"""What temporary files end with (``NAME.tmp`` beside ``NAME``); a killed run may leave one."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on leaving the block without an
    error it replaces ``path``, otherwise it is removed.

    Raises:
        UserError: the directory does not exist, or writing failed (permissions, a full disk).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: directory {path.parent} does not exist")
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data) -> None:
    """Write JSON (indented, one trailing newline) atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` that ``np.load`` reads, byte for byte the same for the same arrays
    (``np.savez`` stamps the current time into the zip), atomically."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buffer.getvalue(), compresslevel=1)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``(H, W, C)`` or ``(H, W)`` uint8 image as PNG atomically."""
    import imageio.v3 as iio

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=".png")
