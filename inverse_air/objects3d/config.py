"""Configuration of the 3D kind: the renderer, the object model and how datasets are made
(branches of the tree in :mod:`inverse_air.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated

from ..config import Checked, ConfigError, Fraction, Layer, ObjectsConfig, Pixels, Range, ScenesConfig

Unit = Fraction
"""A colour channel or a light intensity, in [0, 1]."""
Coordinate = Annotated[float, Range(-100.0, 100.0)]
"""A world coordinate (the scene square is [-1, 1]^2)."""
Degrees = Annotated[float, Range(-360.0, 360.0)]


@dataclass(frozen=True)
class RenderConfig(Checked):
    """Everything about how a 3D scene becomes an image, apart from the scene itself.

    The camera is PyTorch3D's ``FoVPerspectiveCameras`` placed by ``look_at_view_transform``
    at ``camera_distance`` from the origin, ``camera_elevation_deg`` above the ground and
    ``camera_azimuth_deg`` around +Y (0 = on the +Z side), looking at ``camera_target``.
    """

    image_size: Pixels = 64
    """Height and width of rendered images in pixels."""
    object_scale: Annotated[float, Range(0.05, 0.9)] = 0.6
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
    render: RenderConfig = field(default_factory=RenderConfig)
    """The renderer of the generative model (training takes it from the dataset's manifest)."""

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
    max_objects = 6  # what fits the scene square without interpenetration, reliably
    render: RenderConfig = field(default_factory=RenderConfig)
    """Renderer settings."""

    @property
    def image_size(self) -> int:
        return self.render.image_size

    def with_image_size(self, size: int) -> "Scenes3DConfig":
        return replace(self, render=replace(self.render, image_size=size))
