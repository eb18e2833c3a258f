"""Folders of images as datasets: a directory of image files that nobody labelled.

A directory without ``manifest.json`` that holds image files (``.png``, ``.jpg``, ``.jpeg``,
``.bmp``; sorted by name; hidden files and subdirectories are skipped) is a dataset for
``train``, ``evaluate`` and ``decompose``. Its images are read with the one decoding path of
:mod:`inverse_air.images` (16-bit and float images scaled, transparency composited on black)
and brought to one square size and one channel count, kept in memory as ``images (n, S, S,
C)`` uint8 (refused when they do not fit, :mod:`inverse_air.limits`):

- **size** ``S``: given (a checkpoint's, ``train --image-size``), or the median of the
  images' longer sides, clamped to [:data:`MIN_SIDE`, :data:`MAX_SIDE`]. A non-square image
  is padded to a square (centred, with the median colour of its outer pixels), then resized
  (bilinear; a long strip is scaled down first, :func:`inverse_air.images.decode`);
- **channels** ``C``: given, or 1 (grey) when every image is grey (a grey mode, or RGB with
  equal channels everywhere), else 3 (RGB).

Conversions are reported once per kind of conversion (with a count and an example).

**Labels** (optional): ``labels.jsonl`` beside the images, one JSON object per line for some
or all of the images, ``{"image": "name.png", "count": 2, FIELD: [...]}`` where ``FIELD`` is
the objects in the model kind's terms (``Kind.labels``; 2D: ``"boxes"``, each ``[scale, x,
y]`` in the box convention of :mod:`inverse_air.objects2d.render2d`; 3D: ``"objects"``, scene-file
objects). ``count`` alone is allowed (count accuracy only); objects must then be given on
every line or on none. Every problem is one line naming the file and the line. Labels only
ever *report* (count accuracy while training, ``evaluate``'s metrics); no loss reads them
unless ``train --supervised`` is asked for.

In the arrays, an image without a label has ``count`` -1 (and empty object slots).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import UserError, notice, printable
from .files import parse_json
from .images import IMAGE_SUFFIXES, list_images, open_image
from .kinds import KINDS
from .limits import check_memory

LABELS = "labels.jsonl"
"""The optional labels file of a folder of images."""
MIN_SIDE, MAX_SIDE = 16, 128
"""The range a folder's derived image size is clamped to (``train --image-size`` may leave it)."""
MAX_LABELS_BYTES = 1 << 30
"""The largest ``labels.jsonl`` read."""
MAX_LABEL_COUNT = 100
"""The largest ``count`` a label may give: far beyond the 8 objects a model finds at most (a
count is a row of ``evaluate``'s confusion matrix, so a huge one would be a huge matrix)."""
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
"""PIL modes of images that hold one channel of values (transparency aside)."""
MONITOR_FRACTION = 10
"""``train`` on a folder holds out one image in this many (at most the monitor size) to monitor on."""
_MONITOR_SEED = 20160601  # fixed: every run on a folder monitors on the same images


def is_image_folder(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` is a directory holding at least one image file."""
    directory = Path(directory)
    return directory.is_dir() and bool(list_images(directory))


class ImageFolder:
    """A folder of images opened as a dataset (see the module docstring), for a model of kind
    ``kind`` (whose terms its labels are read in).

    Args:
        directory: the folder.
        kind: the model's kind (``KINDS`` name).
        image_size: the side S to bring every image to (None: derived).
        channels: 1 or 3 (None: derived).
        labelled_only: read only the images ``labels.jsonl`` names (``evaluate``).
        progress: a progress bar while the images are decoded.
        notice: called with each line about a conversion or a derived setting.

    Raises:
        UserError: no images, an unreadable image (naming it), a bad ``labels.jsonl`` line
            (naming the file and line), or images that do not fit in memory.
    """

    config = None
    """A folder has no dataset configuration (``ShardDataset.config``): nothing made it."""

    def __init__(self, directory: str | os.PathLike, kind: str, image_size: int | None = None,
                 channels: int | None = None, labelled_only: bool = False, progress: bool = False,
                 notice: Callable[[str], None] = notice):
        self.directory = Path(directory)
        self.kind = kind
        paths = list_images(self.directory)
        if not paths:
            raise UserError(f"{self.directory}: holds no image files ({', '.join(IMAGE_SUFFIXES)}) and no "
                            f"dataset manifest")
        labels_path = self.directory / LABELS
        labels = read_labels(labels_path, [p.name for p in paths], kind) if labels_path.exists() else None
        if labelled_only:
            if labels is None:
                raise UserError(f"{self.directory}: has no {LABELS}, so there is nothing to score")
            keep = labels["count"] >= 0
            paths = [p for p, k in zip(paths, keep) if k]
            labels = {k: v[keep] for k, v in labels.items()}
        self.paths = paths
        self.labelled = labels is not None
        if image_size is None or channels is None:
            sides, modes = _headers(paths)
        if image_size is None:
            image_size = int(np.clip(round(float(np.median(sides))), MIN_SIDE, MAX_SIDE))
            notice(f"{self.directory}: images brought to {image_size}x{image_size} (the median of their longer "
                   f"sides, {float(np.median(sides)):g}, within [{MIN_SIDE}, {MAX_SIDE}]; --image-size sets it)")
        self.image_size = image_size
        derive = channels is None
        all_grey = derive and all(mode in GREY_MODES for mode in modes)
        self.channels = 1 if all_grey else (channels or 3)
        self.images = self._read(progress, notice)
        if derive and self.channels == 3 and _equal_channels(self.images):
            self.images = np.ascontiguousarray(self.images[..., :1])
            self.channels = 1
        if derive:
            notice(f"{self.directory}: read as {'grey (1 channel)' if self.channels == 1 else 'RGB (3 channels)'}: "
                   f"{'every image is grey' if self.channels == 1 else 'some images are in colour'}")
        n = len(paths)
        self.labels = labels if labels is not None else {"count": np.full(n, -1, dtype=np.int64)}

    def _read(self, progress: bool, notice: Callable[[str], None]) -> np.ndarray:
        from .images import read_image
        from .progress import progress_bar

        n, S, C = len(self.paths), self.image_size, self.channels
        check_memory(2 * n * S * S * C, f"{self.directory}: its {n:,} images at {S}x{S}x{C}",
                     "use a smaller --image-size or fewer images")
        images = np.empty((n, S, S, C), dtype=np.uint8)
        seen: Counter = Counter()
        examples: dict[str, str] = {}
        with progress_bar(total=n, unit="image", desc=printable(f"reading {self.directory.name}"),
                          disable=not progress or n < 1000) as bar:
            for i, path in enumerate(self.paths):
                images[i], notes = read_image(path, S, C)
                for note in notes:
                    shape = re.sub(r"\d+", "N", note)
                    seen[shape] += 1
                    examples.setdefault(shape, f"{path.name}: {note}")
                bar.update(1)
        for shape, times in seen.items():
            more = f" ({times:,} images like this one)" if times > 1 else ""
            notice(f"{self.directory}: {examples[shape]}{more}")
        return images

    # ---------------------------------------------------------------- the Dataset protocol
    def __len__(self) -> int:
        return len(self.paths)

    @property
    def counts(self) -> tuple[int, ...] | None:
        """The object counts the labels hold (None without labels)."""
        if not self.labelled:
            return None
        known = self.labels["count"][self.labels["count"] >= 0]
        return tuple(int(c) for c in np.unique(known))

    def check_kind(self, kind: str, model: str) -> None:
        """Raise :class:`UserError` unless the folder was opened for a model of kind ``kind``
        (named ``model``): its labels were read in that kind's terms."""
        if kind != self.kind:
            raise UserError(f"{self.directory}: opened for a {self.kind} model, but {model} is a {kind} model")

    def check_fits(self, air, model: str) -> None:
        """Raise :class:`UserError` unless a model of configuration ``air`` (named ``model``)
        reads these images: its kind read the labels, its size and channels the images."""
        self.check_kind(air.kind, model)
        if (air.image_size, air.channels) != (self.image_size, self.channels):
            raise UserError(f"{self.directory}: images read as {self.image_size}x{self.image_size}x{self.channels}, "
                            f"the model expects {air.image_size}x{air.image_size}x{air.channels}")

    def arrays(self, images: bool = True) -> dict[str, np.ndarray]:
        """``images (n, S, S, C)`` uint8 and the labels (``count`` -1 where an image has none)."""
        return {**({"images": self.images} if images else {}), **self.labels}

    def shards(self) -> Iterator[dict[str, np.ndarray]]:
        """The whole folder as one shard (it is in memory already)."""
        yield self.arrays()

    def monitor_indices(self, size: int) -> np.ndarray:
        """The images ``train`` monitors on: a fixed choice of one image in
        :data:`MONITOR_FRACTION` (at most ``size``; labelled ones first), held out from
        training (all images, when there are fewer than :data:`MONITOR_FRACTION`)."""
        n = len(self)
        take = min(size, n // MONITOR_FRACTION)
        if take == 0:
            return np.arange(min(size, n))
        order = np.random.default_rng(_MONITOR_SEED).permutation(n)
        labelled = self.labels["count"][order] >= 0
        order = np.concatenate([order[labelled], order[~labelled]])
        return np.sort(order[:take])

    def training_indices(self, size: int) -> np.ndarray | None:
        """The images training draws from: all but :meth:`monitor_indices`."""
        monitor = self.monitor_indices(size)
        if len(monitor) == len(self):
            return None
        return np.setdiff1d(np.arange(len(self)), monitor)


def _headers(paths: list[Path]) -> tuple[list[int], list[str]]:
    """Each image's longer side and PIL mode, from its header (nothing decoded)."""
    sides, modes = [], []
    for path in paths:
        with open_image(path) as image:
            sides.append(max(image.size))
            modes.append(image.mode)
    return sides, modes


def _equal_channels(images: np.ndarray, chunk: int = 4096) -> bool:
    """Whether every RGB image of ``(n, S, S, 3)`` has R == G == B everywhere (a grey image saved as RGB)."""
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        if not ((part[..., 0] == part[..., 1]).all() and (part[..., 1] == part[..., 2]).all()):
            return False
    return True


# ---------------------------------------------------------------------------- labels.jsonl
def read_labels(path: Path, names: list[str], kind: str) -> dict[str, np.ndarray]:
    """A folder's ``labels.jsonl`` as arrays over its images ``names`` (in order): ``count
    (n,)`` (-1 where an image has no label) and, when the lines give objects, the kind's
    ground-truth arrays (``Kind.labels``: 2D ``box (n, K, 3)``), empty slots where unlabelled.

    Raises:
        UserError: naming the file and line: not JSON, not an object, an unknown or missing
            field, an image that is not in the folder or labelled twice, a count that is not an
            integer from 0 to :data:`MAX_LABEL_COUNT`, objects that do not match the count or the kind, objects on
            some lines only.
    """
    reader = KINDS[kind].labels
    allowed = {"image", "count"} | ({reader.field} if reader is not None else set())
    index = {name: i for i, name in enumerate(names)}
    try:
        size = path.stat().st_size
        if size > MAX_LABELS_BYTES:
            raise UserError(f"{path}: {size:,} bytes is more than a labels file may be ({MAX_LABELS_BYTES:,})")
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    lines: list[tuple[str, int, int, list | None]] = []  # (where, image index, count, objects)
    seen: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        record = parse_json(line, where, "labels line")
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object like {{\"image\": \"a.png\", \"count\": 2}}")
        unknown = sorted(set(record) - allowed)
        if unknown:
            hint = f"a {kind} model's labels have {', '.join(sorted(allowed))}"
            raise UserError(f"{where}: unknown field {unknown[0]!r} ({hint})")
        for name in ("image", "count"):
            if name not in record:
                raise UserError(f"{where}: field {name!r} is missing")
        image, count = record["image"], record["count"]
        if not isinstance(image, str) or image not in index:
            raise UserError(f"{where}: image {image!r} is not an image file of {path.parent}")
        if index[image] in seen:
            raise UserError(f"{where}: image {image!r} is labelled twice (also on line {seen[index[image]]})")
        seen[index[image]] = number
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UserError(f"{where}: field 'count' must be a non-negative integer, got {_show(count)}")
        if count > MAX_LABEL_COUNT:
            raise UserError(f"{where}: field 'count' must be at most {MAX_LABEL_COUNT} (a model finds at most 8 "
                            f"objects), got {_show(count)}")
        objects = record.get(reader.field) if reader is not None else None
        if objects is not None:
            if not isinstance(objects, list) or len(objects) != count:
                raise UserError(f"{where}: field {reader.field!r} must list {count} objects (the count), "
                                f"got {_show(objects)}")
        lines.append((where, index[image], count, objects))
    if not lines:
        raise UserError(f"{path}: labels no image (an empty labels file)")
    given = [objects is not None for *_, objects in lines]
    if any(given) and not all(given):
        first_without = lines[given.index(False)][0]
        raise UserError(f"{first_without}: has no {reader.field!r} where other lines do; give them on every "
                        f"line or on none")
    n = len(names)
    count = np.full(n, -1, dtype=np.int64)
    for _, i, c, _ in lines:
        count[i] = c
    out = {"count": count}
    if reader is not None and all(given):
        K = max(c for _, _, c, _ in lines)
        parts = [(i, reader.read(objects, K, where)) for where, i, _, objects in lines]
        empty = reader.read([], K, f"{path}")
        for name, value in empty.items():
            array = np.broadcast_to(value, (n, *value.shape)).copy()
            for i, part in parts:
                array[i] = part[name]
            out[name] = array
    return out


def _show(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
