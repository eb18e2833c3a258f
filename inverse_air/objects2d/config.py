"""Configuration of the 2D kind (multi-MNIST): how canvases are composed and the object model
(branches of the tree in :mod:`inverse_air.config`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from ..config import Checked, ConfigError, Layer, ObjectsConfig, OneOf, Pixels, Range, ScenesConfig

Window = Annotated[int, Range(4, 256)]
"""A window's side in pixels."""

COMPOSITES = ("sum", "over")
"""How the 2D model puts its objects' windows together (``Objects2DConfig.composite``)."""


@dataclass(frozen=True)
class Compose2DConfig(ScenesConfig):
    """How multi-MNIST images are composed (the paper's 2D data; Pyro's generator's sizes).

    A digit's whole 28x28 MNIST cell is resized to ``round(28 / s)`` pixels with
    ``s ~ N(digit_scale_mean, digit_scale_std)`` and pasted at a uniformly random integer
    offset inside the canvas; digits' inked areas do not overlap.
    """

    kind = "2d"
    canvas_size: Pixels = 50
    """Height and width of the canvas in pixels (at least ``min_window``)."""
    digit_scale_mean: Annotated[float, Range(0.1, 10.0)] = 1.3
    """Mean shrink factor of a 28x28 digit cell (1.3 gives windows of about 21 pixels)."""
    digit_scale_std: Annotated[float, Range(0.0, 10.0)] = 0.1
    """Standard deviation of the shrink factor."""
    min_window: Window = 14
    """Smallest window side in pixels (clips the scale distribution's tail)."""
    max_window: Window = 28
    """Largest window side in pixels."""
    mnist: str | None = None
    """Directory of standard MNIST IDX files; None uses the 5,000 embedded digits
    (:mod:`inverse_air.objects2d.multimnist`)."""

    def check(self) -> None:
        if self.min_window > self.max_window:
            raise ConfigError("min_window", f"must be at most max_window ({self.max_window}), got {self.min_window}")
        if self.canvas_size < self.min_window:
            raise ConfigError("canvas_size", f"must be at least the smallest digit window ({self.min_window} "
                                             f"pixels), got {self.canvas_size}")

    @property
    def image_size(self) -> int:
        return self.canvas_size

    @property
    def max_objects(self) -> int:
        """As many digit windows of the mean size as the canvas holds by area (at least one, at
        most 5): below what the composer places reliably at each canvas size
        (docs/design-notes.md)."""
        window = min(max(28.0 / self.digit_scale_mean, self.min_window), self.max_window, self.canvas_size)
        return max(1, min(5, int((self.canvas_size / window) ** 2)))

    @property
    def scene_text(self) -> str:
        return f"a {self.canvas_size}x{self.canvas_size} canvas without overlapping ink"

    def with_image_size(self, size: int) -> "Compose2DConfig":
        return replace(self, canvas_size=size)


@dataclass(frozen=True)
class Objects2DConfig(ObjectsConfig):
    """The 2D object model (:mod:`inverse_air.objects2d.model2d`): digits drawn by a learned
    decoder into windows that a spatial transformer places on the canvas
    (:mod:`inverse_air.objects2d.render2d`).

    Prior per object: ``z_what ~ N(0, I)``; ``z_where = (scale, x, y)`` (box convention in
    :mod:`inverse_air.objects2d.render2d`) with independent normal priors, ``scale ~
    N(scale_prior_mean, scale_prior_std)`` and ``x, y ~ N(0, position_prior_std)``.
    """

    kind = "2d"
    canvas_size: Pixels = 50
    """Side S of the canvas in pixels (training takes it from the dataset's manifest, or from
    the images of a folder)."""
    channels: Annotated[int, OneOf((1, 3))] = 1
    """Image channels C: 1 (grey, multi-MNIST) or 3 (RGB). The decoder draws, the glimpse reads
    and the likelihood scores all C channels."""
    z_what_size: Layer = 50
    """Size of each object's appearance code ``z_what``."""
    window_size: Window = 28
    """Side in pixels of the window the decoder draws (then scaled onto the canvas)."""
    glimpse_size: Window = 28
    """Side in pixels of the window the inference network reads at ``z_where``."""
    glimpse_channels: tuple[Layer, ...] = ()
    """Channels of the stride-2 convolutions of the glimpse encoder (none: one linear layer,
    enough for a 28x28 grey window)."""
    glimpse_features: Layer = 200
    """Size of the glimpse encoder's output vector."""
    decoder_hidden: Layer = 200
    """Hidden units of the decoder MLP."""
    decoder_output_bias: Annotated[float, Range(-20.0, 20.0)] = -2.0
    """Initial bias of the decoder's output logits (with ``composite="over"``, of its opacity's):
    -2 makes new objects start nearly empty."""
    composite: Annotated[str, OneOf(COMPOSITES)] = "sum"
    """How the windows make the image: ``"sum"``, the sum of the pasted windows (multi-MNIST:
    the digits' ink never overlaps); ``"over"``, the decoder also draws an opacity per pixel
    and the windows are laid over each other, step 1 in front, on a black ground (an object
    hides what is behind it, and a second window on an object already drawn adds nothing)."""
    scale_prior_mean: Annotated[float, Range(0.01, 1.0)] = 0.43
    """Prior mean of ``scale = w / S``; training sets it from the dataset's composition
    (28 / 1.3 / 50 = 0.43 for the default: a digit cell of about 21 pixels)."""
    scale_prior_std: Annotated[float, Range(1e-3, 10.0)] = 0.1
    """Prior standard deviation of ``scale``."""
    scale_min: Annotated[float, Range(0.0, 1.0)] = 0.0
    scale_max: Annotated[float, Range(0.0, 2.0)] = 0.0
    """Where ``scale_max`` > 0, the posterior's mean ``scale`` is bounded (smoothly) to
    (``scale_min``, ``scale_max``): a window can neither shrink to nothing nor grow over several
    objects (on a folder of images, by default half to twice the object size: a model whose
    windows may grow learns to tile the image with a few large windows that each draw what
    lies under them, and then always uses every step). 0: unbounded (the multi-MNIST preset)."""
    position_prior_std: Annotated[float, Range(1e-3, 10.0)] = 1.0
    """Prior standard deviation of the window centre ``x`` and ``y`` (canvas from -1 to 1)."""

    def check(self) -> None:
        if self.scale_max > 0 and not self.scale_min < self.scale_prior_mean < self.scale_max:
            raise ConfigError("scale_prior_mean", f"must lie between scale_min ({self.scale_min:g}) and scale_max "
                                                  f"({self.scale_max:g}), got {self.scale_prior_mean:g}")

    @property
    def image_size(self) -> int:
        return self.canvas_size


@dataclass(frozen=True)
class WindowSizes(Checked):
    """A 2D model's sizes in pixels, as ``train --object-size`` and ``--window-size`` give them
    for a folder of images (the model holds the object size as a fraction of the image side,
    :attr:`Objects2DConfig.scale_prior_mean`). None: derived from the image side
    (:func:`inverse_air.objects2d.kind.fit_to_images`)."""

    object_size: float | None = None
    """Prior mean of an object's window side in pixels (its range depends on the image side)."""
    window_size: Window | None = None
    """Side in pixels of the window the decoder draws (the glimpse reads the object size)."""

    def check(self) -> None:
        if self.object_size is not None and not self.object_size > 0:
            raise ConfigError("object_size", f"must be a positive number of pixels, got {self.object_size:g}")

    @classmethod
    def of(cls, objects: Objects2DConfig) -> "WindowSizes":
        """The sizes of a model (the object size to 0.01 pixel)."""
        return cls(object_size=round(objects.scale_prior_mean * objects.canvas_size, 2),
                   window_size=objects.window_size)
