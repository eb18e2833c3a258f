"""Configuration of the 3D kind: the renderer, the object model and how datasets are made
(branches of the tree in :mod:`inverse_air.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Annotated

from ..config import Checked, ConfigError, Fraction, Layer, ObjectsConfig, Pixels, Range, ScenesConfig

Unit = Fraction
"""A colour channel or a light intensity, in [0, 1]."""
Coordinate = Annotated[float, Range(-100.0, 100.0)]
"""A world coordinate (the scene square is [-1, 1]^2)."""
Degrees = Annotated[float, Range(-360.0, 360.0)]
Scale = Annotated[float, Range(0.05, 0.9)]
"""An object's size (unit mesh times this; the render config's ``object_scale`` and the
varied sizes)."""


@dataclass(frozen=True)
class RenderConfig(Checked):
    """Everything about how a 3D scene becomes an image, apart from the scene itself.

    The camera is PyTorch3D's ``FoVPerspectiveCameras`` placed by ``look_at_view_transform``
    at ``camera_distance`` from the origin, ``camera_elevation_deg`` above the ground and
    ``camera_azimuth_deg`` around +Y (0 = on the +Z side), looking at ``camera_target``.
    """

    image_size: Pixels = 64
    """Height and width of rendered images in pixels."""
    object_scale: Scale = 0.6
    """World size of every object: unit meshes are multiplied by this (cube side 0.6)."""
    camera_distance: Annotated[float, Range(1.5, 9.0)] = 5.8
    """Distance from the camera to its target (world units)."""
    camera_elevation_deg: Annotated[float, Range(1.0, 90.0)] = 60.0
    """Angle of the camera above the ground plane, in degrees."""
    camera_azimuth_deg: Degrees = 0.0
    """Rotation of the camera about +Y, in degrees; 0 puts it on the +Z side, facing -Z."""
    camera_target: tuple[Coordinate, Coordinate, Coordinate] = (0.0, 0.15, 0.0)
    """The point the camera looks at (world units)."""
    fov_deg: Annotated[float, Range(1.0, 170.0)] = 35.0
    """Vertical field of view of the perspective camera, in degrees."""
    light_direction: tuple[Coordinate, Coordinate, Coordinate] = (-0.4, 1.0, 0.6)
    """Direction towards a distant light (normalized internally); above, front and left."""
    ambient: Unit = 0.35
    """Ambient light intensity; faces turned away from the light keep this much of the albedo."""
    diffuse: Unit = 0.65
    """Lambertian (diffuse) light intensity."""
    object_color: tuple[Unit, Unit, Unit] = (0.95, 0.75, 0.3)
    """Albedo shared by all objects (RGB in [0, 1]): identity is inferred from shape alone."""
    ground_color: tuple[Unit, Unit, Unit] = (0.2, 0.25, 0.35)
    """Colour of the ground plane as seen (already shaded), RGB in [0, 1]."""
    sky_color: tuple[Unit, Unit, Unit] = (0.05, 0.05, 0.08)
    """Colour of pixels that see no ground (above the horizon), RGB in [0, 1]."""
    cull_backfaces: bool = True
    """Skip faces that point away from the camera (closed meshes: same image, less work)."""
    soft_edge_px: Annotated[float, Range(0.01, 10.0)] = 0.5
    """Soft rasterization: width of the blurred edge in pixels (sigma = (soft_edge_px * 2 / H)^2
    in PyTorch3D's squared-NDC distance). Wider edges give gradients from farther away."""
    soft_faces_per_pixel: Annotated[int, Range(1, 64)] = 16
    """Soft rasterization: how many of each object's nearest faces reach a pixel. Too few make
    the soft image jump where many small faces meet (the low-poly sphere's vertices)."""

    def check(self) -> None:
        if not any(self.light_direction):
            raise ConfigError("light_direction", "must not be (0, 0, 0)")


FACTORS = ("camera", "light", "ground", "color", "size")
"""What can vary from scene to scene: camera pose; light direction and intensities; ground
colour; each object's colour; each object's size."""


Elevation = Annotated[float, Range(1.0, 90.0)]
Azimuth = Annotated[float, Range(-180.0, 180.0)]
DistanceFactor = Annotated[float, Range(0.3, 1.5)]


@dataclass(frozen=True)
class Variation(Checked):
    """What varies from one scene to the next, and over which ranges: the prior of a scene's
    look (:mod:`inverse_air.objects3d.prior` samples it and gives its densities). A factor that
    does not vary takes :class:`RenderConfig`'s value, so today's fixed look is the point of this
    prior where nothing varies (``Variation.none()``; ``render-dataset --fixed-appearance``).

    Every range is sampled uniformly; the light direction is uniform over the upper hemisphere
    (the sine of its elevation uniform in [0, 1], its azimuth uniform on the circle).
    """

    camera: bool = True
    """The camera's elevation, azimuth and distance vary (``*_range`` below)."""
    light: bool = True
    """The light's direction, ambient and diffuse intensities vary."""
    ground: bool = True
    """The ground's colour varies (the valid square stays a shade lighter)."""
    color: bool = True
    """Each object's colour (albedo) varies; otherwise all share ``RenderConfig.object_color``."""
    size: bool = True
    """Each object's size (the scale of its unit mesh) varies; otherwise all are
    ``RenderConfig.object_scale``."""
    elevation_range_deg: tuple[Elevation, Elevation] = (40.0, 70.0)
    """Camera elevation above the ground, degrees."""
    azimuth_range_deg: tuple[Azimuth, Azimuth] = (-30.0, 30.0)
    """Camera azimuth about +Y, degrees (0: on the +Z side)."""
    distance_range: tuple[DistanceFactor, DistanceFactor] = (0.85, 1.15)
    """Camera distance as a factor of ``RenderConfig.camera_distance`` (+-15%)."""
    ambient_range: tuple[Unit, Unit] = (0.2, 0.5)
    """Ambient light intensity."""
    diffuse_range: tuple[Unit, Unit] = (0.4, 0.9)
    """Diffuse (Lambertian) light intensity."""
    ground_color_range: tuple[Unit, Unit] = (0.05, 0.7)
    """Each RGB channel of the ground's colour."""
    color_range: tuple[Unit, Unit] = (0.15, 1.0)
    """Each RGB channel of an object's albedo."""
    size_range: tuple[Scale, Scale] = (0.4, 0.8)
    """An object's scale (cube side, sphere and cylinder diameter); interpenetration is
    checked with each object's own size."""

    def check(self) -> None:
        for f in fields(self):
            if f.name.endswith("_range") or f.name.endswith("_range_deg"):
                low, high = getattr(self, f.name)
                if low > high:
                    raise ConfigError(f.name, f"must be [low, high] with low <= high, got [{low:g}, {high:g}]")

    @classmethod
    def none(cls) -> "Variation":
        """Nothing varies: every scene has :class:`RenderConfig`'s look."""
        return cls(**{name: False for name in FACTORS})

    @property
    def varied(self) -> tuple[str, ...]:
        """The factors that vary, in :data:`FACTORS` order."""
        return tuple(name for name in FACTORS if getattr(self, name))

    def fixing(self, factors) -> "Variation":
        """The same prior with ``factors`` (names from :data:`FACTORS`) fixed."""
        unknown = set(factors) - set(FACTORS)
        if unknown:
            raise ValueError(f"unknown factor(s) {', '.join(sorted(unknown))} (known: {', '.join(FACTORS)})")
        return replace(self, **{name: False for name in factors})


@dataclass(frozen=True)
class Objects3DConfig(ObjectsConfig):
    """The 3D object model (:mod:`inverse_air.objects3d.model3d`): identity and pose per object,
    drawn by the fixed renderer; each step reads a glimpse where its coarse position projects."""

    kind = "3d"
    glimpse_size: Annotated[int, Range(4, 256)] = 24
    """Side in pixels of the attention window each step reads at full resolution (centred
    where the step's coarse position estimate projects into the image)."""
    glimpse_channels: tuple[Layer, ...] = (32, 64, 64)
    """Channels of the stride-2 convolutions of the glimpse encoder (none: one linear layer)."""
    glimpse_features: Layer = 128
    """Size of the glimpse encoder's output vector."""
    scene_channels: tuple[int, ...] = (16, 32, 64, 64)
    """Channels of the stride-2 convolutions of the scene encoder, which reads the camera,
    light and ground colour off the whole image (only where they vary)."""
    scene_features: int = 256
    """Size of the scene encoder's output vector."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """The renderer of the generative model (training takes it from the dataset's manifest)."""
    variation: Variation = field(default_factory=Variation)
    """What varies from scene to scene (the prior over camera, light, ground and object looks;
    training takes it from the dataset's manifest). The inference network infers what varies."""

    @property
    def image_size(self) -> int:
        return self.render.image_size

    @property
    def channels(self) -> int:
        return 3


@dataclass(frozen=True)
class Scenes3DConfig(ScenesConfig):
    """How ``render-dataset`` makes 3D scenes: objects drawn from the scene prior
    (:mod:`inverse_air.objects3d.prior`), hard-rendered with ``render``."""

    kind = "3d"
    render: RenderConfig = field(default_factory=RenderConfig)
    """Renderer settings (and the look of every factor that does not vary)."""
    variation: Variation = field(default_factory=Variation)
    """What varies from scene to scene, over which ranges (``render-dataset --fix``,
    ``--fixed-appearance``)."""

    @property
    def image_size(self) -> int:
        return self.render.image_size

    @property
    def largest_size(self) -> float:
        """The largest object size a scene may hold."""
        return self.variation.size_range[1] if self.variation.size else self.render.object_scale

    @property
    def max_objects(self) -> int:
        """6 objects, 5 where they may be larger than 0.8: placed without interpenetration in every
        one of 200 scenes tried at each size up to 0.9 (:func:`~inverse_air.objects3d.prior.sample_prior`
        draws a scene's objects again when the last finds no room); 6 of size 0.9 failed once."""
        return 6 if self.largest_size <= 0.8 else 5

    @property
    def scene_text(self) -> str:
        return f"the scene square without interpenetration, objects up to {self.largest_size:g} in size"

    def with_image_size(self, size: int) -> "Scenes3DConfig":
        return replace(self, render=replace(self.render, image_size=size))
