"""Multi-MNIST: digit sources and the composition of 2D scenes (no torch).

Digit sources:

- the embedded default, 5,000 real MNIST digits shipped in this package
  (:data:`EMBEDDED_DIGITS`; 500 per class, sorted by label; source and licence in the
  README beside it). Train and test pools are split by a fixed seeded permutation
  (:data:`EMBEDDED_TEST_SIZE` test digits), never by an index range;
- the standard MNIST IDX files (``train-images-idx3-ubyte`` etc., optionally ``.gz``) in a
  user-given directory: the 60,000 training digits for ``split="train"``, the 10,000 test
  digits for ``split="test"``.

**Box convention** (the same as the 2D model's ``z_where``): a digit window is a square of
side ``w`` pixels with top-left corner ``(left, top)`` on a canvas of side ``S``. Its box is
``(scale, x, y)`` with ``scale = w / S`` and ``(x, y)`` the window centre in normalized canvas
coordinates, -1 at the left/top edge and +1 at the right/bottom edge:
``x = 2 * (left + w / 2) / S - 1``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from .config import Compose2DConfig

EMBEDDED_DIGITS = Path(__file__).resolve().parent / "mnist" / "digits.npz"
"""The embedded digits: ``images (5000, 28, 28)`` and ``labels (5000,)`` uint8 (CC BY-SA 3.0,
Yann LeCun and Corinna Cortes; ``mnist/README.md``)."""
EMBEDDED_TEST_SIZE = 1000
"""Digits of the embedded 5,000 held out for ``split="test"`` (the other 4,000 train)."""
_EMBEDDED_SPLIT_SEED = 20160325  # fixed forever: changing it would mix old train and test pools


@dataclass(frozen=True)
class DigitPool:
    """A pool of digits: ``images (N, 28, 28)`` uint8 and ``labels (N,)`` int64."""

    images: np.ndarray
    labels: np.ndarray


def load_digits(split: str = "train", mnist_dir: str | None = None) -> DigitPool:
    """Load the digit pool of a split from the embedded digits or from MNIST IDX files.

    Raises:
        UserError: an unknown split, or a directory without readable MNIST IDX files.
    """
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r} (expected 'train' or 'test')")
    if mnist_dir is None:
        with np.load(EMBEDDED_DIGITS, allow_pickle=False) as embedded:
            images, y = embedded["images"], embedded["labels"]
        perm = np.random.default_rng(_EMBEDDED_SPLIT_SEED).permutation(len(images))
        idx = perm[:EMBEDDED_TEST_SIZE] if split == "test" else perm[EMBEDDED_TEST_SIZE:]
        idx = np.sort(idx)
        return DigitPool(images[idx], y[idx].astype(np.int64))
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(Path(mnist_dir), f"{prefix}-images-idx3-ubyte", ndim=3)
    labels = _read_idx(Path(mnist_dir), f"{prefix}-labels-idx1-ubyte", ndim=1)
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
        raise UserError(f"{mnist_dir}: {prefix} images {images.shape} and labels {labels.shape} "
                        f"do not match")
    return DigitPool(images, labels.astype(np.int64))


MAX_IDX_BYTES = 2**31
"""The largest IDX body read (the 60,000 MNIST training images are 47 MB)."""


def _read_idx(directory: Path, name: str, ndim: int) -> np.ndarray:
    """An IDX file's array: its header read first, then exactly the bytes it announces (a
    file, or a gzip that expands, to more is refused, never read into memory)."""
    if not directory.is_dir():
        raise UserError(f"--mnist {directory}: not a directory")
    for candidate in (directory / name, directory / (name + ".gz"),
                      directory / name.replace("-idx", ".idx")):
        if candidate.exists():
            break
    else:
        raise UserError(f"{directory}: no MNIST file {name} (or {name}.gz) found")
    opener = gzip.open if candidate.suffix == ".gz" else open
    try:
        with opener(candidate, "rb") as f:
            head = f.read(4 + 4 * ndim)
            magic = int.from_bytes(head[:4], "big")
            if magic != 0x0800 + ndim or len(head) < 4 + 4 * ndim:
                raise UserError(f"{candidate}: not an MNIST IDX file with {ndim} dimensions")
            dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
            size = int(np.prod(dims, dtype=np.int64))
            if size > MAX_IDX_BYTES:
                raise UserError(f"{candidate}: announces {size:,} bytes of digits, more than the "
                                f"{MAX_IDX_BYTES:,} read")
            body = f.read(size)
            extra = f.read(1)
    except (OSError, EOFError) as e:
        raise UserError(f"{candidate}: cannot read: {e}") from None
    if len(body) != size or extra:
        raise UserError(f"{candidate}: truncated IDX file" if len(body) != size
                        else f"{candidate}: longer than its IDX header says")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


class Composer:
    """Composes multi-MNIST canvases from a digit pool (see the module docstring).

    Digits are resized with PIL's bilinear filter; resized digits are cached per (digit, size).
    """

    def __init__(self, pool: DigitPool, config: Compose2DConfig = Compose2DConfig()):
        self.pool = pool
        self.config = config
        self._cache: dict[tuple[int, int], tuple[np.ndarray, tuple[int, int, int, int]]] = {}

    def _resized(self, index: int, size: int):
        key = (index, size)
        hit = self._cache.get(key)
        if hit is None:
            digit = np.asarray(Image.fromarray(self.pool.images[index]).resize(
                (size, size), Image.BILINEAR))
            rows = np.flatnonzero(digit.max(axis=1) > 0)
            cols = np.flatnonzero(digit.max(axis=0) > 0)
            ink = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) if rows.size else (0, 0, 0, 0)
            hit = self._cache[key] = (digit, ink)
        return hit

    def compose(self, rng: np.random.Generator, count: int, max_tries: int = 200, restarts: int = 50):
        """One canvas with ``count`` digits whose inked areas do not overlap.

        Digits are placed one after the other, each re-drawn up to ``max_tries`` times until it
        overlaps none placed before; if one cannot be placed (the earlier ones left no room),
        the whole canvas starts over, up to ``restarts`` times. A canvas placed at the first
        attempt consumes the generator exactly as before restarts existed.

        Returns:
            image ``(S, S)`` uint8, boxes ``(count, 3)`` float32 (scale, x, y), digit labels
            ``(count,)`` int64.

        Raises:
            UserError: no canvas found in ``restarts`` attempts (too many digits for the canvas).
        """
        for _ in range(restarts):
            placed = self._try_compose(rng, count, max_tries)
            if placed is not None:
                return placed
        raise UserError(f"could not place {count} non-overlapping digits on a "
                        f"{self.config.canvas_size}x{self.config.canvas_size} canvas")

    def _try_compose(self, rng: np.random.Generator, count: int, max_tries: int):
        cfg = self.config
        S = cfg.canvas_size
        canvas = np.zeros((S, S), dtype=np.uint8)
        taken: list[tuple[int, int, int, int]] = []  # ink boxes on the canvas (t, b, l, r)
        boxes = np.zeros((count, 3), dtype=np.float32)
        labels = np.zeros(count, dtype=np.int64)
        for k in range(count):
            for _ in range(max_tries):
                index = int(rng.integers(len(self.pool.labels)))
                s = rng.normal(cfg.digit_scale_mean, cfg.digit_scale_std)
                w = int(np.clip(round(28.0 / max(s, 1e-3)), cfg.min_window, min(cfg.max_window, S)))
                left, top = (int(v) for v in rng.integers(0, S - w + 1, size=2))
                digit, (t, b, l, r) = self._resized(index, w)
                ink = (top + t, top + b, left + l, left + r)
                if all(ink[1] <= o[0] or o[1] <= ink[0] or ink[3] <= o[2] or o[3] <= ink[2]
                       for o in taken):
                    break
            else:
                return None
            taken.append(ink)
            region = canvas[top:top + w, left:left + w]
            np.maximum(region, digit, out=region)
            boxes[k] = (w / S, 2.0 * (left + w / 2.0) / S - 1.0, 2.0 * (top + w / 2.0) / S - 1.0)
            labels[k] = self.pool.labels[index]
        return canvas, boxes, labels
