"""Files in and out, safely.

**Writing.** Nothing is ever half-written: every writer here writes to a temporary name beside
the target and renames it over the target only once the file is complete (a rename within a
directory is atomic), so a killed process, a full disk or an error leaves the old file (or
none), never a broken one; missing parent folders are created. Only a regular file is ever
replaced: a device (``/dev/null``), a FIFO or a socket at the target is refused, never turned
into a file. Before a command does any work, :func:`check_output` refuses an output that cannot
be written (a directory, a device, a FIFO, a file or an unwritable folder on its way) or that is
one of the command's inputs, by any name (hard and symbolic links included; it would be
overwritten).

**Reading JSON.** :func:`read_json` reads a bounded amount of UTF-8 text and turns every way
the file can be wrong (missing, not a regular file, too large, not text, not JSON, nested too
deeply) into one :class:`~inverse_air.errors.UserError` line naming it.
"""

from __future__ import annotations

import io
import json
import os
import stat
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

    Missing parent folders are created (every output path's rule: :func:`check_output`).

    Raises:
        UserError: a parent is not a folder, ``path`` exists and is not a regular file
            (:func:`check_regular`), or writing failed (permissions, a full disk).
    """
    path = Path(path)
    check_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot create its folder {path.parent}: {e.strerror or e}") from None
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


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes atomically (e.g. a ``torch.save`` made in memory, so that a full disk
    raises the ``OSError`` this module reports, not the serializer's own error)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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


IMAGE_FORMATS = {".png": {}, ".jpg": {"quality": 95}, ".jpeg": {"quality": 95}, ".bmp": {}}
"""The image files written, by suffix (any case), with the writer's settings: the formats
that are read (:data:`inverse_air.images.IMAGE_SUFFIXES`)."""


def image_suffix(path: str | os.PathLike, option: str = "") -> str:
    """The suffix of an image file to write (lower case), which names its format.

    Raises:
        UserError: a suffix that is not in :data:`IMAGE_FORMATS` (naming ``option`` and ``path``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise UserError(f"{option + ' ' if option else ''}{path}: the file name's suffix gives the image format; "
                        f"use one of {', '.join(IMAGE_FORMATS)}")
    return suffix


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``(H, W, C)`` or ``(H, W)`` uint8 image atomically, in the format its suffix
    names (PNG, JPEG or BMP: :data:`IMAGE_FORMATS`).

    Raises:
        UserError: another suffix, or the file cannot be written.
    """
    import imageio.v3 as iio

    suffix = image_suffix(path)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=suffix, **IMAGE_FORMATS[suffix])


# ---------------------------------------------------------------------------- checks
def check_regular(path: str | os.PathLike, option: str = "") -> None:
    """Refuse (``UserError``) an existing ``path`` that is not a regular file (symbolic links
    followed): replacing a device such as ``/dev/null``, a FIFO or a socket with a file would
    break whatever uses it. A missing path is fine."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):
        raise UserError(f"{option + ' ' if option else ''}{path}: is a directory; give a file name")
    if not stat.S_ISREG(mode):
        what = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise UserError(f"{option + ' ' if option else ''}{path}: is {what}, not a regular file; "
                        f"give the name of a file to write")


def file_ids(paths) -> set[tuple[int, int]]:
    """``(st_dev, st_ino)`` of each existing file in ``paths`` and of the files directly in
    each directory among them: what names one file, whatever the link it is reached by."""
    ids = set()
    for path in map(Path, paths):
        try:
            info = os.stat(path)
        except OSError:
            continue
        ids.add((info.st_dev, info.st_ino))
        if stat.S_ISDIR(info.st_mode):
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        try:
                            inner = entry.stat()
                        except OSError:
                            continue
                        ids.add((inner.st_dev, inner.st_ino))
            except OSError:
                continue
    return ids


def check_image_output(path: str | os.PathLike, option: str, inputs=()) -> Path:
    """:func:`check_output` for an image file, whose suffix must name a format that
    :func:`write_image` writes."""
    path = check_output(path, option, inputs)
    image_suffix(path, option)
    return path


def check_output(path: str | os.PathLike, option: str, inputs=(), directory: bool = False) -> Path:
    """Refuse, before any work, an output that cannot be written or that is an input.

    Missing folders on the way to an output are created when it is written (the rule for every
    output: a file's parent folders, a folder and its parents).

    Args:
        path: the output file (or, with ``directory``, the folder a command creates or fills).
        option: how the user named it (``-o``, ``--overlay``, ``--out``), for the message.
        inputs: the command's input files and folders. A file output may not be one of them
            nor a file directly in one of the folders (compared by device and inode, so hard
            and symbolic links count); a folder output may not be one of them, nor inside one.
        directory: ``path`` is a folder (created with its parents if missing).

    Raises:
        UserError: one line naming ``option`` and ``path``.
    """
    path = Path(path)
    if directory:
        if path.exists() and not path.is_dir():
            raise UserError(f"{option} {path}: exists and is not a directory")
    else:
        check_regular(path, option)
        if path.exists() and not os.access(path, os.W_OK):
            raise UserError(f"{option} {path}: file is not writable")
    parent = path.absolute() if directory else path.absolute().parent  # the folder written in ...
    while not parent.exists() and parent != parent.parent:  # ... or, where it is missing, the one created in
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write in {parent}")
    output_id = None
    if not directory and path.exists():
        info = os.stat(path)
        output_id = (info.st_dev, info.st_ino)
    for item in inputs:
        item = Path(item)
        if not item.exists():
            continue
        clash = output_id is not None and output_id in file_ids([item])
        if directory and not clash:
            out, inp = path.resolve(), item.resolve()
            clash = out == inp or inp in out.parents
        if clash:
            raise UserError(f"{option} {path}: is also an input ({item}); writing there would "
                            f"overwrite it, choose another path")
    return path


MAX_JSON_BYTES = 64 * 2**20
"""The largest JSON file read (scene files, manifests and configs are a few KB)."""


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """Parse a JSON file, refusing with one line whatever is wrong with it.

    Args:
        what: what the file should be, for the message (``scene file``, ``manifest``).

    Raises:
        UserError: the file is missing, not a regular file, larger than
            :data:`MAX_JSON_BYTES`, not UTF-8 text, not JSON, or nested too deeply.
    """
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: not a regular file (a {what} is expected)")
        if info.st_size > MAX_JSON_BYTES:
            raise UserError(f"{path}: {info.st_size:,} bytes is too large for a {what} "
                            f"(at most {MAX_JSON_BYTES:,})")
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_JSON_BYTES:
        raise UserError(f"{path}: too large for a {what} (at most {MAX_JSON_BYTES:,} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        kind = " (it looks like a PNG image)" if data.startswith(b"\x89PNG") else ""
        raise UserError(f"{path}: not UTF-8 text{kind}, so not a {what}: byte {e.start} is "
                        f"0x{data[e.start]:02x}") from None
    return parse_json(text, str(path), what)


def parse_json(text: str, source: str, what: str = "JSON") -> object:
    """``json.loads(text)``, with every failure one :class:`UserError` line naming ``source``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise UserError(f"{source}: JSON nested too deeply to be a {what}") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise UserError(f"{source}: unreadable JSON: {e}") from None
