"""The 3D generative model's renderer: the only module that imports PyTorch3D.

A :class:`SceneRenderer` turns a batch of scenes given as tensors into images. Scenes in one
batch may hold different numbers of objects, zero included: object slots are padded and an
empty slot has ``shape == -1``.

Two modes share the meshes, camera and shading:

- **hard** (``soft=False``): one face per pixel, no gradients; fast, for datasets and display.
- **soft** (``soft=True``): PyTorch3D's blurred rasterizer (several faces per pixel) gives each
  object a soft coverage, colour and depth; objects are composited front to back (see
  :meth:`SceneRenderer._soft_layers`). Differentiable with respect to every object's position
  and yaw.

Each object is rasterized as its own mesh; both modes end in the same per-pixel "over"
compositing of object layers sorted by depth.

**Convention.** World frame as in :mod:`inverse_air.objects3d.scene`: +Y up, ground ``y = 0``. An object
with ``position = (x, z)`` and ``yaw`` has its unit mesh scaled by ``config.object_scale``,
rotated by ``yaw`` radians about +Y (right-handed: +X turns towards -Z, counter-clockwise seen
from above), lifted to rest on the ground and moved to ``(x, 0, z)``. Shading is flat
Lambertian: each face gets ``albedo * (ambient + diffuse * max(0, n . l))``. Images are
``(B, 3, H, W)`` floats in [0, 1], row 0 at the top, as a person sees the scene from the camera.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from pytorch3d.io import load_obj
from pytorch3d.renderer import FoVPerspectiveCameras, MeshRasterizer, RasterizationSettings
from pytorch3d.renderer import look_at_view_transform
from pytorch3d.structures import Meshes

from .config import RenderConfig
from .scene import POSITION_MAX, POSITION_MIN, SHAPES, Scene, scenes_to_arrays
from ..images import to_uint8

MESH_DIR = Path(__file__).resolve().parent / "meshes"
"""Where the unit primitive meshes live (``sphere.obj``, ``cube.obj``, ``cylinder.obj``;
package data, made by ``make_meshes.py`` beside them)."""

_Z_NEAR, _Z_FAR = 1.0, 10.0


def scenes_to_tensors(scenes: list[Scene], max_objects: int | None = None):
    """Pad a list of scenes into renderer inputs.

    Returns:
        shape ``(B, K)`` long (-1 = empty slot), position ``(B, K, 2)`` float, yaw ``(B, K)``
        float in radians, with ``K = max_objects`` or the largest object count.
    """
    arrays = scenes_to_arrays(scenes, max_objects)
    return (torch.from_numpy(arrays["shape"]), torch.from_numpy(arrays["position"]),
            torch.deg2rad(torch.from_numpy(arrays["yaw"])))


class SceneRenderer(torch.nn.Module):
    """Render batches of scenes of spheres, cubes and cylinders (see the module docstring).

    Args:
        config: camera, light, colours, image size and rasterization settings.
        mesh_dir: folder holding ``{shape}.obj`` for every shape in :data:`SHAPES`.

    The renderer has no learnable parameters; its constants are buffers, so ``.to(device)``
    moves it; inputs must be on the same device.
    """

    def __init__(self, config: RenderConfig = RenderConfig(), mesh_dir: Path = MESH_DIR):
        super().__init__()
        self.config = config
        verts, faces = [], []
        for name in SHAPES:
            v, f, _ = load_obj(Path(mesh_dir) / f"{name}.obj", load_textures=False)
            v = v * config.object_scale
            v[:, 1] -= v[:, 1].min()  # rest on the ground plane y = 0
            verts.append(v)
            faces.append(f.verts_idx)
        V = max(v.shape[0] for v in verts)
        F = max(f.shape[0] for f in faces)
        template_verts = torch.zeros(len(SHAPES), V, 3)  # (S, V, 3)
        template_faces = torch.full((len(SHAPES), F, 3), -1, dtype=torch.long)  # (S, F, 3)
        for s, (v, f) in enumerate(zip(verts, faces)):
            template_verts[s, : v.shape[0]] = v
            template_faces[s, : f.shape[0]] = f
        self.register_buffer("template_verts", template_verts, persistent=False)
        self.register_buffer("template_faces", template_faces, persistent=False)
        light = torch.tensor(config.light_direction, dtype=torch.float32)
        self.register_buffer("light", light / light.norm(), persistent=False)
        self.register_buffer("albedo", torch.tensor(config.object_color), persistent=False)
        R, T = look_at_view_transform(
            dist=config.camera_distance, elev=config.camera_elevation_deg,
            azim=config.camera_azimuth_deg, at=(config.camera_target,))
        self.register_buffer("cam_R", R, persistent=False)  # (1, 3, 3)
        self.register_buffer("cam_T", T, persistent=False)  # (1, 3)
        self.register_buffer("background", self._background(), persistent=False)  # (3, H, W)
        # World -> NDC as one 4x4 matrix (row vectors), so that ``project`` does not build
        # a camera object per call (it runs at every inference step).
        self.register_buffer("world_to_ndc", self._cameras("cpu").get_full_projection_transform()
                             .get_matrix()[0].clone(), persistent=False)  # (4, 4)

    # ------------------------------------------------------------------ public API
    def forward(self, shape: torch.Tensor, position: torch.Tensor, yaw: torch.Tensor,
                soft: bool = False) -> torch.Tensor:
        """Render a batch of scenes.

        Args:
            shape: ``(B, K)`` long, index into :data:`SHAPES`, -1 for an empty slot.
            position: ``(B, K, 2)`` float, ``(x, z)`` on the ground plane (world units).
            yaw: ``(B, K)`` float, radians about +Y.
            soft: differentiable soft rasterization instead of the fast hard one.

        Returns:
            ``(B, 3, H, W)`` images in [0, 1].
        """
        B, K = shape.shape
        if position.shape != (B, K, 2) or yaw.shape != (B, K):
            raise ValueError(f"expected position (B, K, 2) and yaw (B, K) for shape {(B, K)}, "
                             f"got {tuple(position.shape)} and {tuple(yaw.shape)}")
        present = shape >= 0  # (B, K)
        if not bool(present.any()):
            return self.background.to(position.dtype).expand(B, 3, -1, -1).clone()
        meshes, face_colors = self._object_meshes(shape[present], position[present], yaw[present])
        if soft:
            alpha, color, depth = self._soft_layers(meshes, face_colors)
        else:
            alpha, color, depth = self._hard_layers(meshes, face_colors)
        # Scatter the N present objects back into their (B, K) slots; empty slots are clear.
        H = W = self.config.image_size
        slots = present.reshape(-1).nonzero().squeeze(1)  # (N,)
        alpha = alpha.new_zeros(B * K, H, W).index_copy(0, slots, alpha).view(B, K, H, W)
        color = color.new_zeros(B * K, H, W, 3).index_copy(0, slots, color).view(B, K, H, W, 3)
        depth = depth.new_full((B * K, H, W), float("inf")).index_copy(0, slots, depth)
        return self._composite(alpha, color, depth.view(B, K, H, W))

    def render_scenes(self, scenes: list[Scene]) -> np.ndarray:
        """Hard-render scene descriptions to ``(B, H, W, 3)`` uint8 images."""
        shape, position, yaw = (t.to(self.template_verts.device) for t in scenes_to_tensors(scenes))
        with torch.no_grad():
            images = self(shape, position, yaw)
        return to_uint8(images)

    def project(self, position: torch.Tensor) -> torch.Tensor:
        """Where objects' centres appear in the image.

        Args:
            position: ``(..., 2)`` ``(x, z)`` on the ground plane (world units).

        Returns:
            ``(..., 2)`` image coordinates of the point half an object above ``position``,
            in ``grid_sample``'s convention with ``align_corners=False``: ``(u, v)`` with
            u = -1 at the left edge and +1 at the right edge of the image, v = -1 at the top
            and +1 at the bottom. (PyTorch3D's NDC has +X left and +Y up: both are flipped.)
        """
        flat = position.reshape(-1, 2)
        height = torch.full_like(flat[:, :1], 0.5 * self.config.object_scale)
        points = torch.cat([flat[:, :1], height, flat[:, 1:], torch.ones_like(height)], dim=1)  # (P, 4)
        clip = points @ self.world_to_ndc.to(points.dtype)  # (P, 4) homogeneous
        ndc = clip[:, :2] / clip[:, 3:]
        return (-ndc).reshape(position.shape)

    # ------------------------------------------------------------------ internals
    def _cameras(self, device) -> FoVPerspectiveCameras:
        return FoVPerspectiveCameras(device=device, R=self.cam_R, T=self.cam_T,
                                     fov=self.config.fov_deg, znear=_Z_NEAR, zfar=_Z_FAR)

    def _object_meshes(self, shape, position, yaw):
        """Pose the template meshes: one PyTorch3D mesh per object.

        Args:
            shape: ``(N,)`` long in ``[0, S)``; position ``(N, 2)``; yaw ``(N,)`` radians.

        Returns:
            the meshes and each packed face's flat-shaded colour ``(F_total, 3)``.
        """
        verts = self.template_verts[shape].to(position.dtype)  # (N, V, 3)
        x, y, z = verts.unbind(-1)
        cos, sin = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]  # (N, 1)
        pos_x, pos_z = position[:, :1], position[:, 1:]  # (N, 1) each
        verts = torch.stack([cos * x + sin * z + pos_x, y, -sin * x + cos * z + pos_z], dim=-1)
        # template faces are padded with -1 at the end, as Meshes expects
        meshes = Meshes(verts=verts, faces=self.template_faces[shape])
        normals = self._face_normals(meshes)
        light = self.light.to(normals.dtype)
        intensity = self.config.ambient + self.config.diffuse * (normals @ light).clamp(min=0)
        face_colors = intensity[:, None] * self.albedo.to(normals.dtype)  # (F_total, 3)
        return meshes, face_colors

    @staticmethod
    def _face_normals(meshes) -> torch.Tensor:
        """Unit outward normals of the packed faces, ``(F_total, 3)``."""
        face_verts = meshes.verts_packed()[meshes.faces_packed()]  # (F_total, 3, 3)
        normals = torch.cross(face_verts[:, 1] - face_verts[:, 0],
                              face_verts[:, 2] - face_verts[:, 0], dim=-1)
        return normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def _rasterize(self, meshes, blur_radius: float, faces_per_pixel: int):
        settings = RasterizationSettings(
            image_size=self.config.image_size, blur_radius=blur_radius,
            faces_per_pixel=faces_per_pixel, cull_backfaces=self.config.cull_backfaces,
            bin_size=0, perspective_correct=False)
        rasterizer = MeshRasterizer(cameras=self._cameras(meshes.device), raster_settings=settings)
        return rasterizer(meshes)

    def _hard_layers(self, meshes, face_colors):
        """Per object: binary coverage ``(N, H, W)``, colour ``(N, H, W, 3)``, depth ``(N, H, W)``."""
        fragments = self._rasterize(meshes, blur_radius=0.0, faces_per_pixel=1)
        pix_to_face = fragments.pix_to_face[..., 0]  # (N, H, W)
        hit = pix_to_face >= 0
        color = face_colors[pix_to_face.clamp(min=0)]  # (N, H, W, 3)
        depth = torch.where(hit, fragments.zbuf[..., 0], float("inf"))
        return hit.to(color.dtype), color, depth

    def _soft_layers(self, meshes, face_colors):
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
        fragments = self._rasterize(meshes, blur_radius, cfg.soft_faces_per_pixel)
        pix_to_face = fragments.pix_to_face  # (N, H, W, Kf)
        hit = pix_to_face >= 0
        face = pix_to_face.clamp(min=0)
        facing = self._facing(meshes)  # (F_total,)
        prob = torch.sigmoid(-fragments.dists / sigma) * facing[face] * hit  # (N, H, W, Kf)
        # The front faces of a convex object tile its silhouette without overlap, so their
        # coverages add up: across an edge shared by two faces they sum to one exactly.
        total = prob.sum(dim=-1)  # (N, H, W)
        alpha = total.clamp(max=1.0)
        total = total.clamp(min=1e-12)
        color = (prob[..., None] * face_colors[face]).sum(dim=-2) / total[..., None]
        depth = (prob * fragments.zbuf).sum(dim=-1) / total
        return alpha, color, torch.where(alpha > 1e-6, depth, float("inf"))

    def _composite(self, alpha, color, depth):
        """Composite object layers front to back ("over"), then the background.

        Args:
            alpha: ``(B, K, H, W)`` coverage; color ``(B, K, H, W, 3)``; depth ``(B, K, H, W)``
                with ``inf`` where an object is absent.

        Returns:
            ``(B, 3, H, W)`` images.
        """
        order = depth.argsort(dim=1)  # (B, K, H, W), nearest first
        alpha = alpha.gather(1, order)
        color = color.gather(1, order[..., None].expand_as(color))
        # transmittance in front of each layer: (B, K + 1, H, W)
        transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha], 1), 1)
        rgb = (transmittance[:, :-1, ..., None] * alpha[..., None] * color).sum(dim=1)  # (B, H, W, 3)
        background = self.background.to(rgb.dtype).permute(1, 2, 0)  # (H, W, 3)
        rgb = rgb + transmittance[:, -1, ..., None] * background
        return rgb.permute(0, 3, 1, 2)

    def _facing(self, meshes) -> torch.Tensor:
        """How much each face turns towards the camera, ``(F_total,)`` in [0, 1]: 0 when it
        faces away or is edge-on, 1 once its normal is ``asin(0.05)`` (about 3 degrees) or more
        past edge-on."""
        normals = self._face_normals(meshes)
        centres = meshes.verts_packed()[meshes.faces_packed()].mean(dim=1)  # (F_total, 3)
        eye = self._cameras(centres.device).get_camera_center().to(centres.dtype)  # (1, 3)
        to_eye = eye - centres
        cos = (normals * to_eye).sum(-1) / to_eye.norm(dim=-1).clamp(min=1e-12)
        return (cos / 0.05).clamp(0.0, 1.0)

    def _background(self) -> torch.Tensor:
        """The empty scene: the ground plane (the valid region a shade lighter) and the sky.

        Each pixel's ray is intersected with ``y = 0`` analytically, so no mesh is needed.
        """
        cfg = self.config
        H = W = cfg.image_size
        cameras = self._cameras(torch.device("cpu"))
        # Pixel centres in PyTorch3D's NDC: +X left, +Y up; row 0 is the top of the image.
        ys = 1.0 - (2.0 * torch.arange(H) + 1.0) / H
        xs = 1.0 - (2.0 * torch.arange(W) + 1.0) / W
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (H*W, 2)
        near = cameras.unproject_points(torch.cat([points, torch.full_like(points[:, :1], 2.0)], 1),
                                        world_coordinates=True)
        far = cameras.unproject_points(torch.cat([points, torch.full_like(points[:, :1], 6.0)], 1),
                                       world_coordinates=True)
        direction = far - near
        t = -near[:, 1] / direction[:, 1]
        ground = (direction[:, 1] < 0) & (t > 0)
        hit = near + t[:, None] * direction
        in_range = (hit >= POSITION_MIN) & (hit <= POSITION_MAX)  # (H*W, 3)
        inside = ground & in_range[:, 0] & in_range[:, 2]
        ground_rgb = torch.tensor(cfg.ground_color)
        image = torch.where(ground[:, None], ground_rgb, torch.tensor(cfg.sky_color))
        image = torch.where(inside[:, None], (ground_rgb * 1.25).clamp(max=1.0), image)
        return image.reshape(H, W, 3).permute(2, 0, 1).contiguous()
