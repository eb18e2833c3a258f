"""Configuration of the 3D kind: the renderer, the object model and how datasets are made
(branches of the tree in :mod:`inverse_air.config`). Every range of a factor of the look is the
look table's (:mod:`inverse_air.objects3d.look`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Annotated

from ..config import Checked, ConfigError, Fraction, Layer, ObjectsConfig, Pixels, Range, ScenesConfig
from .look import FACTOR, FACTORS, GROUPS, unit_direction

Coordinate = Annotated[float, Range(-100.0, 100.0)]
"""A world coordinate (the scene square is [-1, 1]^2)."""


def _look(name: str):
    """``float`` annotated with the valid range of the look's factor ``name``."""
    return Annotated[float, Range(*FACTOR[name].valid)]


Elevation, Azimuth, Distance = _look("camera_elevation"), _look("camera_azimuth"), _look("camera_distance")
Ambient, Diffuse, Ground, Color = _look("light_ambient"), _look("light_diffuse"), _look("ground_color"), _look("color")
Size = _look("size")
"""An object's size (the scale of its unit mesh)."""


@dataclass(frozen=True)
class RenderConfig(Checked):
    """Everything about how a 3D scene becomes an image, apart from the scene itself.

    The camera is PyTorch3D's ``FoVPerspectiveCameras`` placed by ``look_at_view_transform``
    at ``camera_distance`` from the origin, ``camera_elevation_deg`` above the ground and
    ``camera_azimuth_deg`` around +Y (0 = on the +Z side), looking at ``camera_target``.
    """

    image_size: Pixels = 64
    """Height and width of rendered images in pixels."""
    object_scale: Size = 0.6
    """World size of every object: unit meshes are multiplied by this (cube side 0.6)."""
    camera_distance: Distance = 5.8
    """Distance from the camera to its target (world units)."""
    camera_elevation_deg: Elevation = 60.0
    """Angle of the camera above the ground plane, in degrees."""
    camera_azimuth_deg: Azimuth = 0.0
    """Rotation of the camera about +Y, in degrees; 0 puts it on the +Z side, facing -Z."""
    camera_target: tuple[Coordinate, Coordinate, Coordinate] = (0.0, 0.15, 0.0)
    """The point the camera looks at (world units)."""
    fov_deg: Annotated[float, Range(1.0, 170.0)] = 35.0
    """Vertical field of view of the perspective camera, in degrees."""
    light_direction: tuple[float, float, float] = (-0.4, 1.0, 0.6)
    """Direction towards a distant light (normalized internally; any vector of normal, finite
    length); above, front and left."""
    ambient: Ambient = 0.35
    """Ambient light intensity; faces turned away from the light keep this much of the albedo."""
    diffuse: Diffuse = 0.65
    """Lambertian (diffuse) light intensity."""
    object_color: tuple[Color, Color, Color] = (0.95, 0.75, 0.3)
    """Albedo shared by all objects (RGB in [0, 1]): identity is inferred from shape alone."""
    ground_color: tuple[Ground, Ground, Ground] = (0.2, 0.25, 0.35)
    """Colour of the ground plane as seen (already shaded), RGB in [0, 1]."""
    sky_color: tuple[Fraction, Fraction, Fraction] = (0.05, 0.05, 0.08)
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
        if unit_direction(self.light_direction) is None:
            raise ConfigError("light_direction", "must have a length that is neither 0, subnormal nor infinite, "
                                                 f"got {list(self.light_direction)}")


DistanceFactor = Annotated[float, Range(0.0)]
"""A factor of ``RenderConfig.camera_distance`` (the distances it gives are checked against the
look's range where both are known: :func:`check_prior`)."""


@dataclass(frozen=True)
class Variation(Checked):
    """What varies from one scene to the next, and over which ranges: the prior of a scene's
    look (:mod:`inverse_air.objects3d.prior` samples it and gives its densities). Its switches
    are the look's groups (:data:`~inverse_air.objects3d.look.GROUPS`); a factor that does not
    vary takes :class:`RenderConfig`'s value, so the fixed look is the point of this prior where
    nothing varies (``Variation.none()``; ``render-dataset --fixed-appearance``).

    Every range is sampled uniformly and lies within its factor's valid range (the look table's,
    :mod:`inverse_air.objects3d.look`); the light direction is uniform over the upper hemisphere
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
    ambient_range: tuple[Ambient, Ambient] = (0.2, 0.5)
    """Ambient light intensity."""
    diffuse_range: tuple[Diffuse, Diffuse] = (0.4, 0.9)
    """Diffuse (Lambertian) light intensity."""
    ground_color_range: tuple[Ground, Ground] = (0.05, 0.7)
    """Each RGB channel of the ground's colour."""
    color_range: tuple[Color, Color] = (0.15, 1.0)
    """Each RGB channel of an object's albedo."""
    size_range: tuple[Size, Size] = (0.4, 0.8)
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
        return cls(**{name: False for name in GROUPS})

    @property
    def varied(self) -> tuple[str, ...]:
        """The groups that vary, in :data:`~inverse_air.objects3d.look.GROUPS` order."""
        return tuple(name for name in GROUPS if getattr(self, name))

    def fixing(self, groups) -> "Variation":
        """The same prior with ``groups`` (names from :data:`~inverse_air.objects3d.look.GROUPS`) fixed."""
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown factor(s) {', '.join(sorted(unknown))} (known: {', '.join(GROUPS)})")
        return replace(self, **{name: False for name in groups})


def check_prior(render: RenderConfig, variation: Variation) -> None:
    """Refuse a prior whose camera distances (``distance_range`` times ``camera_distance``)
    leave the look's valid range (the other ranges are checked field by field)."""
    for f in FACTORS:
        if f.prior_scale is not None:
            scale, (low, high) = getattr(render, f.prior_scale), f.valid
            values = [v * scale for v in getattr(variation, f.prior_range)]
            if not low <= min(values) <= max(values) <= high:
                raise ConfigError(f"variation.{f.prior_range}", f"gives {f.label}s {values[0]:g} to {values[1]:g} "
                                  f"(times render.{f.prior_scale}); they must lie between {low:g} and {high:g}")


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
    standardize_glimpse: bool | None = None
    """The glimpse encoder also reads the glimpse's log standardized
    (:func:`~inverse_air.objects3d.posterior.standardized`), where a shape looks the same
    whatever its colour and light (docs/looks3d.md). None: true where anything of the look
    varies (the rule of checkpoints made before this field), resolved when the config is made."""
    psi_log_sigma_max: Annotated[float, Range(-5.0, 5.0)] | None = None
    """Upper bound of the log standard deviation of a cube's yaw posterior (over ``psi = 4
    yaw``). A wrapped normal much wider than 1 is nearly flat on the circle, so its mean gets
    no gradient: a spread that reaches such a bound before the features that show the yaw
    exist keeps the yaw at chance (docs/looks3d.md). None: 0 where anything of the look varies,
    1 otherwise (the rule of checkpoints made before this field), resolved when the config is
    made."""
    yaw_mean_first: bool = False
    """Where teacher-forced (sleep, supervised, the count search's lessons), a cube's yaw is
    fitted mean first: ``1 - cos(psi - mean)`` teaches the mean whatever the spread, and the
    wrapped normal's density, its mean held, teaches the spread. Its ``-log q`` alone gives the
    mean almost no gradient once the spread is wide (a wrapped normal of log spread 1 is within
    4% of flat), and a wrong mean widens the spread. The optimum is the same (the circular
    mean; the spread of the errors about it). From scratch it kept the spread off its bound but
    did not bring the yaw within 50 minutes (docs/design-notes.md). False: the wrapped normal's
    ``-log q`` alone (checkpoints made before this field)."""

    def check(self) -> None:
        check_prior(self.render, self.variation)
        looks = bool(self.variation.varied)
        if self.standardize_glimpse is None:
            object.__setattr__(self, "standardize_glimpse", looks)
        if self.psi_log_sigma_max is None:
            object.__setattr__(self, "psi_log_sigma_max", 0.0 if looks else 1.0)

    def fitted(self, render: RenderConfig, variation: Variation) -> "Objects3DConfig":
        """The same model for another renderer and prior, its look switches
        (``standardize_glimpse``, ``psi_log_sigma_max``) resolved anew for what varies there."""
        return replace(self, render=render, variation=variation, standardize_glimpse=None, psi_log_sigma_max=None)

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

    def check(self) -> None:
        check_prior(self.render, self.variation)

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
