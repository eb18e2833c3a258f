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

with ``K`` the largest count (each kind lists its arrays: ``Kind.shard_arrays``). Shard ``i``
is drawn from its own generator seeded by ``(seed, i)``, so its bytes do not depend on how
many workers rendered the dataset. Shards are written to a temporary name and renamed, so a
killed run leaves no half shard; running the same command again resumes, checking the shards
already there and making again any that is damaged. At the end, ``preview.png`` shows the
first scenes and the manifest is rewritten (atomically) with ``complete: true``.

**Limits.** A dataset is made shard by shard: one shard per process is in memory, and a
request whose shard does not fit the machine's memory, whose shards would be more than
:data:`MAX_SHARDS`, or whose files would not fit the disk is refused with one line before it
fills either. A directory whose manifest was written by a run that failed before its first
shard holds nothing to lose: a corrected command takes it over.

**Reading** (:class:`ShardDataset`) validates the manifest like any configuration and every
shard against it before use: each array's name, dtype and shape from its header (before a
byte of it is read), finite values, counts among the manifest's counts and ground truth
consistent with them (``Kind.check_truth``). Loading a whole dataset is refused when it does
not fit in memory.

Manifests of format 1 (before kinds had packages of their own) are read and converted.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from .config import AIRConfig, ConfigError, DatasetConfig, to_dict
from .errors import UserError, notice, sigterm_interrupts
from .files import TMP_SUFFIX, check_output, read_json, write_json, write_npz
from .kinds import KINDS, read_config, upgrade_v1
from .limits import check_memory, cpu_count, disk_free, size_text
from .progress import progress_bar

FORMAT_VERSION = 2
"""2: kind-specific settings in ``config.scenes`` (``{"kind": ...}``); 1 is read and converted."""
MANIFEST = "manifest.json"
PREVIEW = "preview.png"
MAX_SHARDS = 100_000
"""The most shards one dataset may have (file names have 5 digits; the manifest lists them)."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def num_shards(config: DatasetConfig) -> int:
    return (config.num + config.shard_size - 1) // config.shard_size


def shard_length(config: DatasetConfig, index: int) -> int:
    """Scenes in shard ``index`` (the last one may be shorter)."""
    return min(config.shard_size, config.num - index * config.shard_size)


def scene_bytes(config: DatasetConfig, images: bool = True) -> int:
    """Bytes one scene takes in memory (all its arrays, or all but ``images``)."""
    return sum(np.dtype(dtype).itemsize * int(np.prod(shape))
               for name, (dtype, shape) in shard_arrays(config).items() if images or name != "images")


def shard_arrays(config: DatasetConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every array of a shard: name -> (dtype, shape of one scene's part)."""
    return {"count": ("int64", ()), **KINDS[config.kind].shard_arrays(config)}


def check_size(config: DatasetConfig, workers: int = 1) -> None:
    """Refuse (``UserError``) a dataset of more than :data:`MAX_SHARDS` shards, or whose
    shards do not fit in memory, ``workers`` at a time."""
    total = num_shards(config)
    if total > MAX_SHARDS:
        raise UserError(f"--num {config.num:,} in shards of {config.shard_size:,} makes {total:,} shards; "
                        f"at most {MAX_SHARDS:,} (use a larger --shard-size, or a smaller --num)")
    # A shard's arrays, once as made and once as written (the compressed copy is smaller).
    per_shard = 2 * scene_bytes(config) * min(config.shard_size, config.num)
    what = (f"a shard of {min(config.shard_size, config.num):,} scenes of "
            f"{config.scenes.image_size}x{config.scenes.image_size} pixels")
    check_memory(per_shard * workers, what + (f", {workers} at a time," if workers > 1 else ""),
                 "use a smaller --shard-size" + (" or fewer --workers" if workers > 1 else ""))


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
        rng = np.random.default_rng([cfg.seed, index])
        counts = rng.choice(np.asarray(cfg.counts), size=shard_length(cfg, index))
        return self.make_scenes(rng, counts)



def _ensure(maker: Callable[[], _ShardMaker], directory: Path, config: DatasetConfig,
            index: int) -> tuple[int, str | None, int]:
    """Shard ``index`` in ``directory``: checked if it is there, made (by ``maker()``) if it is
    missing or damaged. Returns ``(index, what was wrong with the one there or None, bytes
    written or 0)``."""
    path = directory / shard_name(index)
    problem = None
    if path.exists():
        try:
            read_shard(path, config, index)
            return index, None, 0
        except UserError as e:
            problem = str(e)
    write_npz(path, maker().make(index))
    return index, problem, path.stat().st_size


_worker_maker: _ShardMaker | UserError | None = None


def _worker_init(config_dict: dict) -> None:
    global _worker_maker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the pool, quietly
    try:
        _worker_maker = _ShardMaker(read_config(DatasetConfig, config_dict))
    except UserError as e:  # reported by the first task: a failing initializer would respawn forever
        _worker_maker = e
    if "torch" in sys.modules:  # a kind that renders with torch: the workers share the cores
        sys.modules["torch"].set_num_threads(1)


def _worker_ensure(args: tuple[str, int]) -> tuple[int, str | None, int]:
    directory, index = args
    if isinstance(_worker_maker, UserError):
        raise _worker_maker
    return _ensure(lambda: _worker_maker, Path(directory), _worker_maker.config, index)


def render_dataset(out_dir: str | os.PathLike, config: DatasetConfig, workers: int = 1,
                   progress: bool = True, shard_range: tuple[int, int] | None = None,
                   notice: Callable[[str], None] = notice) -> Path:
    """Render (3D) or compose (2D) a dataset into ``out_dir``, resuming a partial one.

    Args:
        out_dir: the dataset directory; created if missing.
        config: what to make; must equal the manifest's config if ``out_dir`` holds a dataset.
        workers: processes rendering shards in parallel (the bytes do not depend on it); at
            most the machine's CPU cores.
        progress: show a progress bar on stderr.
        shard_range: ``(start, stop)``: make only shards ``start <= i < stop`` (one part of
            a dataset rendered on several machines). Shard ``i``'s bytes do not depend on the
            range, so the parts' shard files, put in one directory with any part's manifest,
            are the whole dataset; :func:`render_dataset` on that directory without a range
            finds every shard present and marks it complete.
        notice: called with one line for each shard found damaged (and made again).

    Returns:
        ``out_dir``; its manifest says ``complete: true`` once every shard is there.

    Raises:
        UserError: bad settings, a request the machine cannot hold (memory, disk, shards),
            or ``out_dir`` holds something else.
    """
    cores = cpu_count()
    if not isinstance(workers, int) or not 1 <= workers <= cores:
        raise UserError(f"--workers must be between 1 and this machine's {cores} CPU cores, got {workers}")
    check_size(config, workers)
    total = num_shards(config)
    start, stop = shard_range if shard_range is not None else (0, total)
    if not 0 <= start < stop <= total:
        raise UserError(f"--shard-range {start}:{stop} is not within the dataset's {total} shards "
                        f"(0:{total}; {config.shard_size} scenes each)")
    out = check_output(out_dir, "dataset directory", directory=True,
                       inputs=[p for p in [getattr(config.scenes, "mnist", None)] if p])
    makers: list[_ShardMaker] = []  # this process's, made when first needed

    def maker() -> _ShardMaker:
        if not makers:
            makers.append(_ShardMaker(config))
        return makers[0]

    if workers == 1 and not all((out / shard_name(i)).exists() for i in range(start, stop)):
        maker()  # before anything is written: a bad digit source is refused here
    _claim(out, config)
    workers = min(workers, stop - start)
    in_range = min(config.num, stop * config.shard_size) - start * config.shard_size
    room = disk_free(out)
    bar = progress_bar(total=in_range, unit="scene", desc=f"render-dataset {config.kind}", disable=not progress)
    with bar, sigterm_interrupts():
        disk_checked = False  # once the first shard is written, its size tells what the rest need

        def done(result: tuple[int, str | None, int]) -> None:
            nonlocal disk_checked
            index, problem, written = result
            if problem is not None:
                notice(f"{problem}; made it again")
            if written and not disk_checked:
                disk_checked = True
                _check_disk(out, written, stop - index - 1, room)
            bar.update(shard_length(config, index))

        if workers == 1:
            for i in range(start, stop):
                done(_ensure(maker, out, config, i))
        else:
            ctx = mp.get_context("spawn")
            try:
                with ctx.Pool(workers, initializer=_worker_init, initargs=(to_dict(config),)) as pool:
                    for result in pool.imap_unordered(_worker_ensure, ((str(out), i) for i in range(start, stop))):
                        done(result)
            except BaseException:  # the pool is stopped: its workers' unfinished files go too
                for stale in out.glob("*" + TMP_SUFFIX):
                    stale.unlink(missing_ok=True)
                raise
    if not all((out / shard_name(i)).exists() for i in range(total)):
        return out
    if not ShardDataset.is_complete(out):
        _write_preview(out, config)
        write_json(out / MANIFEST, _manifest(config, complete=True))
    return out


def _check_disk(out: Path, shard_bytes: int, shards_left: int, room: int) -> None:
    """Once the first shard is written: refuse to go on when the rest will not fit the disk."""
    needed = shard_bytes * shards_left
    if needed > 0.95 * room:
        raise UserError(f"{out}: the remaining {shards_left:,} shards need about {size_text(needed)} of disk "
                        f"(one shard is {size_text(shard_bytes)}); {size_text(room)} is free there")


def _claim(out: Path, config: DatasetConfig) -> None:
    """Make ``out`` this dataset's directory: create it with an (incomplete) manifest, or check
    that the manifest it holds has the same settings.

    A manifest of other settings is refused, unless it is incomplete and no shard was written
    (a run that failed before making anything): then it is replaced.
    """
    manifest_path = out / MANIFEST
    shards = out.is_dir() and any(out.glob("shard-*.npz"))
    if manifest_path.exists():
        try:
            manifest = read_json(manifest_path, "dataset manifest")
            old_config = _manifest_config(manifest)
            complete = bool(manifest.get("complete"))
        except (UserError, ValueError, KeyError, TypeError, AttributeError):
            if shards:
                raise UserError(f"{manifest_path}: unreadable manifest; delete the directory") from None
            old_config, complete = None, False
        new_config = to_dict(config)
        if old_config != new_config:
            if complete or shards:
                raise UserError(f"{out}: holds a dataset made with other settings (different "
                                f"{', '.join(_differences(old_config or {}, new_config))}); use another directory")
            manifest_path.unlink()  # nothing was made with those settings
    elif out.exists() and any(p for p in out.iterdir() if not p.name.endswith(TMP_SUFFIX)):
        raise UserError(f"{out}: directory is not empty and holds no dataset manifest")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create the directory: {e.strerror or e}") from None
    if not manifest_path.exists():
        write_json(manifest_path, _manifest(config, complete=False))
    for stale in out.glob("*" + TMP_SUFFIX):  # left by a killed run
        stale.unlink()


def _manifest_config(manifest: dict) -> dict:
    """A manifest's dataset configuration in today's layout (format 1 converted)."""
    if manifest.get("format_version") == 1:
        return upgrade_v1(manifest["config"], "dataset")
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


def _write_preview(out: Path, config: DatasetConfig, n: int = 32) -> None:
    """``preview.png``: the first ``n`` scenes in a grid, to look at what was made."""
    from .files import write_image
    from .viz import image_grid

    images = read_shard(out / shard_name(0), config, 0)["images"][:n]
    grid = image_grid(images, columns=8)
    scale = max(1, 256 // images.shape[1])  # small images are shown larger
    write_image(out / PREVIEW, grid.repeat(scale, axis=0).repeat(scale, axis=1))


# ---------------------------------------------------------------------------- reading
def read_shard(path: str | os.PathLike, config: DatasetConfig, index: int) -> dict[str, np.ndarray]:
    """Shard ``index`` of a dataset of ``config``, checked (see the module docstring).

    Every array's header is checked against :func:`shard_arrays` before its data is read, so a
    damaged or hand-edited shard can neither allocate more than a shard's worth of memory nor
    be half-read.

    Raises:
        UserError: naming the file and what is wrong with it.
    """
    path = Path(path)
    n = shard_length(config, index)
    spec = shard_arrays(config)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(zf.namelist())
            if names != sorted(k + ".npy" for k in spec):
                raise UserError(f"{path}: holds {', '.join(names) or 'nothing'}; a {config.kind} shard "
                                f"holds {', '.join(sorted(k + '.npy' for k in spec))}")
            for name, (dtype, shape) in spec.items():
                with zf.open(name + ".npy") as f:
                    arrays[name] = _read_npy(f, np.dtype(dtype), (n, *shape), f"{path}: {name}")
    except UserError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{path}: unreadable shard ({e})") from None
    problem = _check_values(arrays, config)
    if problem:
        raise UserError(f"{path}: {problem}")
    return arrays


def _read_npy(f, dtype: np.dtype, shape: tuple[int, ...], where: str) -> np.ndarray:
    """One ``.npy`` member of a shard, its header checked before its data is read."""
    version = np.lib.format.read_magic(f)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise UserError(f"{where}: unknown .npy version {version}")
    found_shape, fortran, found_dtype = read_header(f)
    if found_dtype != dtype or tuple(found_shape) != shape or fortran:
        raise UserError(f"{where}: {found_dtype} array of shape {tuple(found_shape)}; expected {dtype} {shape}")
    array = np.empty(shape, dtype=dtype)
    view = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
    got = 0
    while got < len(view):
        chunk = f.readinto(view[got:])
        if not chunk:
            raise UserError(f"{where}: truncated ({got:,} of {len(view):,} bytes)")
        got += chunk
    if f.read(1):
        raise UserError(f"{where}: longer than its header says")
    return array


def _check_values(arrays: dict[str, np.ndarray], config: DatasetConfig) -> str | None:
    """What is impossible in a shard's values, or None."""
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return f"{name} holds NaN or infinite values"
    bad = ~np.isin(arrays["count"], config.counts)
    if bad.any():
        return (f"count {int(arrays['count'][bad][0])} in scene {int(np.flatnonzero(bad)[0])} is not one of "
                f"the dataset's counts {list(config.counts)}")
    return KINDS[config.kind].check_truth(arrays, config)


class Dataset(Protocol):
    """What ``train`` and ``evaluate`` read: a dataset directory made by ``render-dataset``
    (:class:`ShardDataset`) or a folder of images (:class:`inverse_air.folders.ImageFolder`);
    :func:`open_dataset` opens either."""

    directory: Path
    config: DatasetConfig | None
    """What made the dataset (None for a folder of images: nothing did)."""
    image_size: int
    channels: int
    counts: tuple[int, ...] | None
    """The object counts its ground truth holds (None: it has none)."""

    def __len__(self) -> int: ...

    def check_kind(self, kind: str, model: str) -> None:
        """Raise :class:`UserError` unless the dataset is for a model of kind ``kind`` (named
        ``model`` in the message)."""

    def check_fits(self, air: AIRConfig, model: str) -> None:
        """Raise :class:`UserError` unless a model of configuration ``air`` (named ``model``
        in the message) reads this dataset's images."""

    def arrays(self, images: bool = True) -> dict[str, np.ndarray]:
        """``images (n, S, S, C)`` uint8, ``count (n,)`` (-1 where an image has no label) and
        the kind's ground truth."""

    def shards(self) -> Iterator[dict[str, np.ndarray]]:
        """The arrays a part at a time, in order."""

    def monitor_indices(self, size: int) -> np.ndarray:
        """The (at most ``size``) images training monitors on, always the same ones."""

    def training_indices(self, size: int) -> np.ndarray | None:
        """The images training draws batches from when it monitors on ``size`` (None: all)."""


def is_dataset(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a dataset manifest or image files."""
    from .folders import is_image_folder

    return (Path(directory) / MANIFEST).exists() or is_image_folder(directory)


def open_dataset(directory: str | os.PathLike, kind: str, image_size: int | None = None,
                 channels: int | None = None, labelled_only: bool = False, progress: bool = False) -> Dataset:
    """A dataset directory (with ``manifest.json``: :class:`ShardDataset`, whose images are its
    own) or a folder of images (:class:`~inverse_air.folders.ImageFolder`, read for a model of
    ``kind`` at ``image_size`` and ``channels``, derived where None; ``labelled_only``: only
    the images its labels name).

    Raises:
        UserError: neither, or one that cannot be read (naming what is wrong)."""
    from .folders import ImageFolder

    directory = Path(directory)
    if (directory / MANIFEST).exists():
        return ShardDataset(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory" if not directory.exists() else
                        f"{directory}: not a directory (a dataset directory or a folder of images is expected)")
    return ImageFolder(directory, kind, image_size, channels, labelled_only=labelled_only, progress=progress)


def dataset_counts(directory: str | os.PathLike, kind: str) -> tuple[int, ...] | None:
    """The object counts of a dataset (its manifest's) or of a folder of images (its labels';
    None without labels), without reading any image."""
    from .folders import LABELS, list_images, read_labels

    directory = Path(directory)
    if (directory / MANIFEST).exists():
        return ShardDataset(directory).counts
    if not (directory / LABELS).exists():
        return None
    count = read_labels(directory / LABELS, [p.name for p in list_images(directory)], kind)["count"]
    return tuple(int(c) for c in np.unique(count[count >= 0]))


class ShardDataset:
    """A dataset directory opened for reading (validated: see the module docstring).

    ``len(ds)`` is the number of scenes; :meth:`arrays` loads every field of every shard
    (refused when it does not fit in memory); :meth:`shards` yields one shard's arrays at a
    time.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.exists():
            raise UserError(f"{self.directory}: not a dataset (no {MANIFEST}); "
                            f"make one with `inverse-air render-dataset`")
        self.manifest = read_json(path, "dataset manifest")
        try:
            if not isinstance(self.manifest, dict):
                raise ValueError("not a JSON object")
            version = self.manifest.get("format_version")
            if version not in (1, FORMAT_VERSION):
                raise UserError(f"{path}: dataset format {version} is not {FORMAT_VERSION} (or 1)")
            self.config = read_config(DatasetConfig, _manifest_config(self.manifest))
        except ConfigError as e:
            raise UserError(f"{path}: config.{e}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{path}: unreadable manifest ({e})") from None
        expected = _manifest(self.config, complete=True)
        for key in ("num_scenes", "shards", "model"):
            if self.manifest.get(key) != expected[key]:
                raise UserError(f"{path}: its {key} do not match its configuration (edited by hand?)")
        if not self.manifest.get("complete"):
            raise UserError(f"{self.directory}: dataset is incomplete; re-run the "
                            f"render-dataset command that made it to finish it")

    @staticmethod
    def is_complete(directory: str | os.PathLike) -> bool:
        """Whether ``directory`` holds a complete dataset (without raising)."""
        try:
            return bool(read_json(Path(directory) / MANIFEST).get("complete"))
        except (UserError, AttributeError):
            return False

    def __len__(self) -> int:
        return self.config.num

    @property
    def image_size(self) -> int:
        return self.config.scenes.image_size

    @property
    def channels(self) -> int:
        return int(shard_arrays(self.config)["images"][1][-1])

    @property
    def counts(self) -> tuple[int, ...]:
        return self.config.counts

    def monitor_indices(self, size: int) -> np.ndarray:
        """The first ``size`` scenes (training draws from them too)."""
        return np.arange(min(size, len(self)))

    def training_indices(self, size: int) -> None:
        """Every scene."""
        return None

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

    def shards(self) -> Iterator[dict[str, np.ndarray]]:
        """Each shard's arrays in order, checked (:func:`read_shard`).

        Raises:
            UserError: a shard does not fit in memory, or is damaged."""
        shard = min(self.config.shard_size, self.config.num)
        check_memory(2 * shard * scene_bytes(self.config), f"{self.directory}: reading a shard of {shard:,} scenes")
        for i in range(num_shards(self.config)):
            yield read_shard(self.directory / shard_name(i), self.config, i)

    def arrays(self, images: bool = True) -> dict[str, np.ndarray]:
        """Every shard's arrays, concatenated (without ``images`` if ``images`` is False).

        Raises:
            UserError: the dataset does not fit in memory, or a shard is damaged.
        """
        n = len(self)
        check_memory(n * scene_bytes(self.config, images) + 2 * self.config.shard_size * scene_bytes(self.config),
                     f"{self.directory}: loading its {n:,} scenes", "use a smaller dataset")
        out = {name: np.empty((n, *shape), dtype) for name, (dtype, shape) in shard_arrays(self.config).items()
               if images or name != "images"}
        at = 0
        for shard in self.shards():
            m = len(shard["count"])
            for name in out:
                out[name][at:at + m] = shard[name]
            at += m
        return out
