"""Configuration: one tree of dataclasses, each field documented where it is defined.

The tree::

    RunConfig
      air: AIRConfig            the AIR core (presence chain, encoder, LSTM, baseline, likelihood)
        objects: ObjectsConfig  the kind's object model   (e.g. objects3d.Objects3DConfig)
      train: TrainConfig        how it is optimized
    DatasetConfig               what render-dataset makes
      scenes: ScenesConfig      how the kind's scenes are made (e.g. objects3d.Scenes3DConfig)

This module knows only the two base classes :class:`ObjectsConfig` and :class:`ScenesConfig`
and imports no kind; each kind (:mod:`inverse_air.kinds`) defines its own subclasses in its own
package. In JSON a kind's branch carries the kind's name (``{"kind": "3d", ...}``), which picks
the class when the tree is read back (:func:`from_dict`, given the registry's
:func:`~inverse_air.kinds.config_class`; :func:`inverse_air.kinds.read_config` does both).

Configs are plain data (no torch) so that they can be written into dataset manifests and
checkpoints as JSON and rebuilt from them.

**Validation.** Every config is checked when it is made, whoever makes it (a preset, a flag
through ``dataclasses.replace``, a manifest or a checkpoint through :func:`from_dict`): each
field's type from its annotation (``bool`` is not an ``int``; an ``int`` is accepted for a
``float`` and stored as one; floats must be finite; tuples element by element) and its range
where the annotation says one (``Annotated[int, Range(1)]``, the aliases below), then each
class's own cross-field rules (:meth:`Checked.check`). A bad value raises :class:`ConfigError`
naming the field; :func:`from_dict` prefixes the dotted path (``scenes.render.image_size``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Callable, ClassVar

from .errors import UserError


# ---------------------------------------------------------------------------- validation
class ConfigError(UserError, ValueError):
    """A configuration value of the wrong type or out of range.

    ``path`` is the dotted name of the field (``train.steps``), ``problem`` what is wrong with
    it (``must be at least 1, got 0``); the message is both."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path} {problem}")
        self.path, self.problem = path, problem

    @property
    def field(self) -> str:
        """The field's own name (the last part of :attr:`path`)."""
        return self.path.rsplit(".", 1)[-1]

    def inside(self, name: str) -> "ConfigError":
        """The same error seen from the config holding this one as field ``name``."""
        return ConfigError(f"{name}.{self.path}", self.problem)


@dataclass(frozen=True)
class Range:
    """The closed interval a number must lie in (``None``: unbounded on that side)."""

    low: float | None = None
    high: float | None = None

    def problem(self, value) -> str | None:
        if self.low is not None and value < self.low:
            return f"must be {self._text()}, got {value!r}"
        if self.high is not None and value > self.high:
            return f"must be {self._text()}, got {value!r}"
        return None

    def _text(self) -> str:
        if self.high is None:
            return f"at least {_number(self.low)}"
        if self.low is None:
            return f"at most {_number(self.high)}"
        return f"between {_number(self.low)} and {_number(self.high)}"


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) >= 10_000 else f"{value:g}"


@dataclass(frozen=True)
class OneOf:
    """The values a string (or a number) may take."""

    choices: tuple

    def problem(self, value) -> str | None:
        return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"


@dataclass(frozen=True)
class NonEmpty:
    """A tuple that must hold at least one element."""

    def problem(self, value) -> str | None:
        return None if len(value) else "must not be empty"


MAX_SEED = 2**63 - 1
"""Seeds are non-negative and fit a signed 64-bit integer (numpy's and torch's generators)."""

Positive = Annotated[int, Range(1)]
"""A count of things: 1 or more."""
Layer = Annotated[int, Range(1, 65536)]
"""A layer's width (units, channels, features)."""
Seed = Annotated[int, Range(0, MAX_SEED)]
Fraction = Annotated[float, Range(0.0, 1.0)]
"""A number in [0, 1]."""
Rate = Annotated[float, Range(0.0, 10.0)]
"""A learning rate."""
Pixels = Annotated[int, Range(8, 1024)]
"""An image side in pixels."""


class Checked:
    """Base of the config dataclasses: fields are validated when an instance is made (see the
    module docstring); subclasses add cross-field rules in :meth:`check`."""

    def __post_init__(self):
        validate(self)

    def check(self) -> None:
        """Cross-field rules; raise :class:`ConfigError` naming a field."""


def validate(config) -> None:
    """Check every field of a config dataclass (and of the plain dataclasses it holds) against
    its annotation, then the class's :meth:`Checked.check`.

    Raises:
        ConfigError: naming the field.
    """
    hints = typing.get_type_hints(type(config), include_extras=True)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        fixed = _checked(hints[f.name], value, f.name)
        if fixed is not value:  # an int given for a float, a list for a tuple
            object.__setattr__(config, f.name, fixed)
    if isinstance(config, Checked):
        config.check()


def check_field(cls: type, name: str, value) -> None:
    """Check one value for field ``name`` of config class ``cls`` (type and range, as when a
    config is made), before anything is sized by it.

    Raises:
        ConfigError: naming the field.
    """
    _checked(typing.get_type_hints(cls, include_extras=True)[name], value, name)


def check_value(hint, value, name: str):
    """``value`` checked against a field's annotation ``hint`` (e.g. :data:`Pixels`) as a
    config checks its field ``name``: for a flag whose range is a field's, checked before the
    config is made (before any work). Returns the value (converted where lossless).

    Raises:
        ConfigError: naming ``name``.
    """
    return _checked(hint, value, name)


def field_range(cls: type, name: str) -> Range:
    """The :class:`Range` that config class ``cls``'s field ``name`` must lie in."""
    hint = typing.get_type_hints(cls, include_extras=True)[name]
    return next(rule for rule in typing.get_args(hint)[1:] if isinstance(rule, Range))


def _checked(hint, value, path: str):
    """``value`` checked against ``hint`` (and converted where lossless); raises ConfigError."""
    rules = ()
    if typing.get_origin(hint) is Annotated:
        hint, *rules = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                value = _checked(option, value, path)
                break
            except ConfigError as e:
                problems.append(e.problem)
        else:
            raise ConfigError(path, problems[0] if problems else f"got {value!r}")
    elif origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(path, f"must be a list, got {_show(value)}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(args) != len(value):
            raise ConfigError(path, f"must hold {len(args)} values, got {len(value)}")
        value = tuple(_checked(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    elif hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {_show(value)}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {_show(value)}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise ConfigError(path, f"must be a finite number, got {value}")
        value = float(value) if isinstance(value, int) else value
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {_show(value)}")
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise ConfigError(path, f"must be a {hint.__name__}, got {_show(value)}")
        if not isinstance(value, Checked):  # a Checked one was validated when it was made
            try:
                validate(value)
            except ConfigError as e:
                raise e.inside(path) from None
    for rule in rules:
        problem = rule.problem(value)
        if problem:
            raise ConfigError(path, problem)
    return value


def _show(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


class KindConfig(Checked):
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

    @property
    def max_objects(self) -> int:
        """The most objects that one scene of these settings holds reliably (``--counts`` is
        checked against it before anything is made)."""
        raise NotImplementedError

    @property
    def scene_text(self) -> str:
        """What one scene is, for the message that refuses too many objects in it."""
        return f"a {self.kind} scene"

    @property
    def image_size(self) -> int:
        """Side of the (square) images made."""
        raise NotImplementedError

    def with_image_size(self, size: int) -> "ScenesConfig":
        """The same settings for images of side ``size``."""
        raise NotImplementedError


SPLITS = ("train", "test")
"""Dataset splits (``render-dataset --split``)."""


@dataclass(frozen=True)
class DatasetConfig(Checked):
    """What ``render-dataset`` makes. Saved in the dataset manifest; a directory holds one."""

    scenes: ScenesConfig
    """The kind's settings (3D: the renderer; 2D: the digits' composition)."""
    num: Annotated[int, Range(1, 10**12)] = 1000
    """Number of scenes (how many a machine can hold is checked when rendering)."""
    counts: Annotated[tuple[Annotated[int, Range(0)], ...], NonEmpty()] = (0, 1, 2, 3)
    """Object counts to draw from, uniformly."""
    seed: Seed = 0
    """Seed of the whole dataset; each shard derives its own generator from it."""
    shard_size: Annotated[int, Range(1, 10**6)] = 1000
    """Scenes per shard file; with the seed it fixes every byte, whatever the worker count."""
    split: Annotated[str, OneOf(SPLITS)] = "train"
    """"train" or "test": kinds with a pool of real objects (2D digits) draw them from disjoint
    pools; others record it only."""

    def check(self) -> None:
        limit = self.scenes.max_objects
        if self.max_count > limit:
            raise ConfigError("counts", f"must be at most {limit} (what fits {self.scenes.scene_text} reliably), "
                                        f"got {self.max_count}")

    @property
    def kind(self) -> str:
        return self.scenes.kind

    @property
    def max_count(self) -> int:
        return max(self.counts)


@dataclass(frozen=True)
class AIRConfig(Checked):
    """The AIR model: the generative model's priors and likelihood and the inference network.

    The inference network is recurrent: at each of ``max_steps`` steps an LSTM core reads image
    features (and what it has inferred so far) and outputs the presence of one more object and
    that object's latents. The object latents and the generative model that draws them are the
    object model's (``objects``; see :mod:`inverse_air.object_model`).
    """

    objects: ObjectsConfig
    """The kind's object model: its latents, priors, glimpse and generative model."""
    max_steps: Annotated[int, Range(1, 8)] = 3
    """N: the most objects one image may hold (length of the z_pres chain; ``train
    --max-objects``)."""
    count_prior: tuple[Fraction, ...] = (0.25, 0.25, 0.25, 0.25)
    """Prior probability of each object count 0..max_steps; the z_pres chain's per-step
    probabilities follow from it. Training sets it uniform over the dataset's counts
    (``train --count-prior dataset``) or over 0..max_steps (``--count-prior uniform``), floored
    at ``count_prior_floor``."""
    count_prior_floor: Annotated[float, Range(0.0, 0.5)] = 0.01
    """Smallest prior probability of any count 0..max_steps (keeps every count possible)."""
    dair: bool = False
    """DAIR: each step also sees the image minus the reconstruction of the objects found so far."""
    pixel_sigma: Annotated[float, Range(1e-4, 10.0)] = 0.1
    """Standard deviation of the Gaussian pixel likelihood (images in [0, 1])."""
    encoder_channels: tuple[Layer, ...] = (16, 32, 64, 64)
    """Channels of the stride-2 convolutions of the image encoder (none: one linear layer
    on the pixels)."""
    encoder_features: Layer = 256
    """Size of the image encoder's output vector."""
    lstm_size: Layer = 256
    """Hidden size of the LSTM core."""
    baseline_channels: tuple[Layer, ...] = (16, 32, 32)
    """Channels of the score-function baseline's own (smaller) image encoder."""

    def check(self) -> None:
        if len(self.count_prior) != self.max_steps + 1:
            raise ConfigError("count_prior", f"needs {self.max_steps + 1} entries (counts 0..{self.max_steps}), "
                                             f"got {len(self.count_prior)}")
        if sum(self.count_prior) <= 0 and self.count_prior_floor <= 0:
            raise ConfigError("count_prior", "must give some count a positive probability")

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
class TrainConfig(Checked):
    """How ``train`` optimizes an AIR model.

    Phases (unsupervised): the first ``sleep_fraction`` of the steps fit the inference network
    to scenes sampled from the generative model itself (prior sample -> hard render ->
    maximize log q(scene | image)); they need neither labels nor renderer gradients, and only
    a kind whose generative model is fully specified (3D) has them. The rest maximize the ELBO
    on the dataset's images, with reparameterized gradients for continuous latents and
    score-function gradients (learned baseline) for discrete ones. ``supervised`` instead fits
    log q(labels | image) on the dataset's ground truth.
    """

    steps: Annotated[int, Range(1, 10**9)] = 5000
    """Total optimizer steps (all phases); each kind's preset sets its own (``Kind.train``).
    Measured lengths and what they reach: docs/performance.md."""
    batch_size: Positive = 64
    """Images per step in the sleep and supervised phases."""
    elbo_batch_size: Positive = 16
    """Images per step in the ELBO phase (soft rendering is the cost)."""
    sleep_fraction: Fraction = 0.98
    """Fraction of ``steps`` spent in the sleep phase before the ELBO phase (0 = ELBO only)."""
    sleep_pool: Annotated[int, Range(0, 10**7)] = 32768
    """Sleep scenes kept rendered (0: every sleep step renders a fresh batch). Each step replaces
    ``sleep_refresh`` of them with fresh draws from the prior and trains on a batch picked
    from the pool, so rendering, most of a sleep step's cost, is spent on fewer scenes
    (docs/design-notes.md measures the gain); each scene is used about
    ``sleep_pool / sleep_refresh * batch_size / sleep_pool`` times. A run never keeps more
    scenes than it would draw fresh."""
    sleep_refresh: Positive = 16
    """Fresh prior scenes rendered into the pool at each sleep step."""
    lr: Rate = 1e-3
    """Adam learning rate of the inference network in the sleep and supervised phases."""
    elbo_lr: Rate = 1e-4
    """Adam learning rate of the inference network in the ELBO phase."""
    baseline_lr: Rate = 1e-2
    """Adam learning rate of the score-function baseline (its own parameter group)."""
    score_signal: Annotated[str, OneOf(("normalized", "nats"))] = "normalized"
    """How the score-function term weighs a discrete choice's advantage ``L - b``: divided by
    the learning signals' running spread ``s`` (``normalized``, NVIL's scaling), or in nats as
    the ELBO's own gradient does (``nats``). The reparameterized terms are in nats, so
    ``normalized`` weighs presence and identity ``1 / s`` times less beside them (``s`` is about
    1,000 nats for 64x64 RGB at pixel sigma 0.1). Measured on 3D ELBO fine-tuning, neither
    kept identity better across seeds; in nats a 2D folder run switched every object off by
    step 250 (docs/performance.md)."""
    lr_decay_to: Fraction = 0.1
    """Each phase's learning rate decays linearly to this fraction of its start."""
    presence_anneal_steps: Annotated[int, Range(0, 10**9)] = 0
    """ELBO steps over which the presence prior is annealed from ``presence_anneal_start`` to
    the model's own (:func:`inverse_air.schedules.annealed_presence_prior`; 0: the model's own
    from the first step). Early objects that explain little are then not switched off for their
    KL before the decoder has learned to draw them."""
    presence_anneal_start: Annotated[float, Range(0.5, 0.9999)] = 0.99
    """Each step's presence probability at the start of the anneal."""
    teacher_images: Annotated[int, Range(0, 10**6)] = 0
    """ELBO-phase images per step (the first of the batch) that the count search of ``decompose
    --refine`` (:mod:`inverse_air.refine`: objects removed where not worth their cost, added where
    the image is least explained; in 3D, where they explain half of what they draw) answers;
    where its count or a present object differs from the one pass's, the inference network is
    also taught its answer (:func:`inverse_air.teacher.search_answer`: every object's identity
    tried, the objects in teacher forcing's order): ``teacher_weight`` times ``-log q(answer | image)`` per
    image searched, in nats beside the ELBO's. Label-free (the search is scored by the model's
    own energy). 0: off. The metrics' ``search_changed`` is the fraction of these images whose
    answer the search changed: how far the one pass is from the search."""
    teacher_from: Annotated[int, Range(0, 10**9)] = 0
    """ELBO steps before the search teaches (before then the decoder draws too little for the
    energy to rank counts)."""
    teacher_weight: Annotated[float, Range(0.0, 1e6)] = 10.0
    """Weight of the search's answer's ``-log q`` beside the ELBO (both in nats per image)."""
    teacher_pool: Annotated[int, Range(0, 10**5)] = 0
    """Teach the last this many of the search's lessons (images and answers) at each step, not
    only this step's: each searched answer is taught many times, so the network sees a large
    batch of answers a step for the search's cost of ``teacher_images`` (kept in the run
    directory's ``teacher_pool.pt`` beside the checkpoint: a resumed run goes on with it). 0: only this step's."""
    teacher_steps: Annotated[int, Range(0, 1000)] = 0
    """Gradient steps through the renderer (``decompose --refine``'s) on every continuous latent
    of the search's answers before they are taught: poses as the pixels place them, not as the
    one pass did (each step one differentiable render of the ``teacher_images``)."""
    teacher_workers: Annotated[int, Range(0, 64)] = 0
    """Processes that run the search beside training, each on one thread, answering batches of
    ``teacher_images`` training images of their own with the latest weights
    (:mod:`inverse_air.search_worker`); the training step then does not search and teaches the
    lessons that have arrived. 1 puts a 2-core machine's second core to work (3D's rasterizer
    runs on one thread). Such a run is not repeatable step for step. 0: the step searches."""
    weight_average: Annotated[float, Range(0.0, 0.9999)] = 0.0
    """Decay of an exponential moving average of the weights (:mod:`inverse_air.averaging`;
    e.g. 0.99: about the last 100 steps) that the run saves as its model, monitors, draws and
    (``teacher_images``) searches from; the weights as trained are kept beside it to resume.
    The count a one pass reads from images alone swings from step to step; the average is
    steadier. 0: the weights as trained."""
    clip_norm: Annotated[float, Range(1e-6, 1e6)] = 10.0
    """Gradient-norm clipping of the inference network (and, separately, of the baseline)."""
    seed: Seed = 0
    """Seed of everything random in training (initialization, batches, samples)."""
    supervised: bool = False
    """Train on the dataset's ground-truth labels instead (the paper's supervised comparison)."""
    log_every: Positive = 50
    """Steps between lines of metrics.jsonl / TensorBoard points."""
    checkpoint_every: Positive = 500
    """Steps between checkpoints (also written at the end and on Ctrl-C)."""
    image_every: Positive = 1000
    """Steps between PNG snapshots of inputs, reconstructions and inferred objects."""

    @property
    def sleep_steps(self) -> int:
        return 0 if self.supervised else int(round(self.steps * self.sleep_fraction))

    def check(self) -> None:
        if self.teacher_workers and not self.teacher_images:
            raise ConfigError("teacher_workers", "search batches of teacher_images: set teacher_images too")


@dataclass(frozen=True)
class RunConfig(Checked):
    """Everything a training run (and its checkpoints) needs to rebuild the model."""

    air: AIRConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str = ""
    """Training dataset directory or folder of images (absolute: a run resumes from any working
    directory)."""
    init: str = ""
    """The checkpoint whose model the run started from (``train --init``; absolute), or empty
    for a model trained from scratch. Only a record: the run's own checkpoints hold its weights."""


FLAG_NAMES = {"canvas_size": "image_size", "max_steps": "max_objects"}
"""Config fields that a command-line flag of another name sets (``--max-objects`` sets
``max_steps``), for messages that name the flag."""


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


def from_dict(cls, data: dict, kind_class: Callable[[type, object], type]):
    """Rebuild a config dataclass (and its nested configs) from :func:`to_dict` output,
    validating every value (see the module docstring).

    ``kind_class(base, name)`` is the subclass of ``base`` (:class:`ObjectsConfig` or
    :class:`ScenesConfig`) that kind ``name`` (a branch's ``"kind"``, as read) defines; it
    raises :class:`ConfigError` for an unknown kind. The kinds are not this module's to know:
    :func:`inverse_air.kinds.read_config` passes the registry's.

    Raises:
        ConfigError: unknown or missing keys (a file from another version is reported rather
            than half-read), an unknown kind, or a value of the wrong type or out of range;
            its ``path`` is the dotted name of the field.
    """
    if not isinstance(data, dict):
        raise ConfigError(cls.__name__, f"must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names - ({"kind"} if issubclass(cls, KindConfig) else set())
    if unknown:
        raise ConfigError(sorted(map(str, unknown))[0], f"is an unknown {cls.__name__} field")
    kwargs = {}
    for name, value in data.items():
        if name in names:
            try:
                kwargs[name] = _coerce(hints[name], value, kind_class)
            except ConfigError as e:
                raise e.inside(name) from None
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(missing[0], "is missing")
    return cls(**kwargs)


def _coerce(hint, value, kind_class):
    if isinstance(hint, type) and issubclass(hint, KindConfig) and isinstance(value, dict):
        return from_dict(kind_class(hint, value.get("kind")), value, kind_class)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, kind_class)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value, kind_class)
    return value
