"""The 2D kind (multi-MNIST) as one record (:class:`inverse_air.kinds.Kind`): presets, object
model, datasets, ground truth, metrics and how results read. Importing this module, and
making 2D datasets, imports no torch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import AIRConfig, ConfigError, DatasetConfig, Range, TrainConfig, field_range
from ..errors import UserError
from ..kinds import Codec, Kind, Labels, lazy
from .config import Compose2DConfig, Objects2DConfig, WindowSizes
from .metrics import scene_metrics_2d

MODELS = Path(__file__).resolve().parent / "models"
"""The shipped models of this kind (package data), each with its model card."""


def fit_to_data(air: AIRConfig, data: DatasetConfig) -> AIRConfig:
    """The canvas size, and the prior scale of a window from the composer's digit size (a
    digit's 28x28 cell shrinks by ``digit_scale_mean`` on average)."""
    compose = data.scenes
    scale = 28.0 / compose.digit_scale_mean / compose.canvas_size
    return replace(air, objects=replace(air.objects, canvas_size=compose.canvas_size,
                                        scale_prior_mean=round(scale, 4)))


OBJECT_FRACTION = 0.25
"""A folder's default object size: a quarter of the image side."""
SCALE_BOUNDS = (0.5, 1.5)
"""A folder's model bounds a window's side to this range times the object size (``Objects2DConfig.scale_min``, ``scale_max``)."""
WINDOW_RANGE = (12, 32)
"""A folder's decoder and glimpse windows are at least and at most this many pixels a side."""
WINDOW_FRACTION = 1.5
"""A folder's default decoder window side over the object size: windows settle at 1.5-2 times
the object they hold (the glimpse reads the object size), so a decoder drawing at the object
size would be magnified and blur the object's edges."""


def fit_to_images(air: AIRConfig, size: int, channels: int, sizes: WindowSizes | None = None) -> AIRConfig:
    """The model for a folder of ``size x size`` images of ``channels`` (or a dataset's, with
    other sizes): the canvas, the prior mean of a window's side (``sizes.object_size`` pixels,
    default :data:`OBJECT_FRACTION` of the side), the decoder's window side (``sizes.window_size``
    pixels, default :data:`WINDOW_FRACTION` times the object size) and the glimpse's (the object
    size), both within :data:`WINDOW_RANGE`.

    Raises:
        ConfigError: an object size out of the range ``Objects2DConfig.scale_prior_mean``
            allows (named ``object_size``).
    """
    sizes = sizes or WindowSizes()
    object_size = OBJECT_FRACTION * size if sizes.object_size is None else sizes.object_size
    window_size = sizes.window_size
    fraction = field_range(Objects2DConfig, "scale_prior_mean")  # of the object size over the image side
    problem = Range(fraction.low * size, fraction.high * size).problem(object_size)
    if problem:
        raise ConfigError("object_size", f"{problem} (pixels, for {size}x{size} images)")
    side = lambda pixels: int(np.clip(round(pixels), *WINDOW_RANGE))
    window_size = side(WINDOW_FRACTION * object_size) if window_size is None else window_size
    glimpse_size = side(object_size)
    scale = round(object_size / size, 4)
    bounds = {}
    if air.objects.scale_max > 0:  # bounded windows: SCALE_BOUNDS times the object size
        bounds = dict(scale_min=round(SCALE_BOUNDS[0] * scale, 4), scale_max=round(SCALE_BOUNDS[1] * scale, 4))
    return replace(air, objects=replace(air.objects, canvas_size=size, channels=channels, scale_prior_mean=scale,
                                        window_size=window_size, glimpse_size=glimpse_size, **bounds))


def read_boxes(boxes: list, K: int, where: str) -> dict[str, np.ndarray]:
    """A ``labels.jsonl`` line's ``boxes``, each ``[scale, x, y]`` (the box convention of
    :mod:`inverse_air.objects2d.render2d`), as ``box (K, 3)`` float32 (zeros in empty slots)."""
    box = np.zeros((K, 3), dtype=np.float32)
    for k, item in enumerate(boxes):
        if not isinstance(item, list) or len(item) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in item):
            raise UserError(f"{where}: box {k}: expected [scale, x, y] (3 finite numbers), got {item!r}")
        scale, x, y = item
        if not 0 < scale <= 1 or abs(x) > 1 or abs(y) > 1:
            raise UserError(f"{where}: box {k}: {item!r} is not a window on the image (scale in (0, 1]: its "
                            f"side over the image's; x, y in [-1, 1]: its centre, the image from -1 to 1)")
        box[k] = item
    return {"box": box}


class ShardMaker:
    """Makes 2D shards: canvases composed of digits from the split's pool
    (:class:`~inverse_air.objects2d.multimnist.Composer`)."""

    def __init__(self, config: DatasetConfig):
        from .multimnist import Composer, load_digits

        self.config = config
        self.composer = Composer(load_digits(config.split, config.scenes.mnist), config.scenes)

    def __call__(self, rng: np.random.Generator, counts: np.ndarray) -> dict[str, np.ndarray]:
        K, S = self.config.max_count, self.config.scenes.canvas_size
        n = len(counts)
        images = np.zeros((n, S, S, 1), dtype=np.uint8)
        box = np.zeros((n, K, 3), dtype=np.float32)
        digit = np.full((n, K), -1, dtype=np.int64)
        for i, c in enumerate(counts):
            canvas, boxes, labels = self.composer.compose(rng, int(c))
            images[i, :, :, 0] = canvas
            box[i, :c], digit[i, :c] = boxes, labels
        return {"images": images, "count": np.asarray(counts, dtype=np.int64), "box": box, "digit": digit}


def shard_arrays(config: DatasetConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    S, K = config.scenes.canvas_size, config.max_count
    return {"images": ("uint8", (S, S, 1)), "box": ("float32", (K, 3)), "digit": ("int64", (K,))}


def check_truth(arrays: dict[str, np.ndarray], config: DatasetConfig) -> str | None:
    """Digits are -1 or 0-9, filled slots first and as many as ``count``; boxes of present
    digits inside the canvas."""
    digit, count, box = arrays["digit"], arrays["count"], arrays["box"]
    if ((digit < -1) | (digit > 9)).any():
        return "digit holds labels outside -1..9"
    present = digit >= 0
    if (present.sum(1) != count).any() or (present[:, 1:] & ~present[:, :-1]).any():
        return "digit's filled slots do not match count"
    scale, centre = box[present][:, 0], box[present][:, 1:]
    if ((scale <= 0) | (scale > 1)).any() or (np.abs(centre) > 1).any():
        return "box of a digit outside the canvas (scale in (0, 1], centre in [-1, 1])"
    return None


# Measured peak memory of one step of the preset (50x50 canvases, torch 2.11), per image:
# ELBO 0.38 MB, predict about 0.05 MB; as bytes per pixel, with half as much again to spare.
_BYTES_PER_PIXEL = {"elbo": 152, "supervised": 152, "sleep": 152, "predict": 20}


def memory_per_image(air: AIRConfig, phase: str) -> float:
    return 1.5 * _BYTES_PER_PIXEL[phase] * air.image_size ** 2 * max(1.0, air.max_steps / 3)


def metric_lines(m: dict) -> list[str]:
    median = lambda key: "n/a" if m[key] is None else format(m[key]["median"], ".4f")
    return [f"position error     median {median('position_error')} canvas units (canvas spans 2)",
            f"scale error        median {median('scale_error')} of the canvas side"]


def step_text(step: dict) -> str:
    return "  ".join(f"{k} {v}" for k, v in step.items() if k not in ("step", "present", "presence_prob"))


def upgrade_v1(old: dict, which: str) -> dict:
    """Format 1 kept the 2D model in ``AIRConfig.objects2d`` (its glimpse encoder's sizes in
    ``AIRConfig``) and the composition in ``DatasetConfig.compose`` (the digit source in
    ``DatasetConfig.mnist``)."""
    if which == "air":
        return {**old.get("objects2d", {}),
                **{k: old[k] for k in ("glimpse_channels", "glimpse_features") if k in old}}
    return {**old.get("compose", {}), "mnist": old.get("mnist")}


# The decoder is learned, so there is no fixed generative model to sleep on: ELBO only.
TRAIN = TrainConfig(steps=25000, batch_size=64, elbo_batch_size=64, sleep_fraction=0.0, lr=1e-3,
                    elbo_lr=1e-3, baseline_lr=1e-2, lr_decay_to=0.1, log_every=100,
                    checkpoint_every=1000, image_every=2500)

KIND = Kind(
    name="2d",
    summary="multi-MNIST: digits drawn by a learned decoder into windows a spatial transformer places",
    objects_config=Objects2DConfig,
    scenes_config=Compose2DConfig,
    # One linear layer per encoder (the pixels of a 50x50 grey canvas are few; convolutions
    # would triple the step time) and the paper's pixel noise.
    air=AIRConfig(objects=Objects2DConfig(), pixel_sigma=0.3, encoder_channels=(), encoder_features=256,
                  lstm_size=256, baseline_channels=()),
    # Folders of images: DAIR lets each step see what is still unexplained; windows laid over
    # each other ("over") and bounded in size keep one window to one object. Pixel noise 0.5 and
    # a geometric count prior of 1e-10 per object (23 nats each, annealed from 0.99 over the
    # first 1,000 steps): at 1.0 small shapes were never drawn (every object switched off); at
    # 0.3 extra windows stacked on drawn shapes kept paying for themselves. Two stride-2
    # convolutions with coordinate channels before the image encoder's and the baseline's
    # linear layer: with the linear layer alone, windows landed between shapes and small ones
    # were missed (filled sprites at step 1,000: 78% count, 95% with them; and 20% faster on
    # 64x64 RGB). What each choice changed on multi-sprites: docs/design-notes.md.
    folder_air=AIRConfig(objects=Objects2DConfig(composite="over", scale_min=0.2, scale_max=0.6),
                         pixel_sigma=0.5, dair=True, encoder_channels=(16, 32), encoder_features=256,
                         lstm_size=256, baseline_channels=(16, 32)),
    folder_count_prior="geometric",
    geometric_ratio=1e-10,
    train=TRAIN,
    folder_train=replace(TRAIN, presence_anneal_steps=1000),
    dataset=DatasetConfig(scenes=Compose2DConfig(), counts=(0, 1, 2)),
    build_objects=lazy("inverse_air.objects2d.model2d", "Objects2D"),
    fit_to_data=fit_to_data,
    shard_maker=ShardMaker,
    codec=Codec(targets=lazy("inverse_air.objects2d.model2d", "targets_from_arrays"),
                to_arrays=lazy("inverse_air.objects2d.model2d", "latents_to_arrays")),
    shard_arrays=shard_arrays,
    check_truth=check_truth,
    memory_per_image=memory_per_image,
    metrics=scene_metrics_2d,
    metric_lines=metric_lines,
    step_text=step_text,
    shipped_model=MODELS / "air2d.pt",
    upgrade_v1=upgrade_v1,
    fit_to_images=fit_to_images,
    folder_sizes=WindowSizes,
    labels=Labels(field="boxes", read=read_boxes),
)
