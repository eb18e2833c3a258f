"""What to train: the flags, the data and a checkpoint made into one run configuration.

- a new run (:func:`prepare_run`): the kind's presets, what the data fix (a dataset's
  settings, a folder's image size and channels, the kind's folder sizes), the flags' overrides
  and the prior over object counts (:func:`count_prior_for`);
- a run from a checkpoint's model (``train --init``): that model as it is, trained on the data;
- a resumed run (:func:`resume_config`): the checkpoint's configuration, only longer; every
  flag that asks for something else is refused by name rather than ignored.

The trainer (:mod:`inverse_air.train`) takes the configuration and trains; nothing here trains.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint
from .config import FLAG_NAMES, AIRConfig, Pixels, RunConfig, check_field, check_value
from .data import MANIFEST, Dataset, dataset_counts, is_dataset, open_dataset
from .errors import UserError
from .kinds import Kind, get_kind
from .train import checkpoint_to_resume

COUNT_PRIORS = ("dataset", "uniform", "geometric")
"""Where the prior over object counts comes from (``train --count-prior``)."""


def count_prior_for(counts: tuple[int, ...] | None, max_steps: int, source: str = "dataset",
                    where: str = "the dataset", ratio: float = 0.01) -> tuple[float, ...]:
    """The unsupervised model's prior over counts 0..``max_steps``: uniform over the counts the
    dataset holds (``"dataset"``; other counts keep only the floor of
    :attr:`~inverse_air.config.AIRConfig.count_prior_floor`), uniform over every count
    (``"uniform"``: no knowledge of which counts occur, e.g. to test generalization to
    counts absent from training), or geometric (``"geometric"``, ``P(n) ∝ ratio ** n``: each
    object costs ``-log(ratio)`` nats, the kind's :attr:`~inverse_air.kinds.Kind.geometric_ratio`;
    the default for a 2D folder of images nobody counted). ``counts`` is
    None for a dataset without labels (``where`` names it in messages)."""
    if source not in COUNT_PRIORS:
        raise UserError(f"--count-prior must be one of {', '.join(COUNT_PRIORS)}, got {source!r}")
    if counts is None:
        if source == "dataset":
            raise UserError(f"--count-prior dataset: {where} has no labels to take the counts from "
                            f"(a folder's labels.jsonl); use --count-prior geometric or uniform")
    elif max(counts) > max_steps:
        raise UserError(f"{where} holds scenes of up to {max(counts)} objects; the model infers "
                        f"at most {max_steps} (--max-objects)")
    if source == "uniform":
        return tuple(1.0 / (max_steps + 1) for _ in range(max_steps + 1))
    if source == "geometric":
        p = ratio ** np.arange(max_steps + 1, dtype=np.float64)
        return tuple(float(v) for v in p / p.sum())
    return tuple(1.0 / len(counts) if n in counts else 0.0 for n in range(max_steps + 1))


def with_count_prior(air: AIRConfig, prior: tuple[float, ...]) -> AIRConfig:
    """``air`` with the count prior ``prior``; the floor (``count_prior_floor``) is lowered to
    the prior's smallest positive entry when that is below it (a geometric prior gives every
    count some probability already, and a floor would flatten its tail)."""
    positive = [p for p in prior if p > 0]
    floor = min(air.count_prior_floor, min(positive)) if len(positive) == len(prior) else air.count_prior_floor
    return dataclasses.replace(air, count_prior=prior, count_prior_floor=floor)


def run_config_for(data_dir: str | os.PathLike, model: str | None, train_overrides: dict,
                   air_overrides: dict, count_prior: str | None = None, **options) -> RunConfig:
    """The run configuration for training kind ``model`` on a dataset or a folder of images
    (:func:`prepare_run`, whose keyword arguments ``options`` takes)."""
    return prepare_run(data_dir, model, train_overrides, air_overrides, count_prior, **options)[0]


def prepare_run(data_dir: str | os.PathLike, model: str | None, train_overrides: dict, air_overrides: dict,
                count_prior: str | None = None, *, image_size: int | None = None,
                init: str | os.PathLike | None = None, progress: bool = False,
                **sizes: float | None) -> tuple[RunConfig, Dataset]:
    """The run configuration for training kind ``model`` on a dataset (or a folder of images),
    and the dataset opened for it.

    A new model: the kind's presets (``Kind.air``, or ``Kind.folder_air`` for a folder of
    images; ``Kind.train``, or ``Kind.folder_train``), then what the data fix: a dataset's settings
    (``Kind.fit_to_data``: 3D renderer; 2D canvas and the prior scale of a digit) or a folder's
    images (``Kind.fit_to_images``: their size, ``image_size`` or derived, and channels, and
    ``sizes``: the flags of the kind's :attr:`~inverse_air.kinds.Kind.folder_sizes` by name,
    2D ``object_size`` and ``window_size`` in pixels, derived from the size where None); then
    ``*_overrides`` (fields of ``TrainConfig`` and ``AIRConfig``), and the count prior
    (:func:`count_prior_for`; default: the dataset's counts; for a folder
    ``Kind.folder_count_prior``).

    ``init`` (a checkpoint): its model (configuration and weights) trained on the data from
    step 0 with a new optimizer; the data are read at its image size and channels, training
    is the kind's preset but ELBO only (``sleep_fraction`` 0) unless overridden, and settings
    of the model's architecture (``image_size``, ``sizes``, any ``air_overrides`` that differ
    from the checkpoint's) are refused; ``count_prior`` given replaces the checkpoint's.

    Raises:
        UserError: an unknown kind, data of another kind, a setting the kind or the checkpoint
            does not take, or counts the model cannot infer.
    """
    if image_size is not None:  # before any image is read: the range of every image side
        check_value(Pixels, image_size, "image_size")
    if init is not None:
        return _prepare_init(init, data_dir, model, train_overrides, air_overrides, count_prior,
                             dict(image_size=image_size, **sizes), progress)
    kind = get_kind(model or "3d")
    check_overrides(kind.air, air_overrides)  # before the data are read
    made = (Path(data_dir) / MANIFEST).exists()  # a dataset render-dataset made, not a folder of images
    preset = kind.train if made or kind.folder_train is None else kind.folder_train
    train = dataclasses.replace(preset, **train_overrides)  # checked before any image is read
    folder_sizes = _folder_sizes(kind, sizes)
    if kind.fit_to_images is None:
        if image_size is not None and image_size != kind.air.image_size:
            raise UserError(f"--image-size {image_size}: the {kind.name} model reads {kind.air.image_size}x"
                            f"{kind.air.image_size} images (a folder's images are brought to that size)")
        size, channels = kind.air.image_size, kind.air.channels
    else:
        size, channels = image_size, None
    dataset = open_dataset(data_dir, kind.name, size, channels, progress=progress)
    dataset.check_kind(kind.name, "--model")
    air = kind.air if dataset.config is not None or kind.folder_air is None else kind.folder_air
    if dataset.config is not None:  # a dataset render-dataset made: its settings
        if image_size is not None:
            raise UserError(f"--image-size: {data_dir} is a dataset of {dataset.image_size}x{dataset.image_size} "
                            f"images (made by render-dataset); the flag is for folders of images")
        air = kind.fit_to_data(air, dataset.config)
    if kind.fit_to_images is not None and (dataset.config is None or folder_sizes is not None):
        air = kind.fit_to_images(air, dataset.image_size, dataset.channels, folder_sizes)
    air = replace_fields(air, air_overrides)
    source = count_prior or ("dataset" if dataset.config is not None else kind.folder_count_prior)
    air = with_count_prior(air, count_prior_for(dataset.counts, air.max_steps, source, str(data_dir),
                                                kind.geometric_ratio))
    dataset.check_fits(air, "--model")
    return RunConfig(air=air, train=train, data=str(Path(data_dir).absolute())), dataset


def _folder_sizes(kind: Kind, sizes: dict[str, float | None]):
    """The kind's typed folder sizes (:attr:`~inverse_air.kinds.Kind.folder_sizes`) of the
    flags given (None: left out), or None when none is given.

    Raises:
        UserError: a size the kind does not take; ConfigError: a size out of its range.
    """
    given = {name: value for name, value in sizes.items() if value is not None}
    if not given:
        return None
    known = {f.name for f in dataclasses.fields(kind.folder_sizes)} if kind.folder_sizes else set()
    for name in given:
        if name not in known:
            raise UserError(f"{_flag(name)}: the {kind.name} model takes no such size (it draws no windows)")
    return kind.folder_sizes(**given)


def _flag(name: str) -> str:
    """The command-line flag that sets config field ``name``."""
    return "--" + FLAG_NAMES.get(name, name).replace("_", "-")


def _prepare_init(init, data_dir, model, train_overrides: dict, air_overrides: dict, count_prior: str | None,
                  sizes: dict, progress: bool) -> tuple[RunConfig, Dataset]:
    """:func:`prepare_run` for ``init`` (see there)."""
    saved: RunConfig = load_checkpoint(init, expect_kind=model)["config"]
    air = saved.air
    for name, value in sizes.items():
        if value is not None and not (name == "image_size" and value == air.image_size):
            raise UserError(f"{_flag(name)} {value:g}: --init {init} fixes the model "
                            f"({air.image_size}x{air.image_size}x{air.channels} images); leave it out")
    for name, value in air_overrides.items():
        kept = getattr(air, name) if hasattr(air, name) else getattr(air.objects, name, None)
        if kept != value:
            flag = _flag(name)
            raise UserError(f"{flag} {value}: the model of --init {init} has {kept!r}; --init trains that model "
                            f"as it is (leave {flag} out, or train a new model without --init)")
    kind = get_kind(air.kind)
    train = dataclasses.replace(kind.train, **{"sleep_fraction": 0.0, **train_overrides})
    dataset = open_dataset(data_dir, kind.name, air.image_size, air.channels, progress=progress)
    dataset.check_kind(kind.name, f"--init {init}")
    dataset.check_fits(air, f"--init {init}")
    if count_prior is not None:
        air = with_count_prior(air, count_prior_for(dataset.counts, air.max_steps, count_prior, str(data_dir),
                                                    kind.geometric_ratio))
    elif dataset.counts is not None:
        count_prior_for(dataset.counts, air.max_steps, "uniform", str(data_dir))  # counts the model can infer
    return RunConfig(air=air, train=train, data=str(Path(data_dir).absolute()),
                     init=str(Path(init).absolute())), dataset


def resume_config(out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                  model: str | None = None, train_overrides: dict | None = None,
                  air_overrides: dict | None = None, count_prior: str | None = None,
                  init: str | os.PathLike | None = None, image_size: int | None = None,
                  **sizes: float | None) -> RunConfig:
    """The configuration to continue the run in ``out_dir`` with: its checkpoint's, with
    ``steps`` (the only setting a resumed run may change) from ``train_overrides``.

    Every other setting given (``data_dir``, ``model``, the overrides, ``count_prior``,
    ``init``, ``image_size`` and the ``sizes`` of :func:`prepare_run`) must agree with the
    checkpoint's, so that none is silently ignored; ``data_dir`` may name the run's dataset
    moved elsewhere (when the stored path no longer holds one).

    Raises:
        UserError: no checkpoint to resume, or a setting that differs from the run's, named
            as its flag.
    """
    path = checkpoint_to_resume(out_dir)
    saved: RunConfig = load_checkpoint(path, expect_kind=model)["config"]
    wanted = dict(train_overrides or {})
    steps = wanted.pop("steps", saved.train.steps)

    def refuse(flag: str, given, kept) -> None:
        if isinstance(given, bool):  # a switch: --dair / --no-dair
            switch = lambda on: flag if on else flag.replace("--", "--no-", 1)
            flag, given, kept = switch(given), "", switch(kept)
        raise UserError(f"{flag}{' ' + str(given) if given != '' else ''}: the run in {out_dir} was trained "
                        f"with {kept}; --resume continues it as it was (only --steps may change), or start a "
                        f"new run with another --out")

    for name, value in wanted.items():
        if getattr(saved.train, name) != value:
            refuse(_flag(name), value, getattr(saved.train, name))
    for name, value in (air_overrides or {}).items():
        kept = getattr(saved.air, name) if hasattr(saved.air, name) else getattr(saved.air.objects, name)
        if kept != value:
            refuse(_flag(name), value, kept)
    air = saved.air
    if image_size is not None and image_size != air.image_size:
        refuse("--image-size", image_size, f"--image-size {air.image_size}")
    given = _folder_sizes(get_kind(air.kind), sizes)
    if given is not None:
        runs = type(given).of(air.objects)
        for field in dataclasses.fields(given):
            value, kept = getattr(given, field.name), getattr(runs, field.name)
            if value is not None and value != kept:
                refuse(_flag(field.name), sizes[field.name], f"{_flag(field.name)} {kept:g}")
    if init is not None and Path(init).absolute() != Path(saved.init or "/nonexistent").absolute():
        refuse("--init", init, f"--init {saved.init}" if saved.init else "no --init")
    data = saved.data
    if data_dir is not None and Path(data_dir).resolve() != Path(saved.data).resolve():
        if is_dataset(saved.data):
            refuse("--data", data_dir, saved.data)
        open_dataset(data_dir, air.kind, air.image_size, air.channels).check_fits(air, str(path))  # moved
        data = str(Path(data_dir).absolute())
    if count_prior is not None:
        prior = count_prior_for(dataset_counts(data, air.kind), air.max_steps, count_prior, str(data),
                                get_kind(air.kind).geometric_ratio)
        if not np.allclose(prior, air.count_prior):
            refuse("--count-prior", count_prior, f"the prior {list(air.count_prior)}")
    return dataclasses.replace(saved, data=data, train=dataclasses.replace(saved.train, steps=steps))


def check_overrides(air: AIRConfig, overrides: dict) -> tuple[set[str], set[str]]:
    """Check ``overrides`` (fields of ``AIRConfig`` or of its ``objects`` config) by the
    fields' types and ranges before anything is built from them (``--max-objects`` sizes the
    count prior); returns the names of both classes' fields.

    Raises:
        UserError: a name that is neither; ConfigError: a value out of its field's range.
    """
    own = {f.name for f in dataclasses.fields(air)}
    theirs = {f.name for f in dataclasses.fields(air.objects)}
    unknown = set(overrides) - own - theirs
    if unknown:
        raise UserError(f"the {air.kind} model has no setting {', '.join(sorted(unknown))}")
    for name, value in overrides.items():
        check_field(type(air) if name in own else type(air.objects), name, value)
    return own, theirs


def replace_fields(air: AIRConfig, overrides: dict) -> AIRConfig:
    """``air`` with ``overrides`` replaced: each name a field of ``AIRConfig`` or of its
    ``objects`` config.

    Raises:
        UserError: a name that is neither.
    """
    own, theirs = check_overrides(air, overrides)
    objects = dataclasses.replace(air.objects, **{k: v for k, v in overrides.items() if k in theirs and k not in own})
    own_overrides = {k: v for k, v in overrides.items() if k in own}
    steps = own_overrides.get("max_steps", air.max_steps)
    if "count_prior" not in own_overrides and len(air.count_prior) != steps + 1:  # uniform until set
        own_overrides["count_prior"] = tuple(1.0 / (steps + 1) for _ in range(steps + 1))
    return dataclasses.replace(air, objects=objects, **own_overrides)
