"""The kinds of scenes inverse-air knows, each in a package of its own, found by name.

A kind (3D shapes: :mod:`inverse_air.objects3d`; 2D digits: :mod:`inverse_air.objects2d`) is
one :class:`Kind` record: its presets, its object model, how its datasets are made, how its
ground truth maps to latents, its metrics and how its results read. Everything outside the
kind's package looks the kind up in :data:`KINDS` (``KINDS["3d"]``) instead of testing names,
so a new kind is a new package and one line in :data:`_PACKAGES` (or a :func:`register` call).

A kind's package is imported the first time it is looked up, so the 2D data path never imports
PyTorch3D, and the AIR core (:mod:`inverse_air.air`) imports no kind at all.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from .config import AIRConfig, ConfigError, DatasetConfig, ObjectsConfig, ScenesConfig, TrainConfig, from_dict
from .errors import UserError

if TYPE_CHECKING:
    from .air import Latents
    from .object_model import ObjectModel


@dataclass(frozen=True)
class Codec:
    """How a kind's ground truth (a dataset shard's arrays) and its latents map to each other."""

    targets: Callable[[dict[str, np.ndarray], int], dict]
    """``(arrays, max_steps) -> teacher-forcing targets``: ``z_pres (B, N)`` and the object
    latents ``(B, N, ...)`` as tensors, objects in the model's canonical order."""
    to_arrays: Callable[["Latents"], dict[str, np.ndarray]]
    """Inferred latents -> the ground-truth format (``count`` and per-object arrays)."""


@dataclass(frozen=True)
class Labels:
    """How a kind reads the objects of one line of a folder's ``labels.jsonl``
    (:mod:`inverse_air.folders`)."""

    field: str
    """The line's key that lists the image's objects (2D: ``"boxes"``; 3D: ``"objects"``)."""
    read: Callable[[list, int, str], dict[str, np.ndarray]]
    """``(objects, K, where) -> one image's ground truth``: the listed objects, checked, as one
    scene's arrays of a dataset shard with ``K`` object slots (2D: ``box (K, 3)``); raises
    :class:`~inverse_air.errors.UserError` naming ``where`` (the file and line)."""


@dataclass(frozen=True)
class Kind:
    """Everything inverse-air needs to know about one kind of scene."""

    name: str
    """The kind's name (``--model NAME``)."""
    summary: str
    """One line for help texts."""
    objects_config: type[ObjectsConfig]
    """Its object-model configuration class (``AIRConfig.objects``)."""
    scenes_config: type[ScenesConfig]
    """Its dataset configuration class (``DatasetConfig.scenes``)."""
    air: AIRConfig
    """Preset model (``train --model NAME``); the dataset fills in what it fixes."""
    train: TrainConfig
    """Preset training."""
    dataset: DatasetConfig
    """Preset dataset (``render-dataset --model NAME``)."""
    build_objects: Callable[[AIRConfig], "ObjectModel"]
    """A freshly initialized object model (an ``nn.Module``) for a model configuration."""
    fit_to_data: Callable[[AIRConfig, DatasetConfig], AIRConfig]
    """The model configuration for a dataset: what the dataset fixes (image size, renderer,
    object sizes) replaced in it."""
    shard_maker: Callable[[DatasetConfig], Callable[[np.random.Generator, np.ndarray], dict[str, np.ndarray]]]
    """``config -> make(rng, counts)``: builds (once per process) what makes one shard's scenes
    of ``counts (n,)`` objects; ``make`` returns ``images (n, H, W, C)`` uint8 and the ground
    truth."""
    codec: Codec
    """Ground truth <-> latents."""
    shard_arrays: Callable[[DatasetConfig], dict[str, tuple[str, tuple[int, ...]]]]
    """A shard's arrays besides ``count``: name -> (dtype, one scene's shape), ``images``
    included (reading checks every shard against it)."""
    check_truth: Callable[[dict[str, np.ndarray], DatasetConfig], str | None]
    """What is impossible in a shard's ground truth (one line), or None: values out of range,
    slots that disagree with ``count``."""
    memory_per_image: Callable[[AIRConfig, str], float]
    """Bytes one image takes in a step of ``phase`` (``"sleep"``, ``"supervised"``,
    ``"elbo"`` or ``"predict"``): the measured cost of the step's tensors, so that a batch
    that cannot fit the machine is refused before it is tried."""
    metrics: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], dict]
    """``(true, predicted) -> JSON-ready metrics`` (both in the ground-truth format)."""
    metric_lines: Callable[[dict], list[str]]
    """The kind's part of ``evaluate``'s report for people."""
    step_text: Callable[[dict], str]
    """One present step of a ``decompose`` result for people."""
    look_text: Callable[[dict], list[str]] = lambda result: []
    """The lines a ``decompose`` result's scene latents (its look) read as, for people."""
    shipped_model: Path | None = None
    """The model shipped with the package (``decompose --model NAME``, ``Decomposer(NAME)``),
    package data of the kind's package."""
    render_scene: Callable[[Path, int | None], tuple[np.ndarray, int]] | None = None
    """``(scene file, image side or None: the kind's default) -> (image (S, S, C) uint8, its
    number of objects)``: the scene file, checked, drawn (``render-scene --model NAME``); None:
    the kind has no scene files."""
    upgrade_v1: Callable[[dict, str], dict] | None = None
    """Format-1 files: ``(old, "air" | "dataset") -> the kind's branch`` (``objects`` or
    ``scenes`` dict) from a format-1 ``AIRConfig`` or ``DatasetConfig`` dict."""
    folder_air: AIRConfig | None = None
    """Preset model for a folder of images (:mod:`inverse_air.folders`), where it differs from
    ``air`` (None: ``air``); ``fit_to_images`` fills in what the images fix."""
    folder_count_prior: str = "uniform"
    """The default ``train --count-prior`` on a folder of images without labels (3D: uniform,
    the sleep phase draws its scenes from it; 2D: geometric)."""
    folder_train: TrainConfig | None = None
    """Preset training for a folder of images, where it differs from ``train`` (None: ``train``)."""
    geometric_ratio: float = 0.01
    """``--count-prior geometric``: ``P(n) ∝ geometric_ratio ** n``, each object costs
    ``-log(geometric_ratio)`` nats of prior (0.01, 4.6 nats: the paper's presence prior)."""
    fit_to_images: Callable[[AIRConfig, int, int, object], AIRConfig] | None = None
    """Training on a folder of images (:mod:`inverse_air.folders`): ``(air, size, channels,
    sizes) -> AIRConfig`` for images of side ``size`` with ``channels``, and ``sizes`` (an
    instance of :attr:`folder_sizes`, or None: derived from the side). None: the kind's model
    reads images of its preset's size and channels only (a folder's images are brought to
    them)."""
    folder_sizes: type | None = None
    """The typed sizes in pixels (a :class:`~inverse_air.config.Checked` dataclass) that the
    kind's model for a folder takes, one field per ``train`` flag (2D:
    :class:`~inverse_air.objects2d.config.WindowSizes`, ``--object-size`` and
    ``--window-size``); its ``of(objects_config)`` gives a model's. None: it takes none."""
    labels: Labels | None = None
    """How the kind reads a folder's ``labels.jsonl`` objects (None: counts only)."""
    data_mismatch: Callable[[AIRConfig, DatasetConfig], str | None] | None = None
    """``(air, data) -> one line`` saying how a dataset's scenes differ from those a model of
    configuration ``air`` was trained on (where its scores will suffer: 3D, a look that varies
    where the model saw it fixed), or None; ``evaluate`` and ``decompose`` warn with it."""


def lazy(module: str, name: str) -> Callable:
    """``module.name``, imported at its first call: a kind's record can name its torch and
    PyTorch3D code without importing it (making 2D datasets never imports torch)."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{module}.{name}`` (imported when first called)."
    return call


_PACKAGES: dict[str, str] = {"3d": "inverse_air.objects3d", "2d": "inverse_air.objects2d"}
"""Built-in kinds: name -> package exporting ``KIND``."""

_LOADED: dict[str, Kind] = {}


class _Registry(Mapping):
    """``KINDS[name]`` imports the kind's package on first use; iteration lists the names."""

    def __getitem__(self, name: str) -> Kind:
        if name not in _LOADED:
            if name not in _PACKAGES:
                raise KeyError(name)
            _LOADED[name] = importlib.import_module(_PACKAGES[name]).KIND
        return _LOADED[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*_PACKAGES, *_LOADED]))

    def __len__(self) -> int:
        return len(set(_PACKAGES) | set(_LOADED))

    def __contains__(self, name) -> bool:
        return name in _PACKAGES or name in _LOADED


KINDS: Mapping[str, Kind] = _Registry()
"""Every kind by name (``"3d"``, ``"2d"``, and any :func:`register` added)."""


def register(kind: Kind) -> None:
    """Make a kind defined outside this package known by its name."""
    if kind.name in KINDS:
        raise ValueError(f"a kind named {kind.name!r} exists already")
    _LOADED[kind.name] = kind


def get_kind(name: str, what: str = "--model") -> Kind:
    """``KINDS[name]``, or a :class:`UserError` naming ``what`` and the known kinds."""
    if name not in KINDS:
        raise UserError(f"{what} must be one of {', '.join(KINDS)}, got {name!r}")
    return KINDS[name]


# ---------------------------------------------------------------------------- configs in JSON
def config_class(base: type, name) -> type:
    """The subclass of ``base`` (:class:`~inverse_air.config.ObjectsConfig` or
    :class:`~inverse_air.config.ScenesConfig`) that kind ``name`` defines.

    Raises:
        ConfigError: an unknown kind, or one that defines no such class.
    """
    if not isinstance(name, str) or name not in KINDS:
        raise ConfigError("kind", f"is an unknown kind {name!r} (known: {', '.join(KINDS)})")
    kind = KINDS[name]
    for cls in (kind.objects_config, kind.scenes_config):
        if issubclass(cls, base):
            return cls
    raise ConfigError("kind", f"{name!r} has no {base.__name__}")


def read_config(cls: type, data: dict):
    """A config dataclass rebuilt from its JSON dict (:func:`~inverse_air.config.from_dict`),
    each kind's branch as the class its kind defines.

    Raises:
        ConfigError: naming the field's dotted path.
    """
    return from_dict(cls, data, config_class)


_V1_CORE_FIELDS = {
    "air": ("max_steps", "count_prior", "count_prior_floor", "dair", "pixel_sigma", "encoder_channels",
            "encoder_features", "lstm_size", "baseline_channels"),
    "dataset": ("num", "counts", "seed", "shard_size", "split"),
}


def upgrade_v1(old: dict, which: str) -> dict:
    """A format-1 ``AIRConfig`` (``which="air"``) or ``DatasetConfig`` (``"dataset"``) dict,
    which held every kind's fields side by side and named the kind ``model``, in today's
    layout (the kind's own fields moved to its branch by :attr:`Kind.upgrade_v1`).

    Raises:
        ValueError: not a format-1 dict of a known kind.
    """
    if not isinstance(old, dict) or old.get("model") not in KINDS:
        raise ValueError(f"not a format-1 configuration of a known kind (model {old.get('model')!r})"
                         if isinstance(old, dict) else "not a format-1 configuration")
    kind = KINDS[old["model"]]
    branch = "objects" if which == "air" else "scenes"
    return {branch: {"kind": kind.name, **kind.upgrade_v1(old, which)},
            **{k: old[k] for k in _V1_CORE_FIELDS[which] if k in old}}
