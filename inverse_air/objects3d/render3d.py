"""The 3D generative model's renderer: the only module that imports PyTorch3D.

A :class:`SceneRenderer` turns a batch of scenes given as tensors into images. Scenes in one
batch may hold different numbers of objects, zero included: object slots are padded and an
empty slot has ``shape == -1``. Each scene may have its own look: camera, light and ground
colour per image, colour and size per object (:data:`LOOK`); what is not given takes the
render config's value, by the same arithmetic as when nothing varies.

Two modes share the meshes, cameras and shading:

- **hard** (``soft=False``): one face per pixel, no gradients; fast, for datasets and display.
- **soft** (``soft=True``): PyTorch3D's blurred rasterizer (several faces per pixel) gives each
  object a soft coverage, colour and depth; objects are composited front to back (see
  :meth:`SceneRenderer._soft_layers`), and the valid square's edges on the ground are blurred
  alike. Differentiable with respect to every object's position, yaw, size and colour and
  every image's camera, light and ground colour.

Each object is rasterized as its own mesh; both modes end in the same per-pixel "over"
compositing of object layers sorted by depth.

**Convention.** World frame as in :mod:`inverse_air.objects3d.scene`: +Y up, ground ``y = 0``.
An object with ``position = (x, z)``, ``yaw`` and ``size`` has its unit mesh scaled by
``size``, rotated by ``yaw`` radians about +Y (right-handed: +X turns towards -Z,
counter-clockwise seen from above), lifted to rest on the ground and moved to ``(x, 0, z)``.
A camera is ``(elevation_deg, azimuth_deg, distance)`` (PyTorch3D's ``look_at_view_transform``:
azimuth 0 on the +Z side), looking at ``RenderConfig.camera_target``; :func:`camera_frames`
computes its pose in closed form (a test checks it against PyTorch3D's), so that projecting
points and casting pixel rays, which inference does at every step, cost a few small matrix
products rather than PyTorch3D's camera objects. Shading is flat
Lambertian: each face gets ``albedo * (ambient + diffuse * max(0, n . l))`` with ``l`` the unit
direction towards the light. Images are ``(B, 3, H, W)`` floats in [0, 1], row 0 at the top,
as a person sees the scene from the camera.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from pytorch3d.io import load_obj
from pytorch3d.renderer import FoVPerspectiveCameras, MeshRasterizer, RasterizationSettings
from pytorch3d.renderer import look_at_view_transform
from pytorch3d.structures import Meshes

from ..images import to_uint8
from ..limits import check_memory
from .config import RenderConfig
from .look import GROUPS, OBJECT, CameraPose, array_shape, arrays_of
from .scene import POSITION_MAX, POSITION_MIN, SHAPES, Scene, scenes_to_arrays

def _mesh_dir() -> Path:
    """The meshes live in ``assets/meshes`` at the top of the checkout and ship in the wheel as
    the data of the package ``inverse_air.assets`` (``pyproject.toml`` maps that folder to it).
    Installed from the wheel, they are found as that package's; from a checkout (an editable
    install, or the checkout on ``sys.path``), beside the package."""
    spec = importlib.util.find_spec("inverse_air.assets")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(folder) / "meshes").is_dir():
            return Path(folder) / "meshes"
    return Path(__file__).resolve().parents[2] / "assets" / "meshes"


MESH_DIR = _mesh_dir()
"""Where the unit primitive meshes live (``sphere.obj``, ``cube.obj``, ``cylinder.obj``,
made by ``assets/meshes/make_meshes.py``)."""

_Z_NEAR, _Z_FAR = 1.0, 10.0

HARD_BYTES_PER_LAYER_PIXEL = 64
"""Peak memory of a hard render per object layer (object slot of a scene) per pixel: each
object is rasterized over the whole image (fragments, colour, depth) and composited by depth.
Measured with ``render-scene`` (7x7 and 10x10 grids of cubes at 512x512, torch 2.11): 61 bytes."""


def hard_render_memory(layers: int, image_size: int) -> float:
    """Bytes a hard render of ``layers`` object slots (scenes x their most objects) at
    ``image_size`` needs at its peak, with half as much again to spare."""
    return 1.5 * HARD_BYTES_PER_LAYER_PIXEL * max(1, layers) * image_size ** 2


def _shape_text(per: str, factors) -> str:
    dims = ("B", "K")[:1 + (per == OBJECT)] + tuple(map(str, array_shape(factors)))
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


LOOK: dict[str, str] = {name: _shape_text(per, factors) for name, (per, factors) in arrays_of(GROUPS, truth=True).items()}
"""The look a batch of scenes may give (the look table's arrays, :mod:`inverse_air.objects3d.look`),
with each tensor's shape: per object ``size`` (mesh scale) and ``color`` (RGB albedo); per image
``camera`` (:class:`~inverse_air.objects3d.look.CameraPose`'s fields), ``light_direction``
(unit, towards the light), ``ambient``, ``diffuse`` and ``ground_color`` (RGB, as seen)."""
_SHADING = tuple(arrays_of(("light",)))  # per image, but shading each of the image's objects


def scenes_to_tensors(scenes: list[Scene], max_objects: int | None = None,
                      config: RenderConfig | None = None) -> tuple:
    """Pad a list of scenes into renderer inputs.

    Returns:
        shape ``(B, K)`` long (-1 = empty slot), position ``(B, K, 2)`` float, yaw ``(B, K)``
        float in radians, with ``K = max_objects`` or the largest object count; and, given
        ``config``, a dict of the :data:`LOOK` entries some scene gives (the others' values
        filled in from ``config``), to pass as the renderer's keyword arguments.
    """
    arrays = scenes_to_arrays(scenes, max_objects, config)
    pose = (torch.from_numpy(arrays.pop("shape")), torch.from_numpy(arrays.pop("position")),
            torch.deg2rad(torch.from_numpy(arrays.pop("yaw"))))
    return pose if config is None else pose + ({k: torch.from_numpy(v) for k, v in arrays.items()},)


def camera_frames(camera: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each camera's rotation and centre, as PyTorch3D's ``look_at_view_transform`` places it.

    Args:
        camera: ``(B, 3)`` :class:`~inverse_air.objects3d.look.CameraPose` fields (elevation and
            azimuth in degrees, distance).
        target: ``(1, 3)`` or ``(B, 3)`` the point the cameras look at.

    Returns:
        ``R (B, 3, 3)`` whose columns are the camera's x, y and z axes in world coordinates
        (view coordinates of a world point ``X`` are ``(X - C) @ R``, PyTorch3D's row-vector
        convention), and ``C (B, 3)`` the camera centres.
    """
    pose = CameraPose.of(camera)
    elevation, azimuth, distance = torch.deg2rad(pose.elevation_deg), torch.deg2rad(pose.azimuth_deg), pose.distance
    offset = torch.stack([torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation),
                          torch.cos(elevation) * torch.cos(azimuth)], dim=1)  # (B, 3) unit
    centre = target.to(camera.dtype) + distance[:, None] * offset
    up = torch.tensor([0.0, 1.0, 0.0], dtype=camera.dtype, device=camera.device).expand_as(centre)
    z = torch.nn.functional.normalize(-offset, dim=1, eps=1e-5)
    x = torch.nn.functional.normalize(torch.cross(up, z, dim=1), dim=1, eps=1e-5)
    y = torch.nn.functional.normalize(torch.cross(z, x, dim=1), dim=1, eps=1e-5)
    return torch.stack([x, y, z], dim=2), centre


class SceneRenderer(torch.nn.Module):
    """Render batches of scenes of spheres, cubes and cylinders (see the module docstring).

    Args:
        config: camera, light, colours, image size and rasterization settings (the look of
            whatever a batch does not give).
        mesh_dir: folder holding ``{shape}.obj`` for every shape in :data:`SHAPES`.

    The renderer has no learnable parameters; its constants are buffers, so ``.to(device)``
    moves it; inputs must be on the same device.
    """

    def __init__(self, config: RenderConfig = RenderConfig(), mesh_dir: Path = MESH_DIR):
        super().__init__()
        self.config = config
        verts, unit_verts, faces = [], [], []
        for name in SHAPES:
            v, f, _ = load_obj(Path(mesh_dir) / f"{name}.obj", load_textures=False)
            unit = v.clone()
            unit[:, 1] -= unit[:, 1].min()  # rest on the ground plane y = 0 at any size
            unit_verts.append(unit)
            v = v * config.object_scale
            v[:, 1] -= v[:, 1].min()
            verts.append(v)
            faces.append(f.verts_idx)
        V = max(v.shape[0] for v in verts)
        F = max(f.shape[0] for f in faces)
        template_verts = torch.zeros(len(SHAPES), V, 3)  # (S, V, 3) at the config's object scale
        template_unit = torch.zeros(len(SHAPES), V, 3)  # (S, V, 3) at size 1
        template_faces = torch.full((len(SHAPES), F, 3), -1, dtype=torch.long)  # (S, F, 3)
        for s, (v, u, f) in enumerate(zip(verts, unit_verts, faces)):
            template_verts[s, : v.shape[0]] = v
            template_unit[s, : u.shape[0]] = u
            template_faces[s, : f.shape[0]] = f
        self.register_buffer("template_verts", template_verts, persistent=False)
        self.register_buffer("template_unit", template_unit, persistent=False)
        self.register_buffer("template_faces", template_faces, persistent=False)
        light = torch.tensor(config.light_direction, dtype=torch.float32)
        self.register_buffer("light", light / light.norm(), persistent=False)
        self.register_buffer("albedo", torch.tensor(config.object_color), persistent=False)
        self.register_buffer("target", torch.tensor([config.camera_target]), persistent=False)  # (1, 3)
        R, T = look_at_view_transform(
            dist=config.camera_distance, elev=config.camera_elevation_deg,
            azim=config.camera_azimuth_deg, at=(config.camera_target,))
        self.register_buffer("cam_R", R, persistent=False)  # (1, 3, 3)
        self.register_buffer("cam_T", T, persistent=False)  # (1, 3)
        ground, inside = self._ground_masks(self._pixel_rays(self._cameras("cpu")))
        self.register_buffer("ground_mask", ground[0], persistent=False)  # (H, W) bool
        self.register_buffer("inside_mask", inside[0], persistent=False)  # (H, W) bool
        self.register_buffer("background", self._paint(ground, inside, torch.tensor([config.ground_color]))[0],
                             persistent=False)  # (3, H, W)
        # World -> NDC as one 4x4 matrix (row vectors), so that ``project`` does not build
        # a camera object per call (it runs at every inference step).
        self.register_buffer("world_to_ndc", self._cameras("cpu").get_full_projection_transform()
                             .get_matrix()[0].clone(), persistent=False)  # (4, 4)

    # ------------------------------------------------------------------ public API
    def forward(self, shape: torch.Tensor, position: torch.Tensor, yaw: torch.Tensor,
                soft: bool = False, **look: torch.Tensor | None) -> torch.Tensor:
        """Render a batch of scenes.

        Args:
            shape: ``(B, K)`` long, index into :data:`SHAPES`, -1 for an empty slot.
            position: ``(B, K, 2)`` float, ``(x, z)`` on the ground plane (world units).
            yaw: ``(B, K)`` float, radians about +Y.
            soft: differentiable soft rasterization instead of the fast hard one.
            look: any of :data:`LOOK` (None or absent: the render config's value).

        Returns:
            ``(B, 3, H, W)`` images in [0, 1].
        """
        B, K = shape.shape
        if position.shape != (B, K, 2) or yaw.shape != (B, K):
            raise ValueError(f"expected position (B, K, 2) and yaw (B, K) for shape {(B, K)}, "
                             f"got {tuple(position.shape)} and {tuple(yaw.shape)}")
        look = {k: v for k, v in look.items() if v is not None}
        unknown = set(look) - set(LOOK)
        if unknown:
            raise ValueError(f"unknown look {', '.join(sorted(unknown))} (known: {', '.join(LOOK)})")
        cameras = self._batch_cameras(look.get("camera"))  # None: the config's camera
        background = self._background(B, cameras, look.get("ground_color"), soft, position.dtype)
        present = shape >= 0  # (B, K)
        if not bool(present.any()):
            return background
        image_of = torch.arange(B, device=shape.device).unsqueeze(1).expand(B, K)[present]  # (N,)
        per_object = {k: look[k][present] for k, (per, _) in arrays_of(GROUPS).items() if per == OBJECT and k in look}
        per_object.update({k: look[k][image_of] for k in _SHADING if k in look})
        object_cameras = None if cameras is None else self._cameras(shape.device, *(t[image_of] for t in cameras))
        meshes, face_colors = self._object_meshes(shape[present], position[present], yaw[present], **per_object)
        if soft:
            alpha, color, depth = self._soft_layers(meshes, face_colors, object_cameras)
        else:
            alpha, color, depth = self._hard_layers(meshes, face_colors, object_cameras)
        # Scatter the N present objects back into their (B, K) slots; empty slots are clear.
        H = W = self.config.image_size
        slots = present.reshape(-1).nonzero().squeeze(1)  # (N,)
        alpha = alpha.new_zeros(B * K, H, W).index_copy(0, slots, alpha).view(B, K, H, W)
        color = color.new_zeros(B * K, H, W, 3).index_copy(0, slots, color).view(B, K, H, W, 3)
        depth = depth.new_full((B * K, H, W), float("inf")).index_copy(0, slots, depth)
        return self._composite(alpha, color, depth.view(B, K, H, W), background)

    def render_scenes(self, scenes: list[Scene]) -> np.ndarray:
        """Hard-render scene descriptions (with their looks) to ``(B, H, W, 3)`` uint8 images.

        Raises:
            UserError: the render would not fit in memory (:func:`hard_render_memory`).
        """
        device = self.template_verts.device
        most, size = max((len(scene.objects) for scene in scenes), default=0), self.config.image_size
        check_memory(hard_render_memory(len(scenes) * most, size),
                     f"rendering {len(scenes) * most:,} object{'s' if len(scenes) * most != 1 else ''} at "
                     f"{size}x{size}", "use a smaller --image-size or fewer objects", device=device)
        shape, position, yaw, look = scenes_to_tensors(scenes, config=self.config)
        with torch.no_grad():
            images = self(shape.to(device), position.to(device), yaw.to(device),
                          **{k: v.to(device) for k, v in look.items()})
        return to_uint8(images)

    def project(self, position: torch.Tensor, camera: torch.Tensor | None = None,
                size: torch.Tensor | float | None = None) -> torch.Tensor:
        """Where objects' centres appear in the image.

        Args:
            position: ``(B, ..., 2)`` ``(x, z)`` on the ground plane (world units); any
                ``(..., 2)`` without ``camera``.
            camera: ``(B, 3)`` each image's camera (None: the config's).
            size: the objects' sizes, shaped as ``position`` without its last axis, or a
                number (None: the config's object scale).

        Returns:
            ``(B, ..., 2)`` image coordinates of the point half an object above ``position``,
            in ``grid_sample``'s convention with ``align_corners=False``: ``(u, v)`` with
            u = -1 at the left edge and +1 at the right edge of the image, v = -1 at the top
            and +1 at the bottom. (PyTorch3D's NDC has +X left and +Y up: both are flipped.)
        """
        flat = position.reshape(1 if camera is None else camera.shape[0], -1, 2)  # (B, P, 2)
        size = self.config.object_scale if size is None else size
        if torch.is_tensor(size):
            height = 0.5 * size.reshape(flat.shape[:2] + (1,)).to(flat.dtype)
        else:
            height = torch.full_like(flat[..., :1], 0.5 * size)
        points = torch.cat([flat[..., :1], height.expand_as(flat[..., :1]), flat[..., 1:],
                            torch.ones_like(flat[..., :1])], dim=-1)  # (B, P, 4)
        if camera is None:
            clip = points @ self.world_to_ndc.to(points.dtype)  # (B, P, 4) homogeneous
            ndc = clip[..., :2] / clip[..., 3:]
        else:
            R, centre = camera_frames(camera.to(points.dtype), self.target)
            view = torch.bmm(points[..., :3] - centre[:, None], R)  # (B, P, 3)
            ndc = view[..., :2] / (view[..., 2:] * self._tan_half_fov)
        return (-ndc).reshape(position.shape)

    # ------------------------------------------------------------------ internals
    @property
    def _tan_half_fov(self) -> float:
        return math.tan(math.radians(self.config.fov_deg) / 2)

    def _batch_cameras(self, camera: torch.Tensor | None):
        """Each image's PyTorch3D ``(R, T)`` from ``camera (B, 3)``; None for the config's camera."""
        if camera is None:
            return None
        R, centre = camera_frames(camera, self.target)
        return R, -torch.bmm(centre[:, None], R)[:, 0]

    def _cameras(self, device, R: torch.Tensor | None = None, T: torch.Tensor | None = None) -> FoVPerspectiveCameras:
        R = self.cam_R if R is None else R
        T = self.cam_T if T is None else T
        return FoVPerspectiveCameras(device=device, R=R, T=T, fov=self.config.fov_deg, znear=_Z_NEAR, zfar=_Z_FAR)

    def _object_meshes(self, shape, position, yaw, size=None, color=None, light_direction=None,
                       ambient=None, diffuse=None):
        """Pose the template meshes: one PyTorch3D mesh per object.

        Args:
            shape: ``(N,)`` long in ``[0, S)``; position ``(N, 2)``; yaw ``(N,)`` radians; and
                per object (None: the config's) size ``(N,)``, color ``(N, 3)``, the light of
                its image: light_direction ``(N, 3)`` (unit), ambient ``(N,)``, diffuse ``(N,)``.

        Returns:
            the meshes and each packed face's flat-shaded colour ``(F_total, 3)``.
        """
        if size is None:
            verts = self.template_verts[shape].to(position.dtype)  # (N, V, 3)
        else:
            verts = self.template_unit[shape].to(position.dtype) * size[:, None, None]
        x, y, z = verts.unbind(-1)
        cos, sin = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]  # (N, 1)
        pos_x, pos_z = position[:, :1], position[:, 1:]  # (N, 1) each
        verts = torch.stack([cos * x + sin * z + pos_x, y, -sin * x + cos * z + pos_z], dim=-1)
        # template faces are padded with -1 at the end, as Meshes expects
        meshes = Meshes(verts=verts, faces=self.template_faces[shape])
        normals = self._face_normals(meshes)
        if light_direction is None and ambient is None and diffuse is None and color is None:
            light = self.light.to(normals.dtype)
            intensity = self.config.ambient + self.config.diffuse * (normals @ light).clamp(min=0)
            return meshes, intensity[:, None] * self.albedo.to(normals.dtype)  # (F_total, 3)
        owner = meshes.faces_packed_to_mesh_idx()  # (F_total,) object of each face
        light = self.light.to(normals.dtype).expand(len(shape), 3) if light_direction is None else light_direction
        facing_light = (normals * light[owner]).sum(-1).clamp(min=0)  # (F_total,)
        ambient = self.config.ambient if ambient is None else ambient[owner]
        diffuse = self.config.diffuse if diffuse is None else diffuse[owner]
        albedo = self.albedo.to(normals.dtype) if color is None else color[owner]
        return meshes, (ambient + diffuse * facing_light)[:, None] * albedo

    @staticmethod
    def _face_normals(meshes) -> torch.Tensor:
        """Unit outward normals of the packed faces, ``(F_total, 3)``."""
        face_verts = meshes.verts_packed()[meshes.faces_packed()]  # (F_total, 3, 3)
        normals = torch.cross(face_verts[:, 1] - face_verts[:, 0],
                              face_verts[:, 2] - face_verts[:, 0], dim=-1)
        return normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def _rasterize(self, meshes, cameras, blur_radius: float, faces_per_pixel: int):
        settings = RasterizationSettings(
            image_size=self.config.image_size, blur_radius=blur_radius,
            faces_per_pixel=faces_per_pixel, cull_backfaces=self.config.cull_backfaces,
            bin_size=0, perspective_correct=False)
        cameras = self._cameras(meshes.device) if cameras is None else cameras
        return MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)

    def _hard_layers(self, meshes, face_colors, cameras=None):
        """Per object: binary coverage ``(N, H, W)``, colour ``(N, H, W, 3)``, depth ``(N, H, W)``."""
        fragments = self._rasterize(meshes, cameras, blur_radius=0.0, faces_per_pixel=1)
        pix_to_face = fragments.pix_to_face[..., 0]  # (N, H, W)
        hit = pix_to_face >= 0
        color = face_colors[pix_to_face.clamp(min=0)]  # (N, H, W, 3)
        depth = torch.where(hit, fragments.zbuf[..., 0], float("inf"))
        return hit.to(color.dtype), color, depth

    def _soft_layers(self, meshes, face_colors, cameras=None):
        """Per object soft coverage, colour and depth (shapes as in :meth:`_hard_layers`).

        Each face covers a pixel with probability ``sigmoid(-d / sigma)`` of its signed squared
        distance ``d`` (PyTorch3D's ``dists``, negative inside), times a facing weight that
        fades it out as it turns edge-on (so back-face culling causes no jump). An object's
        coverage is the sum of its faces' coverages (at most 1), its colour and depth their
        coverage-weighted means, so the shared edges of a convex object leave no seam.
        Rasterizing each object on its own keeps one object's faces from crowding another's
        out of the ``soft_faces_per_pixel`` nearest.
        """
        cfg = self.config
        sigma = (cfg.soft_edge_px * 2.0 / cfg.image_size) ** 2  # squared NDC units
        # Faces farther than this contribute less than 1e-3 coverage and are not rasterized.
        blur_radius = math.log(1.0 / 1e-3 - 1.0) * sigma
        fragments = self._rasterize(meshes, cameras, blur_radius, cfg.soft_faces_per_pixel)
        pix_to_face = fragments.pix_to_face  # (N, H, W, Kf)
        hit = pix_to_face >= 0
        face = pix_to_face.clamp(min=0)
        facing = self._facing(meshes, cameras)  # (F_total,)
        prob = torch.sigmoid(-fragments.dists / sigma) * facing[face] * hit  # (N, H, W, Kf)
        # The front faces of a convex object tile its silhouette without overlap, so their
        # coverages add up: across an edge shared by two faces they sum to one exactly.
        total = prob.sum(dim=-1)  # (N, H, W)
        alpha = total.clamp(max=1.0)
        total = total.clamp(min=1e-12)
        color = (prob[..., None] * face_colors[face]).sum(dim=-2) / total[..., None]
        depth = (prob * fragments.zbuf).sum(dim=-1) / total
        return alpha, color, torch.where(alpha > 1e-6, depth, float("inf"))

    def _composite(self, alpha, color, depth, background):
        """Composite object layers front to back ("over"), then the background.

        Args:
            alpha: ``(B, K, H, W)`` coverage; color ``(B, K, H, W, 3)``; depth ``(B, K, H, W)``
                with ``inf`` where an object is absent; background ``(B, 3, H, W)``.

        Returns:
            ``(B, 3, H, W)`` images.
        """
        order = depth.argsort(dim=1)  # (B, K, H, W), nearest first
        alpha = alpha.gather(1, order)
        color = color.gather(1, order[..., None].expand_as(color))
        # transmittance in front of each layer: (B, K + 1, H, W)
        transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha], 1), 1)
        rgb = (transmittance[:, :-1, ..., None] * alpha[..., None] * color).sum(dim=1)  # (B, H, W, 3)
        rgb = rgb + transmittance[:, -1, ..., None] * background.permute(0, 2, 3, 1)
        return rgb.permute(0, 3, 1, 2)

    def _facing(self, meshes, cameras=None) -> torch.Tensor:
        """How much each face turns towards its camera, ``(F_total,)`` in [0, 1]: 0 when it
        faces away or is edge-on, 1 once its normal is ``asin(0.05)`` (about 3 degrees) or more
        past edge-on."""
        normals = self._face_normals(meshes)
        centres = meshes.verts_packed()[meshes.faces_packed()].mean(dim=1)  # (F_total, 3)
        cameras = self._cameras(centres.device) if cameras is None else cameras
        eye = cameras.get_camera_center().to(centres.dtype)  # (1 or N, 3)
        if eye.shape[0] > 1:
            eye = eye[meshes.faces_packed_to_mesh_idx()]
        to_eye = eye - centres
        cos = (normals * to_eye).sum(-1) / to_eye.norm(dim=-1).clamp(min=1e-12)
        return (cos / 0.05).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ the empty scene
    def _background(self, B: int, cameras, ground_color, soft: bool, dtype) -> torch.Tensor:
        """``(B, 3, H, W)``: each image's ground (the valid square a shade lighter) and sky."""
        if cameras is None and ground_color is None:
            return self.background.to(dtype).expand(B, 3, -1, -1).clone()
        if ground_color is None:
            ground_color = torch.tensor([self.config.ground_color], dtype=dtype,
                                        device=self.background.device).expand(B, 3)
        if cameras is None:
            return self._paint(self.ground_mask[None], self.inside_mask[None].to(dtype), ground_color)
        ground, inside = self._ground_masks(self._camera_rays(*cameras), soft_width=self._square_blur() if soft else None)
        return self._paint(ground, inside.to(dtype), ground_color)

    def _camera_rays(self, R: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's ray through each pixel centre, ``(B, H*W, 3)`` origins and directions,
        from PyTorch3D's ``(R, T)`` in closed form (what :meth:`_pixel_rays` gets by unprojecting)."""
        H = W = self.config.image_size
        ys = 1.0 - (2.0 * torch.arange(H, device=R.device, dtype=R.dtype) + 1.0) / H
        xs = 1.0 - (2.0 * torch.arange(W, device=R.device, dtype=R.dtype) + 1.0) / W
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        view = torch.stack([grid_x * self._tan_half_fov, grid_y * self._tan_half_fov, torch.ones_like(grid_x)], -1)
        direction = view.reshape(1, -1, 3) @ R.transpose(1, 2)  # (B, H*W, 3)
        centre = -torch.bmm(T[:, None], R.transpose(1, 2))  # (B, 1, 3)
        return centre.expand_as(direction), direction

    def _pixel_rays(self, cameras) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's ray through each pixel centre: origin and direction ``(B, H*W, 3)``."""
        H = W = self.config.image_size
        device = cameras.R.device
        # Pixel centres in PyTorch3D's NDC: +X left, +Y up; row 0 is the top of the image.
        ys = 1.0 - (2.0 * torch.arange(H, device=device) + 1.0) / H
        xs = 1.0 - (2.0 * torch.arange(W, device=device) + 1.0) / W
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack([grid_x, grid_y], dim=-1).reshape(1, -1, 2).to(cameras.R.dtype)
        points = points.expand(cameras.R.shape[0], -1, -1)  # (B, H*W, 2)
        depth = lambda d: torch.full_like(points[..., :1], d)
        near = cameras.unproject_points(torch.cat([points, depth(2.0)], -1), world_coordinates=True)
        far = cameras.unproject_points(torch.cat([points, depth(6.0)], -1), world_coordinates=True)
        return near, far - near

    def _ground_masks(self, rays, soft_width: float | None = None):
        """Where each pixel's ray meets the ground, ``(B, H, W)`` bool, and how much of it falls
        on the valid square, ``(B, H, W)``: bool, or with ``soft_width`` (world units) a smooth
        step across the square's edges (its gradient lets the camera learn from them)."""
        H = W = self.config.image_size
        near, direction = rays
        t = -near[..., 1] / direction[..., 1]
        ground = (direction[..., 1] < 0) & (t > 0)
        hit = near + t[..., None] * direction  # (B, H*W, 3)
        if soft_width is None:
            in_range = (hit >= POSITION_MIN) & (hit <= POSITION_MAX)
            inside = ground & in_range[..., 0] & in_range[..., 2]
        else:
            margin = torch.minimum(POSITION_MAX - hit, hit - POSITION_MIN)  # (B, H*W, 3) inside > 0
            inside = torch.sigmoid(margin[..., 0] / soft_width) * torch.sigmoid(margin[..., 2] / soft_width) * ground
        return ground.reshape(-1, H, W), inside.reshape(-1, H, W)

    def _square_blur(self) -> float:
        """Width (world units) of the soft square's edge: ``soft_edge_px`` pixels at the
        config's camera distance."""
        cfg = self.config
        pixel = 2.0 * cfg.camera_distance * math.tan(math.radians(cfg.fov_deg) / 2) / cfg.image_size
        return cfg.soft_edge_px * pixel

    def _paint(self, ground, inside, ground_color) -> torch.Tensor:
        """The empty scene's colours ``(B, 3, H, W)`` from :meth:`_ground_masks` and each image's
        ``ground_color (B, 3)``: sky where no ground, the ground colour, the valid square 1.25
        times lighter (at most 1)."""
        sky = torch.tensor(self.config.sky_color, dtype=ground_color.dtype, device=ground_color.device)
        rgb = ground_color[:, :, None, None]  # (B, 3, 1, 1)
        image = torch.where(ground[:, None], rgb, sky[None, :, None, None])
        lighter = (rgb * 1.25).clamp(max=1.0)
        if inside.dtype == torch.bool:
            return torch.where(inside[:, None], lighter, image)
        return image + inside[:, None] * (lighter - rgb)
