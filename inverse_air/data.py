"""Datasets on disk: rendering them shard by shard, and reading them back.

A dataset directory holds ``manifest.json`` and shards ``shard-00000.npz``, ... of
``shard_size`` scenes each (the last may be shorter). Every shard has

- ``images``: ``(n, H, W, C)`` uint8 (3D: RGB; 2D: one channel),
- ``count``: ``(n,)`` int64, the number of objects,
- the kind's ground truth (its shard maker, ``Kind.shard_maker``, makes it): 3D ``shape (n,
  K)`` int64 (index into :data:`inverse_air.objects3d.scene.SHAPES`, -1 = empty slot),
  ``position (n, K, 2)`` float32 ``[x, z]`` in world units, ``yaw (n, K)`` float32 in degrees;
  2D ``box (n, K, 3)`` float32 ``(scale, x, y)`` (convention in
  :mod:`inverse_air.objects2d.multimnist`), ``digit (n, K)`` int64 (-1 = empty slot);

with ``K`` the largest count. Shard ``i`` is drawn from its own generator seeded by
``(seed, i)``, so its bytes do not depend on how many workers rendered the dataset. Shards are
written to a temporary name and renamed, so a killed run leaves no half shard; running the
same command again resumes. At the end, ``preview.png`` shows the first scenes and the
manifest is rewritten (atomically) with ``complete: true``.

Manifests of format 1 (before kinds had packages of their own) are read and converted.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from .config import AIRConfig, DatasetConfig, from_dict, to_dict, upgrade_v1
from .errors import UserError
from .files import TMP_SUFFIX, write_json, write_npz
from .kinds import KINDS

FORMAT_VERSION = 2
"""2: kind-specific settings in ``config.scenes`` (``{"kind": ...}``); 1 is read and converted."""
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
    if config.num < 1:
        raise UserError(f"--num must be at least 1, got {config.num}")
    if not config.counts or any(c < 0 for c in config.counts):
        raise UserError(f"--counts must be non-negative integers, got {list(config.counts)}")
    limit = config.scenes.max_objects
    if config.max_count > limit:
        raise UserError(f"--counts: at most {limit} objects fit a {config.kind} scene, got {config.max_count}")
    if config.shard_size < 1:
        raise UserError(f"shard size must be at least 1, got {config.shard_size}")
    if config.split not in ("train", "test"):
        raise UserError(f"--split must be 'train' or 'test', got {config.split!r}")
    check_image_size(config.scenes.image_size)


# ---------------------------------------------------------------------------- writing
def _manifest(config: DatasetConfig, complete: bool) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "inverse-air-dataset",
        "model": config.kind,
        "num_scenes": config.num,
        "counts": list(config.counts),
        "shards": [shard_name(i) for i in range(num_shards(config))],
        "complete": complete,
        "config": to_dict(config),
    }


class _ShardMaker:
    """Makes the arrays of one shard; built once per process (the kind's maker: a renderer, a
    digit pool)."""

    def __init__(self, config: DatasetConfig):
        self.config = config
        self.make_scenes = KINDS[config.kind].shard_maker(config)

    def make(self, index: int) -> dict[str, np.ndarray]:
        cfg = self.config
        start = index * cfg.shard_size
        n = min(cfg.shard_size, cfg.num - start)
        rng = np.random.default_rng([cfg.seed, index])
        counts = rng.choice(np.asarray(cfg.counts), size=n)
        return self.make_scenes(rng, counts)


_worker_maker: _ShardMaker | None = None


def _worker_init(config_dict: dict) -> None:
    global _worker_maker
    _worker_maker = _ShardMaker(from_dict(DatasetConfig, config_dict))
    if "torch" in sys.modules:  # a kind that renders with torch: the workers share the cores
        sys.modules["torch"].set_num_threads(1)


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
            old_config = _manifest_config(json.loads(manifest_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{manifest_path}: unreadable manifest; delete the directory") from None
        new_config = json.loads(json.dumps(to_dict(config)))
        if old_config != new_config:
            raise UserError(f"{out}: holds a dataset made with other settings (different "
                            f"{', '.join(_differences(old_config, new_config))}); use another directory")
    elif out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: directory is not empty and holds no dataset manifest")
    out.mkdir(parents=True, exist_ok=True)
    if not manifest_path.exists():
        write_json(manifest_path, _manifest(config, complete=False))
    for stale in out.glob("*" + TMP_SUFFIX):  # left by a killed run
        stale.unlink()

    todo = [i for i in range(start, stop) if not (out / shard_name(i)).exists()]
    sizes = {i: min(config.shard_size, config.num - i * config.shard_size) for i in todo}
    from tqdm import tqdm

    in_range = min(config.num, stop * config.shard_size) - start * config.shard_size
    bar = tqdm(total=in_range, initial=in_range - sum(sizes.values()), unit="scene",
               desc=f"render-dataset {config.kind}", disable=not progress, dynamic_ncols=True)
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


def _manifest_config(manifest: dict) -> dict:
    """A manifest's dataset configuration in today's layout (format 1 converted)."""
    if manifest.get("format_version") == 1:
        return json.loads(json.dumps(upgrade_v1(manifest["config"], "dataset")))
    return manifest["config"]


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted names of the fields where two configuration dicts differ."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(prefix + key)
    return names


def _write_preview(out: Path, n: int = 32) -> None:
    """``preview.png``: the first ``n`` scenes in a grid, to look at what was made."""
    from .files import write_png
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
            version = self.manifest.get("format_version")
            if version not in (1, FORMAT_VERSION):
                raise UserError(f"{path}: dataset format {version} is not {FORMAT_VERSION} (or 1)")
            self.config = from_dict(DatasetConfig, _manifest_config(self.manifest))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{path}: unreadable manifest ({e})") from None
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

    def check_kind(self, kind: str, model: str) -> None:
        """Raise :class:`UserError` unless the dataset is of kind ``kind`` (the model's, named
        ``model`` in the message: ``--model``, a checkpoint)."""
        if self.config.kind != kind:
            raise UserError(f"{self.directory}: a {self.config.kind} dataset, but {model} is a {kind} model")

    def check_fits(self, air: AIRConfig, model: str) -> None:
        """Raise :class:`UserError` unless a model of configuration ``air`` (named ``model`` in
        the message) reads this dataset's images: the same kind and image size."""
        self.check_kind(air.kind, model)
        size = self.config.scenes.image_size
        if size != air.image_size:
            raise UserError(f"{self.directory}: images are {size}x{size}, the model expects "
                            f"{air.image_size}x{air.image_size}")

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
