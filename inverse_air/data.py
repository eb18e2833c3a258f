"""Datasets on disk: rendering them shard by shard, and reading them back.

A dataset directory holds ``manifest.json`` and shards ``shard-00000.npz``, ... of
``shard_size`` scenes each (the last may be shorter). Every shard has

- ``images``: ``(n, H, W, C)`` uint8 (3D: RGB; 2D: one channel),
- ``count``: ``(n,)`` int64, the number of objects,
- 3D: ``shape (n, K)`` int64 (index into :data:`inverse_air.scene.SHAPES`, -1 = empty slot),
  ``position (n, K, 2)`` float32 ``[x, z]`` in world units, ``yaw (n, K)`` float32 in degrees;
- 2D: ``box (n, K, 3)`` float32 ``(scale, x, y)`` (convention in :mod:`inverse_air.multimnist`),
  ``digit (n, K)`` int64 (-1 = empty slot);

with ``K`` the largest count. Shard ``i`` is drawn from its own generator seeded by
``(seed, i)``, so its bytes do not depend on how many workers rendered the dataset. Shards are
written to a temporary name and renamed, so a killed run leaves no half shard; running the
same command again resumes. At the end, ``preview.png`` shows the first scenes and the
manifest is rewritten (atomically) with ``complete: true``.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import zipfile
from pathlib import Path

import numpy as np

from .config import DatasetConfig, from_dict, to_dict
from .errors import UserError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PREVIEW = "preview.png"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def num_shards(config: DatasetConfig) -> int:
    return (config.num + config.shard_size - 1) // config.shard_size


def check_image_size(size: int) -> None:
    """Raise :class:`UserError` unless ``size`` is a usable image side in pixels."""
    if not 8 <= size <= 1024:
        raise UserError(f"--image-size must be between 8 and 1024, got {size}")


def check_config(config: DatasetConfig) -> None:
    """Raise :class:`UserError` for settings that cannot make a dataset."""
    if config.model not in ("3d", "2d"):
        raise UserError(f"unknown model kind {config.model!r} (expected '3d' or '2d')")
    if config.num < 1:
        raise UserError(f"--num must be at least 1, got {config.num}")
    if not config.counts or any(c < 0 for c in config.counts):
        raise UserError(f"--counts must be non-negative integers, got {list(config.counts)}")
    if config.model == "3d" and config.max_count > 6:
        raise UserError(f"--counts: at most 6 objects fit the 3D scene region, got {config.max_count}")
    if config.model == "2d" and config.max_count > 5:
        raise UserError(f"--counts: at most 5 digits fit the canvas, got {config.max_count}")
    if config.shard_size < 1:
        raise UserError(f"shard size must be at least 1, got {config.shard_size}")
    if config.split not in ("train", "test"):
        raise UserError(f"--split must be 'train' or 'test', got {config.split!r}")
    check_image_size(config.render.image_size if config.model == "3d" else config.compose.canvas_size)


# ---------------------------------------------------------------------------- writing
def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` that ``np.load`` reads, byte for byte the same for the same arrays
    (``np.savez`` stamps the current time into the zip), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue(), compresslevel=1)
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (a temporary name, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _manifest(config: DatasetConfig, complete: bool) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "inverse-air-dataset",
        "model": config.model,
        "num_scenes": config.num,
        "counts": list(config.counts),
        "shards": [shard_name(i) for i in range(num_shards(config))],
        "complete": complete,
        "config": to_dict(config),
    }


class _ShardMaker:
    """Makes the arrays of one shard; built once per process (renderer, digit pool)."""

    def __init__(self, config: DatasetConfig):
        self.config = config
        if config.model == "3d":
            from .render3d import SceneRenderer  # only the 3D path needs PyTorch3D

            self.renderer = SceneRenderer(config.render)
        else:
            from .multimnist import Composer, load_digits

            self.composer = Composer(load_digits(config.split, config.mnist), config.compose)

    def make(self, index: int) -> dict[str, np.ndarray]:
        cfg = self.config
        start = index * cfg.shard_size
        n = min(cfg.shard_size, cfg.num - start)
        rng = np.random.default_rng([cfg.seed, index])
        counts = rng.choice(np.asarray(cfg.counts), size=n)
        return self._make_3d(rng, counts) if cfg.model == "3d" else self._make_2d(rng, counts)

    def _make_3d(self, rng, counts) -> dict[str, np.ndarray]:
        from .scene import sample_scene, scenes_to_arrays

        cfg = self.config
        scenes = [sample_scene(rng, int(c), cfg.render.object_scale) for c in counts]
        batch = 64  # bounds the renderer's transient memory
        images = np.concatenate([self.renderer.render_scenes(scenes[b:b + batch])
                                 for b in range(0, len(scenes), batch)])
        return {"images": images, "count": counts.astype(np.int64),
                **scenes_to_arrays(scenes, cfg.max_count)}

    def _make_2d(self, rng, counts) -> dict[str, np.ndarray]:
        K, S = self.config.max_count, self.config.compose.canvas_size
        n = len(counts)
        images = np.zeros((n, S, S, 1), dtype=np.uint8)
        box = np.zeros((n, K, 3), dtype=np.float32)
        digit = np.full((n, K), -1, dtype=np.int64)
        for i, c in enumerate(counts):
            canvas, boxes, labels = self.composer.compose(rng, int(c))
            images[i, :, :, 0] = canvas
            box[i, :c], digit[i, :c] = boxes, labels
        return {"images": images, "count": counts.astype(np.int64), "box": box, "digit": digit}


_worker_maker: _ShardMaker | None = None


def _worker_init(config_dict: dict) -> None:
    config = from_dict(DatasetConfig, config_dict)
    if config.model == "3d":  # the 2D path never imports torch
        import torch

        torch.set_num_threads(1)  # the workers share the cores
    global _worker_maker
    _worker_maker = _ShardMaker(config)


def _worker_make(args: tuple[int, str]) -> int:
    index, directory = args
    write_npz(Path(directory) / shard_name(index), _worker_maker.make(index))
    return index


def render_dataset(out_dir: str | os.PathLike, config: DatasetConfig, workers: int = 1,
                   progress: bool = True, shard_range: tuple[int, int] | None = None) -> Path:
    """Render (3D) or compose (2D) a dataset into ``out_dir``, resuming a partial one.

    Args:
        out_dir: the dataset directory; created if missing.
        config: what to make; must equal the manifest's config if ``out_dir`` holds a dataset.
        workers: processes rendering shards in parallel (the bytes do not depend on it).
        progress: show a progress bar on stderr.
        shard_range: ``(start, stop)``: make only shards ``start <= i < stop`` (one part of
            a dataset rendered on several machines). Shard ``i``'s bytes do not depend on the
            range, so the parts' shard files, put in one directory with any part's manifest,
            are the whole dataset; :func:`render_dataset` on that directory without a range
            finds every shard present and marks it complete.

    Returns:
        ``out_dir``; its manifest says ``complete: true`` once every shard is there.

    Raises:
        UserError: bad settings, or ``out_dir`` holds something else.
    """
    check_config(config)
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    total = num_shards(config)
    start, stop = shard_range if shard_range is not None else (0, total)
    if not 0 <= start < stop <= total:
        raise UserError(f"--shard-range {start}:{stop} is not within the dataset's {total} shards "
                        f"(0:{total}; {config.shard_size} scenes each)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
            old_config = old["config"]
        except (OSError, ValueError, KeyError):
            raise UserError(f"{manifest_path}: unreadable manifest; delete the directory") from None
        new_config = json.loads(json.dumps(to_dict(config)))
        if old_config != new_config:
            differ = sorted(k for k in set(old_config) | set(new_config)
                            if old_config.get(k) != new_config.get(k))
            raise UserError(f"{out}: holds a dataset made with other settings "
                            f"(different {', '.join(differ)}); use another directory")
    elif out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: directory is not empty and holds no dataset manifest")
    out.mkdir(parents=True, exist_ok=True)
    if not manifest_path.exists():
        write_json(manifest_path, _manifest(config, complete=False))
    for stale in out.glob("*.tmp"):  # left by a killed run
        stale.unlink()

    todo = [i for i in range(start, stop) if not (out / shard_name(i)).exists()]
    sizes = {i: min(config.shard_size, config.num - i * config.shard_size) for i in todo}
    from tqdm import tqdm

    in_range = min(config.num, stop * config.shard_size) - start * config.shard_size
    bar = tqdm(total=in_range, initial=in_range - sum(sizes.values()), unit="scene",
               desc=f"render-dataset {config.model}", disable=not progress, dynamic_ncols=True)
    with bar:
        if workers == 1 or len(todo) <= 1:
            maker = _ShardMaker(config) if todo else None
            for i in todo:
                write_npz(out / shard_name(i), maker.make(i))
                bar.update(sizes[i])
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(todo)), initializer=_worker_init,
                          initargs=(to_dict(config),)) as pool:
                for i in pool.imap_unordered(_worker_make, [(i, str(out)) for i in todo]):
                    bar.update(sizes[i])
    if not all((out / shard_name(i)).exists() for i in range(total)):
        return out
    if not json.loads(manifest_path.read_text()).get("complete"):
        _write_preview(out)
        write_json(manifest_path, _manifest(config, complete=True))
    return out


def _write_preview(out: Path, n: int = 32) -> None:
    """``preview.png``: the first ``n`` scenes in a grid, to look at what was made."""
    from .imageio_utils import write_png
    from .viz import image_grid

    with np.load(out / shard_name(0), allow_pickle=False) as shard:
        images = shard["images"][:n]
    grid = image_grid(images, columns=8)
    scale = max(1, 256 // images.shape[1])  # small images are shown larger
    write_png(out / PREVIEW, grid.repeat(scale, axis=0).repeat(scale, axis=1))


# ---------------------------------------------------------------------------- reading
class ShardDataset:
    """A dataset directory opened for reading.

    ``len(ds)`` is the number of scenes; :meth:`arrays` loads every field of every shard
    (concatenated); :meth:`shards` yields one shard's arrays at a time.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.exists():
            raise UserError(f"{self.directory}: not a dataset (no {MANIFEST}); "
                            f"make one with `inverse-air render-dataset`")
        try:
            self.manifest = json.loads(path.read_text())
            self.config = from_dict(DatasetConfig, self.manifest["config"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: unreadable manifest ({e})") from None
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{path}: dataset format {self.manifest.get('format_version')} "
                            f"is not {FORMAT_VERSION}")
        if not self.manifest.get("complete"):
            raise UserError(f"{self.directory}: dataset is incomplete; re-run the "
                            f"render-dataset command that made it to finish it")

    @staticmethod
    def is_complete(directory: str | os.PathLike) -> bool:
        """Whether ``directory`` holds a complete dataset (without raising)."""
        try:
            return bool(json.loads((Path(directory) / MANIFEST).read_text()).get("complete"))
        except (OSError, ValueError, AttributeError):
            return False

    def __len__(self) -> int:
        return int(self.manifest["num_scenes"])

    def shards(self):
        for name in self.manifest["shards"]:
            path = self.directory / name
            try:
                with np.load(path, allow_pickle=False) as data:
                    yield {k: data[k] for k in data.files}
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise UserError(f"{path}: unreadable shard ({e})") from None

    def arrays(self) -> dict[str, np.ndarray]:
        parts = list(self.shards())
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
