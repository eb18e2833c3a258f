"""The 3D look: what, besides its objects' identities and poses, makes a scene's image.

One ordered table, :data:`FACTORS`, says everything about each factor of the look: its name,
whether it belongs to the image or to each object, its ground-truth array, its one range of
valid values, where a scene file gives it, the render config's value where it does not vary,
how the prior samples it, its part of the model's latent layout, how people read it, and its
metric. Every other module reads the table: scene files (validation), the configs (ranges),
the prior (sampling), the renderer (inputs and defaults), the model and its scene posterior
(layouts), the codec (arrays, targets, descriptions), dataset shards, metrics and the kind's
texts (``decompose``, ``evaluate``).

The table's order is the model's: the latent and network layouts list the factors in it (per
image: the camera's elevation, azimuth and distance, the light's direction, ambient and
diffuse intensities, the ground's colour; per object: its colour and size), and so do
``decompose``'s descriptions. Ground truth lists them in :data:`TRUTH_ORDER`.

A factor varies with its *group* (:data:`GROUPS`, the switches of
:class:`~inverse_air.objects3d.config.Variation`): the camera's three, the light's three, and
one each for the ground, the objects' colours and their sizes.

This module imports neither torch nor PyTorch3D.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple

IMAGE, OBJECT = "image", "object"
"""What a factor belongs to: each image (``(B, ...)`` arrays) or each object (``(B, K, ...)``)."""


class CameraPose(NamedTuple):
    """A camera, by its named fields; a ``camera`` array ``(..., 3)`` (ground truth, latents,
    the renderer's input) holds them in this order. Works on numbers, numpy arrays and tensors."""

    elevation_deg: Any
    """Angle above the ground plane, degrees."""
    azimuth_deg: Any
    """Rotation about +Y, degrees (0: on the +Z side, facing -Z)."""
    distance: Any
    """Distance from the point the camera looks at (``RenderConfig.camera_target``)."""

    @classmethod
    def of(cls, camera) -> "CameraPose":
        """The fields of ``camera (..., 3)``, each ``(...)``."""
        return cls(*(camera[..., i] for i in range(len(cls._fields))))


@dataclass(frozen=True)
class Factor:
    """One factor of the look (a row of :data:`FACTORS`)."""

    name: str
    """Its name (latent layouts, the prior's intervals, ``{name}_error`` metrics)."""
    group: str
    """The :class:`~inverse_air.objects3d.config.Variation` switch that varies it."""
    per: str
    """:data:`IMAGE` or :data:`OBJECT`."""
    array: str
    """Its ground-truth array (a dataset shard's), latent and renderer input of that name."""
    scene: tuple[str, ...]
    """Where a scene file gives it: keys under the scene (per image) or under each object."""
    default: str
    """The :class:`~inverse_air.objects3d.config.RenderConfig` field that gives it where it
    does not vary (and where a scene file leaves it out)."""
    label: str
    """Its name for people (``evaluate``'s lines)."""
    text: tuple[str, str, str]
    """``decompose``'s words for it: (name, number format, unit)."""
    channels: int = 1
    """Values per image or object: 1, or 3 (RGB; a direction)."""
    field: str | None = None
    """The :class:`CameraPose` field it is within its ``array`` (None: the whole array)."""
    valid: tuple[float, float] | None = None
    """The one range of its valid values (closed, each channel): scene files, the render
    config, the prior's ranges and dataset shards are checked against it. None: a direction
    (any vector of normal, finite length: :func:`unit_direction`)."""
    angle: bool = False
    """An angle in degrees: scene files reduce any finite one by whole turns into ``valid``."""
    prior_range: str | None = None
    """The :class:`~inverse_air.objects3d.config.Variation` field of the range the prior draws
    it from, uniformly (each channel); None: the upper hemisphere (a direction)."""
    prior_scale: str | None = None
    """A :class:`~inverse_air.objects3d.config.RenderConfig` field ``prior_range`` is a factor
    of (the camera's distance: ``distance_range`` times ``camera_distance``)."""
    drawn: str = ""
    """Per object, when the prior draws it: ``"before placement"`` (placement needs it) or
    ``"after yaw"``. (Per image factors are drawn before the objects, in table order.)"""
    digits: int = 4
    """Decimals of ``decompose``'s JSON."""
    unit: str = ""
    """Unit of its metric in ``evaluate``'s lines."""
    metric_format: str = ".4f"
    """Number format of its metric in ``evaluate``'s lines."""
    lit_only: bool = False
    """Scored on images holding at least one object only (an empty scene shows no light)."""

    @property
    def direction(self) -> bool:
        """A direction (unit vector towards a distant light): the prior draws it uniformly
        on the upper hemisphere, the posterior reads it as its height (the sine of its
        elevation, an interval) and its azimuth (an angle)."""
        return self.valid is None

    @property
    def metric(self) -> str:
        """Its key in the metrics: ``|inferred - true|`` (the mean over RGB), or the angle
        between the directions, in degrees."""
        return f"{self.name}_error" + ("_deg" if self.unit == " degrees" else "")

    @property
    def mean_size(self) -> int:
        """Its part of a posterior head's means: each channel's ``u``; a direction's height
        ``u`` and its azimuth as a 2-vector (cos, sin)."""
        return 3 if self.direction else self.channels

    @property
    def spread_size(self) -> int:
        """Its part of a posterior head's log standard deviations (a direction: height, azimuth)."""
        return 2 if self.direction else self.channels

    @property
    def vector_size(self) -> int:
        """Its part of the latent vector the network reads back: each channel rescaled to
        [0, 1]; a direction as its height and its azimuth's cosine and sine."""
        return 3 if self.direction else self.channels

    @property
    def column(self) -> int | None:
        """Its column in its ``array`` (the :class:`CameraPose` field's), or None: the whole array."""
        return None if self.field is None else CameraPose._fields.index(self.field)

    def take(self, array):
        """Its values in its ``array`` ``(..., 3)`` (the camera's field), or the array."""
        return array if self.field is None else getattr(CameraPose.of(array), self.field)

    def describe(self, value) -> str:
        """``decompose``'s text for one value (a number or ``channels`` numbers)."""
        word, fmt, unit = self.text
        if self.channels == 1:
            return f"{word} {value:{fmt}}{unit}"
        return f"{word} (" + ", ".join(format(v, fmt) for v in value) + f"){unit}"


FACTORS: tuple[Factor, ...] = (
    Factor("camera_elevation", "camera", IMAGE, "camera", ("camera", "elevation_deg"), "camera_elevation_deg",
           "camera elevation", ("elevation", ".1f", " deg"), field="elevation_deg", valid=(1.0, 89.0),
           prior_range="elevation_range_deg", unit=" degrees", metric_format=".2f"),
    Factor("camera_azimuth", "camera", IMAGE, "camera", ("camera", "azimuth_deg"), "camera_azimuth_deg",
           "camera azimuth", ("azimuth", "+.1f", " deg"), field="azimuth_deg", valid=(-360.0, 360.0), angle=True,
           prior_range="azimuth_range_deg", unit=" degrees", metric_format=".2f"),
    Factor("camera_distance", "camera", IMAGE, "camera", ("camera", "distance"), "camera_distance",
           "camera distance", ("distance", ".2f", ""), field="distance", valid=(2.5, 20.0),
           prior_range="distance_range", prior_scale="camera_distance", unit=" world units"),
    Factor("light_direction", "light", IMAGE, "light_direction", ("light", "direction"), "light_direction",
           "light direction", ("direction", "+.2f", ""), channels=3, lit_only=True, unit=" degrees",
           metric_format=".2f"),
    Factor("light_ambient", "light", IMAGE, "ambient", ("light", "ambient"), "ambient", "light ambient",
           ("ambient", ".2f", ""), valid=(0.0, 1.0), prior_range="ambient_range", lit_only=True),
    Factor("light_diffuse", "light", IMAGE, "diffuse", ("light", "diffuse"), "diffuse", "light diffuse",
           ("diffuse", ".2f", ""), valid=(0.0, 1.0), prior_range="diffuse_range", lit_only=True),
    Factor("ground_color", "ground", IMAGE, "ground_color", ("ground_color",), "ground_color", "ground colour",
           ("colour", ".2f", ""), channels=3, valid=(0.0, 1.0), prior_range="ground_color_range",
           unit=" (mean |RGB| difference)"),
    Factor("color", "color", OBJECT, "color", ("color",), "object_color", "colour error", ("colour", ".2f", ""),
           channels=3, valid=(0.0, 1.0), prior_range="color_range", drawn="after yaw", digits=3,
           unit=" (mean |RGB| difference)"),
    Factor("size", "size", OBJECT, "size", ("size",), "object_scale", "size error", ("size", ".2f", ""),
           valid=(0.05, 1.5), prior_range="size_range", drawn="before placement", digits=3),
)
"""The look's factors, in the model's order (see the module docstring)."""

FACTOR: dict[str, Factor] = {f.name: f for f in FACTORS}
"""The factors by name."""

GROUPS: tuple[str, ...] = tuple(dict.fromkeys(f.group for f in FACTORS))
"""What can vary from scene to scene, each a switch of
:class:`~inverse_air.objects3d.config.Variation` (``render-dataset --fix``): ``camera``,
``light``, ``ground``, ``color``, ``size``."""

TRUTH_ORDER: tuple[Factor, ...] = (
    tuple(f for stage in ("before placement", "after yaw") for f in FACTORS if f.per == OBJECT and f.drawn == stage)
    + tuple(f for f in FACTORS if f.per == IMAGE))
"""The factors in the order of the ground truth (a shard's arrays, metrics, the texts of
``evaluate`` and of ``decompose``'s objects): each object's, in the order the prior draws them,
then each image's. Shards have always been written in it (the same seed, the same bytes)."""


def arrays_of(groups, truth: bool = False) -> dict[str, tuple[str, tuple[Factor, ...]]]:
    """The look's arrays of the factors in ``groups`` (names from :data:`GROUPS`):
    ``name -> (per, its factors)``, in table order (``truth``: in :data:`TRUTH_ORDER`)."""
    out: dict[str, tuple[str, tuple[Factor, ...]]] = {}
    for f in TRUTH_ORDER if truth else FACTORS:
        if f.group in groups:
            per, factors = out.get(f.array, (f.per, ()))
            out[f.array] = (per, factors + (f,))
    return out


def array_shape(factors: tuple[Factor, ...]) -> tuple[int, ...]:
    """One image's or object's part of an array holding ``factors``: ``()`` or ``(C,)``."""
    width = len(CameraPose._fields) if factors[0].field is not None else factors[0].channels
    return () if width == 1 else (width,)


def varied(groups, per: str | None = None) -> tuple[Factor, ...]:
    """The factors of ``groups`` (what varies), in table order; only those ``per`` image or
    object if given."""
    return tuple(f for f in FACTORS if f.group in groups and (per is None or f.per == per))


def defaults(render) -> dict[str, tuple[float, ...]]:
    """Each look array's value where it does not vary, from the render config ``render``: one
    image's or object's values, flat (the camera's fields in order; light directions unit)."""
    out: dict[str, tuple[float, ...]] = {}
    for f in FACTORS:
        value = getattr(render, f.default)
        value = unit_direction(value) if f.direction else value
        out[f.array] = out.get(f.array, ()) + (tuple(value) if isinstance(value, (tuple, list)) else (value,))
    return out


def unit_direction(vector) -> tuple[float, ...] | None:
    """``vector`` (numbers) normalized in float64, or None where it has no direction: its
    length is 0, subnormal or not finite (:func:`math.hypot` neither overflows nor underflows
    on the way)."""
    length = math.hypot(*vector)
    if not (sys.float_info.min <= length < math.inf):
        return None
    unit = tuple(v / length for v in vector)
    return unit if all(math.isfinite(v) for v in unit) else None
