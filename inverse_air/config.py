"""Configuration: one tree of dataclasses, each field documented where it is defined.

The tree::

    RunConfig
      air: AIRConfig            the AIR core (presence chain, encoder, LSTM, baseline, likelihood)
        objects: ObjectsConfig  the kind's object model   (e.g. objects3d.Objects3DConfig)
      train: TrainConfig        how it is optimized
    DatasetConfig               what render-dataset makes
      scenes: ScenesConfig      how the kind's scenes are made (e.g. objects3d.Scenes3DConfig)

The core knows only the two base classes :class:`ObjectsConfig` and :class:`ScenesConfig`;
each kind (:mod:`inverse_air.kinds`) defines its own subclasses in its own package. In JSON a
kind's branch carries the kind's name (``{"kind": "3d", ...}``), which picks the class when the
tree is read back (:func:`from_dict`).

Configs are plain data (no torch) so that they can be written into dataset manifests and
checkpoints as JSON and rebuilt from them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import ClassVar


class KindConfig:
    """A kind-specific branch of the tree; subclasses set :attr:`kind`."""

    kind: ClassVar[str] = ""
    """The kind's name in :data:`inverse_air.kinds.KINDS` (written into JSON as ``"kind"``)."""


@dataclass(frozen=True)
class ObjectsConfig(KindConfig):
    """Base of each kind's object-model configuration (priors, glimpse, generative model)."""

    @property
    def image_size(self) -> int:
        """Side S of the (square) images the model reads and draws."""
        raise NotImplementedError

    @property
    def channels(self) -> int:
        """Image channels C."""
        raise NotImplementedError


@dataclass(frozen=True)
class ScenesConfig(KindConfig):
    """Base of each kind's dataset settings: how ``render-dataset`` makes one scene."""

    max_objects: ClassVar[int] = 0
    """The most objects one scene of this kind can hold (``--counts`` is checked against it)."""

    @property
    def image_size(self) -> int:
        """Side of the (square) images made."""
        raise NotImplementedError

    def with_image_size(self, size: int) -> "ScenesConfig":
        """The same settings for images of side ``size``."""
        raise NotImplementedError


@dataclass(frozen=True)
class DatasetConfig:
    """What ``render-dataset`` makes. Saved in the dataset manifest; a directory holds one."""

    scenes: ScenesConfig
    """The kind's settings (3D: the renderer; 2D: the digits' composition)."""
    num: int = 1000
    """Number of scenes."""
    counts: tuple[int, ...] = (0, 1, 2, 3)
    """Object counts to draw from, uniformly."""
    seed: int = 0
    """Seed of the whole dataset; each shard derives its own generator from it."""
    shard_size: int = 1000
    """Scenes per shard file; with the seed it fixes every byte, whatever the worker count."""
    split: str = "train"
    """"train" or "test": kinds with a pool of real objects (2D digits) draw them from disjoint
    pools; others record it only."""

    @property
    def kind(self) -> str:
        return self.scenes.kind

    @property
    def max_count(self) -> int:
        return max(self.counts)


@dataclass(frozen=True)
class AIRConfig:
    """The AIR model: the generative model's priors and likelihood and the inference network.

    The inference network is recurrent: at each of ``max_steps`` steps an LSTM core reads image
    features (and what it has inferred so far) and outputs the presence of one more object and
    that object's latents. The object latents and the generative model that draws them are the
    object model's (``objects``; see :mod:`inverse_air.object_model`).
    """

    objects: ObjectsConfig
    """The kind's object model: its latents, priors, glimpse and generative model."""
    max_steps: int = 3
    """N: the most objects one image may hold (length of the z_pres chain)."""
    count_prior: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    """Prior probability of each object count 0..max_steps; the z_pres chain's per-step
    probabilities follow from it. Training sets it uniform over the dataset's counts
    (``train --count-prior dataset``) or over 0..max_steps (``--count-prior uniform``), floored
    at ``count_prior_floor``."""
    count_prior_floor: float = 0.01
    """Smallest prior probability of any count 0..max_steps (keeps every count possible)."""
    dair: bool = False
    """DAIR: each step also sees the image minus the reconstruction of the objects found so far."""
    pixel_sigma: float = 0.1
    """Standard deviation of the Gaussian pixel likelihood (images in [0, 1])."""
    encoder_channels: tuple[int, ...] = (16, 32, 64, 64)
    """Channels of the stride-2 convolutions of the image encoder (none: one linear layer
    on the pixels)."""
    encoder_features: int = 256
    """Size of the image encoder's output vector."""
    lstm_size: int = 256
    """Hidden size of the LSTM core."""
    baseline_channels: tuple[int, ...] = (16, 32, 32)
    """Channels of the score-function baseline's own (smaller) image encoder."""

    @property
    def kind(self) -> str:
        return self.objects.kind

    @property
    def image_size(self) -> int:
        """Side S of the (square) images the model reads and draws."""
        return self.objects.image_size

    @property
    def channels(self) -> int:
        """Image channels C."""
        return self.objects.channels


@dataclass(frozen=True)
class TrainConfig:
    """How ``train`` optimizes an AIR model.

    Phases (unsupervised): the first ``sleep_fraction`` of the steps fit the inference network
    to scenes sampled from the generative model itself (prior sample -> hard render ->
    maximize log q(scene | image)); they need neither labels nor renderer gradients, and only
    a kind whose generative model is fully specified (3D) has them. The rest maximize the ELBO
    on the dataset's images, with reparameterized gradients for continuous latents and
    score-function gradients (learned baseline) for discrete ones. ``supervised`` instead fits
    log q(labels | image) on the dataset's ground truth.
    """

    steps: int = 5000
    """Total optimizer steps (all phases). 3D: 5,000 steps take about 23 minutes on one CPU
    core (two seeds side by side on 2 cores) and reach the benchmark's targets on every seed
    tried (README, "3D AIR")."""
    batch_size: int = 64
    """Images per step in the sleep and supervised phases."""
    elbo_batch_size: int = 16
    """Images per step in the ELBO phase (soft rendering is the cost)."""
    sleep_fraction: float = 0.98
    """Fraction of ``steps`` spent in the sleep phase before the ELBO phase (0 = ELBO only)."""
    sleep_pool: int = 32768
    """Sleep scenes kept rendered (0: every sleep step renders a fresh batch). Each step replaces
    ``sleep_refresh`` of them with fresh draws from the prior and trains on a batch picked
    from the pool, so rendering, most of a sleep step's cost, is spent on fewer scenes
    (3D, batch 64: about 1.9x the steps per hour); each scene is used about
    ``sleep_pool / sleep_refresh * batch_size / sleep_pool`` times. A run never keeps more
    scenes than it would draw fresh."""
    sleep_refresh: int = 16
    """Fresh prior scenes rendered into the pool at each sleep step."""
    lr: float = 1e-3
    """Adam learning rate of the inference network in the sleep and supervised phases."""
    elbo_lr: float = 1e-4
    """Adam learning rate of the inference network in the ELBO phase."""
    baseline_lr: float = 1e-2
    """Adam learning rate of the score-function baseline (its own parameter group)."""
    lr_decay_to: float = 0.1
    """Each phase's learning rate decays linearly to this fraction of its start."""
    clip_norm: float = 10.0
    """Gradient-norm clipping of the inference network (and, separately, of the baseline)."""
    seed: int = 0
    """Seed of everything random in training (initialization, batches, samples)."""
    supervised: bool = False
    """Train on the dataset's ground-truth labels instead (the paper's supervised comparison)."""
    log_every: int = 50
    """Steps between lines of metrics.jsonl / TensorBoard points."""
    checkpoint_every: int = 500
    """Steps between checkpoints (also written at the end and on Ctrl-C)."""
    image_every: int = 1000
    """Steps between PNG snapshots of inputs, reconstructions and inferred objects."""

    @property
    def sleep_steps(self) -> int:
        return 0 if self.supervised else int(round(self.steps * self.sleep_fraction))


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run (and its checkpoints) needs to rebuild the model."""

    air: AIRConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str = ""
    """Training dataset directory."""


# ---------------------------------------------------------------------------- JSON
def to_dict(config) -> dict:
    """A JSON-ready dict of a config dataclass: nested configs become dicts (a kind's branch
    with its ``"kind"``), tuples become lists."""
    out = {"kind": config.kind} if isinstance(config, KindConfig) else {}
    for f in dataclasses.fields(config):
        out[f.name] = _plain(getattr(config, f.name))
    return out


def _plain(value):
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def from_dict(cls, data: dict):
    """Rebuild a config dataclass (and its nested configs) from :func:`to_dict` output.

    Raises:
        ValueError: unknown keys (a file from another version is reported rather than
            half-read) or an unknown kind.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names - ({"kind"} if issubclass(cls, KindConfig) else set())
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {name: _coerce(hints[name], value) for name, value in data.items() if name in names}
    return cls(**kwargs)


def _coerce(hint, value):
    if isinstance(hint, type) and issubclass(hint, KindConfig) and isinstance(value, dict):
        return from_dict(_kind_class(hint, value.get("kind")), value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value)
    return value


def _kind_class(base: type, name) -> type:
    """The subclass of ``base`` that kind ``name`` defines."""
    from .kinds import KINDS

    if name not in KINDS:
        raise ValueError(f"unknown kind {name!r} (known: {', '.join(KINDS)})")
    kind = KINDS[name]
    for cls in (kind.objects_config, kind.scenes_config):
        if issubclass(cls, base):
            return cls
    raise ValueError(f"kind {name!r} has no {base.__name__}")


# ---------------------------------------------------------------------------- format 1
_V1_CORE_FIELDS = {
    "air": ("max_steps", "count_prior", "count_prior_floor", "dair", "pixel_sigma", "encoder_channels",
            "encoder_features", "lstm_size", "baseline_channels"),
    "dataset": ("num", "counts", "seed", "shard_size", "split"),
}


def upgrade_v1(old: dict, which: str) -> dict:
    """A format-1 ``AIRConfig`` (``which="air"``) or ``DatasetConfig`` (``"dataset"``) dict,
    which held every kind's fields side by side and named the kind ``model``, in today's
    layout (the kind's own fields moved to its branch by ``Kind.upgrade_v1``).

    Raises:
        ValueError: not a format-1 dict of a known kind.
    """
    from .kinds import KINDS

    if not isinstance(old, dict) or old.get("model") not in KINDS:
        raise ValueError(f"not a format-1 configuration of a known kind (model {old.get('model')!r})"
                         if isinstance(old, dict) else "not a format-1 configuration")
    kind = KINDS[old["model"]]
    branch = "objects" if which == "air" else "scenes"
    return {branch: {"kind": kind.name, **kind.upgrade_v1(old, which)},
            **{k: old[k] for k in _V1_CORE_FIELDS[which] if k in old}}
