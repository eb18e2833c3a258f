"""The 3D object model: identity and pose of spheres, cubes and cylinders, drawn by PyTorch3D.

**Generative model** (no learned parameters). The count ``n`` follows the AIR presence chain
(:mod:`inverse_air.air`; by default uniform over the training data's counts). Each object has
an ``identity``, a ``position = (x, z) = tanh(u / 2)`` and, for a cube, ``psi = 4 yaw``, drawn
from the scene prior (:mod:`inverse_air.objects3d.prior`, which also gives their densities).
Spheres and cylinders do not show their yaw, so for them ``psi`` is not a latent: it enters no
term of the ELBO or of the teacher-forced loss (were it kept, two objects in three would teach
the network that yaw is uniform noise). What of the look varies (``variation``; the look
table, :mod:`inverse_air.objects3d.look`) is latent too: per image, inferred by the scene
posterior (:mod:`inverse_air.objects3d.scene_posterior`); per object, by each step.

The image is the renderer's (:mod:`inverse_air.objects3d.render3d`) with a Gaussian pixel
likelihood of standard deviation ``pixel_sigma``. Rendered with ``grad=True`` (the ELBO,
``decompose --refine``) the image's value is the hard render and its gradient the soft
render's, so pose gradients exist while the likelihood sees the image the model draws.

**Posterior** (per step): the core's state gives a coarse position; a glimpse of the image
around where that position projects with the image's camera (:meth:`Objects3D.glimpse`) is
encoded (with the glimpse's log standardized where ``standardize_glimpse``: a shape then looks
the same whatever its colour and light), and the state, the glimpse and the scene latents give
a categorical over identity; a diagonal Gaussian over ``u``; a wrapped normal over ``psi``
whose mean comes from a predicted 2-vector ``(cos, sin)``, so neither the network's output nor
the density jumps at the wrap-around; and the per-object looks that vary
(:class:`~inverse_air.objects3d.posterior.LookPosterior`). With nothing varying, the model is
exactly the fixed-look model of format-1 checkpoints.

Where the camera's azimuth varies, the head's yaw is the yaw seen from the camera (a cube
turned by the camera's azimuth looks as an unturned one does from azimuth 0), turned into the
world's by adding the inferred azimuth: the head need not learn to rotate by it.

Ground truth <-> latents, and the latents in a scene file's terms, are the codec's
(:mod:`inverse_air.objects3d.codec`); docs/looks3d.md records what was tried on the way here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import AIRConfig
from ..densities import normal_log_prob, soft_clamp
from ..networks import MLP, ImageEncoder
from ..object_model import ObjectStep, SceneStep
from . import codec
from .look import IMAGE, OBJECT, CameraPose, array_shape, arrays_of, varied
from .posterior import (LOG_SIGMA, Draw, Layout, LookPosterior, heads, standardized, taught_angle_log_prob, wrap,
                        wrapped_normal_log_prob)
from .prior import LOG_PRIOR_PSI, intervals, log_prior_identity, logistic_log_prob, sample_prior
from .render3d import LOOK, SceneRenderer
from .scene import SHAPES, YAW_SYMMETRY_DEG
from .scene_posterior import ScenePosterior

_EDGE = 0.995  # target positions are clamped inside the open square tanh(u / 2) reaches
PROPOSED_YAWS_DEG = (0.0, 22.5, 45.0, -22.5)
"""Yaws :meth:`Objects3D.propose` tries for a shape that shows its yaw (the cube: within 11.25
degrees of any yaw, its period being 90)."""
SILHOUETTE = 0.1
"""Near a residual's peak, the pixels whose squared residual is above this fraction of the
largest there are taken as the object's silhouette (on renders of single objects its centroid
lies 0.2 pixels from where the object's centre projects; the smoothed peak itself, 1.3)."""
PROPOSAL_GRID = 64
"""Ground positions per side that :meth:`Objects3D.propose` projects to find the one under a
residual's peak."""
_LEGACY_KEYS = {"scene_encoder.": "scene.encoder.", "scene_head.": "scene.head.", "scene_spread.": "scene.spread."}
"""Weights of the scene posterior as checkpoints before :mod:`.scene_posterior` named them."""


def position_to_u(position):
    return 2 * torch.atanh(position.clamp(-_EDGE, _EDGE))


class Objects3D(nn.Module):
    """The 3D object model (see the module docstring) for :class:`inverse_air.air.AIR`.

    Latents per object: ``identity`` long index into :data:`SHAPES`, ``position`` ``(2,)``
    ``(x, z)`` world units, ``yaw`` radians (in (-45, 45] degrees, the cube's period), and the
    per-object looks that vary (``color`` ``(3,)``, ``size``). Each step also reports
    ``identity_probs`` ``(S,)``, the posterior over identity (for decompose). Scene latents:
    the per-image looks that vary (``camera`` ``(3,)``, ``light_direction`` ``(3,)``,
    ``ambient``, ``diffuse``, ``ground_color`` ``(3,)``): the renderer's :data:`LOOK`.
    """

    choices = {"identity": len(SHAPES)}

    def __init__(self, config: AIRConfig):
        super().__init__()
        c = config.objects
        self.renderer = SceneRenderer(c.render)
        self.render_config = c.render
        self.variation = v = c.variation
        self.intervals = intervals(v, c.render)
        self.object_scale = c.render.object_scale
        self.glimpse_size = c.glimpse_size
        S = len(SHAPES)
        self.look = LookPosterior(varied(v.varied, OBJECT), self.intervals)
        """The posterior over the objects' looks that vary (colour, size)."""
        self.vector = Layout(identity=S, position=2, psi=2, **self.look.vector)
        """What the core reads back of each step: one-hot identity, position, cos and sin of psi, the looks."""
        self.latent_size = self.vector.size
        self.scene_fields = ("shape", "position", "yaw_deg") + tuple(f.scene[0] for f in self.look.factors)
        scene_factors = varied(v.varied, IMAGE)
        self.scene_size = sum(f.vector_size for f in scene_factors)
        # The head's outputs; the looks' spreads come from a head of their own on detached inputs.
        self.out_sizes = Layout(logits=S, u=2, u_log_sigma=2, psi=2, psi_log_sigma=1, **self.look.means)
        self.where = nn.Linear(config.lstm_size, 2)
        self.standardize_glimpse = c.standardize_glimpse
        self.psi_log_sigma_max, self.yaw_mean_first = c.psi_log_sigma_max, c.yaw_mean_first
        self.glimpse_encoder = ImageEncoder(3 + 3 * self.standardize_glimpse, c.glimpse_size, c.glimpse_channels,
                                            c.glimpse_features)
        reads = config.lstm_size + c.glimpse_features + self.scene_size
        self.head = MLP(reads, 256, self.out_sizes.size)
        self.look_spread = MLP(reads, 128, self.look.spreads.size) if self.look.factors else None
        self.scene_keys: tuple[str, ...] = ()
        if scene_factors:
            self.scene = ScenePosterior(scene_factors, self.intervals, c.render.image_size, c.scene_channels,
                                        c.scene_features)
            self.scene_keys = self.scene.keys
        observable = [YAW_SYMMETRY_DEG[name] is not None for name in SHAPES]
        self.register_buffer("yaw_observable", torch.tensor(observable, dtype=torch.float32),
                             persistent=False)  # (S,) 1.0 where a shape shows its yaw
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    # ------------------------------------------------------------------ inference
    def glimpse(self, image: torch.Tensor, position: torch.Tensor, camera: torch.Tensor | None = None) -> torch.Tensor:
        """The ``G x G`` pixels of ``image (B, C, S, S)`` around where ``position (B, 2)``
        projects with each image's ``camera (B, 3)`` (None: the render config's) (bilinear,
        zeros outside): ``(B, C, G, G)``."""
        B, C, S, _ = image.shape
        G = self.glimpse_size
        size = None if "size" not in self.intervals else (self.intervals["size"].low + self.intervals["size"].high) / 2
        centre = self.renderer.project(position, camera, size)  # (B, 2) grid coordinates
        # The window's pixel centres relative to its centre, in the image's grid units: what
        # F.affine_grid gives for a scale-and-shift transform, without its batched matmul.
        offsets = ((2 * torch.arange(G, device=image.device, dtype=image.dtype) + 1 - G) / S)
        grid_x = offsets.view(1, 1, G) + centre[:, 0].view(B, 1, 1)  # (B, 1, G)
        grid_y = offsets.view(1, G, 1) + centre[:, 1].view(B, 1, 1)  # (B, G, 1)
        grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)  # (B, G, G, 2)
        return F.grid_sample(image, grid, align_corners=False)

    def infer_scene(self, image, sample: bool, target=None, densities: bool = True) -> SceneStep:
        """The image's look that varies (camera, light, ground colour): the scene posterior's."""
        return self.scene(image, sample, target, densities)

    def infer_step(self, hidden, image, sample: bool, target=None, densities: bool = True, scene=None) -> ObjectStep:
        """Attend, then infer: a coarse position from the core's state places a glimpse; the
        glimpse, the state and the scene latents give the posterior (the position as an offset
        from the coarse one)."""
        S = len(SHAPES)
        scene = scene or {}
        u_coarse = self.where(hidden)  # (B, 2)
        glimpse = self.glimpse(image, torch.tanh(u_coarse / 2), scene.get("camera"))
        if self.standardize_glimpse:
            glimpse = torch.cat([glimpse, standardized(glimpse)], 1)
        feats = self.glimpse_encoder(glimpse)
        inputs = torch.cat([hidden, feats] + ([self.scene_vector(scene)] if self.scene_size else []), dim=1)
        out = heads(inputs, self.head, self.out_sizes, self.look_spread, self.look.spreads)
        logits = out["logits"]
        u_mean, u_log_sigma = u_coarse + out["u"], soft_clamp(out["u_log_sigma"], *LOG_SIGMA)
        psi_mean = torch.atan2(out["psi"][:, 1], out["psi"][:, 0])
        if "camera" in scene:  # the head reads the yaw as the camera sees it: turn it into the world's
            psi_mean = wrap(psi_mean + 4 * torch.deg2rad(CameraPose.of(scene["camera"]).azimuth_deg))
        psi_log_sigma = soft_clamp(out["psi_log_sigma"][:, 0], -6.0, self.psi_log_sigma_max)
        log_probs = F.log_softmax(logits, dim=-1)
        if target is not None:
            identity = target["identity"].clamp_min(0)
            u = position_to_u(target["position"])
            psi = 4 * target["yaw"]
        elif sample:
            identity = torch.multinomial(log_probs.detach().exp(), 1).squeeze(1)
            u = u_mean + torch.exp(u_log_sigma) * torch.randn_like(u_mean)
            psi = psi_mean + torch.exp(psi_log_sigma) * torch.randn_like(psi_mean)
        else:
            identity, u, psi = logits.argmax(-1), u_mean, psi_mean
        psi = wrap(psi)
        position = torch.tanh(u / 2)
        z = {"identity": identity, "position": position, "yaw": psi / 4,
             "identity_probs": log_probs.detach().exp()}
        draw = Draw(sample, target is not None, densities)
        z.update(self.look.draw(out, draw, target))
        vector = [F.one_hot(identity, S).to(hidden.dtype), position, torch.cos(psi).unsqueeze(1),
                  torch.sin(psi).unsqueeze(1)] + ([self.look.to_vector(z)] if self.look.factors else [])
        vector = torch.cat(vector, dim=1)
        if not densities:
            return ObjectStep(z=z, vector=vector, log_q_discrete=None, kl=None, target_nll=None)
        log_q_identity = log_probs.gather(1, identity.unsqueeze(1)).squeeze(1)
        log_q_u = normal_log_prob(u, u_mean, u_log_sigma).sum(-1)
        has_yaw = self.yaw_observable.to(hidden.dtype)[identity]  # (B,)
        log_q_psi = has_yaw * wrapped_normal_log_prob(psi, psi_mean, psi_log_sigma)
        kl = (log_q_identity - log_prior_identity()) + (log_q_u - logistic_log_prob(u).sum(-1)) \
            + has_yaw * (log_q_psi - LOG_PRIOR_PSI)
        nll = None if target is None else -(log_q_identity + log_q_u + has_yaw * taught_angle_log_prob(
            psi, psi_mean, psi_log_sigma, self.yaw_mean_first))
        if isinstance(draw.log_q, torch.Tensor):  # the looks
            kl = kl + (draw.log_q - draw.log_p)
            nll = None if nll is None else nll - draw.log_q
        return ObjectStep(z=z, vector=vector, log_q_discrete=log_q_identity, kl=kl, target_nll=nll)

    def tried_with(self, name: str, value: int) -> tuple[dict[str, float], ...]:
        """What :func:`~inverse_air.refine.try_choices` sets besides ``value`` of the discrete
        latent ``name``, one candidate each: a shape that shows its yaw (the cube) at the
        object's own yaw and at each of :data:`PROPOSED_YAWS_DEG` (a sphere's or a cylinder's
        yaw is whatever the network gave it, and a cube tried at it loses to the shape it would
        replace: from scratch, cubes were read as two cylinders), the others as they are."""
        if name == "identity" and YAW_SYMMETRY_DEG[SHAPES[value]] is not None:
            return ({},) + tuple({"yaw": math.radians(yaw)} for yaw in PROPOSED_YAWS_DEG)
        return ({},)

    def order_key(self, objects: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, N)``: nearest the camera (largest ``z``) first, as :func:`codec.targets_from_arrays`."""
        return -objects["position"][..., 1]

    @torch.no_grad()
    def propose(self, image: torch.Tensor, residual: torch.Tensor,
                scene: dict[str, torch.Tensor] | None = None) -> list[dict[str, torch.Tensor]]:
        """Objects worth trying where ``image (B, 3, S, S)`` is least explained (``residual``:
        the image minus its reconstruction), for the count search of :mod:`inverse_air.refine`:
        the peak of the residual's energy (squared, summed over channels, averaged over a square
        the size an object appears), the centroid of the pixels that differ around it
        (:data:`SILHOUETTE`), taken back to the ground position whose object centre projects
        nearest to it (with each image's camera where it is a latent), and there each
        shape, a cube at each of :data:`PROPOSED_YAWS_DEG`. Each proposal is ``{"identity":
        (B,), "position": (B, 2), "yaw": (B,), "identity_probs": (B, S)}`` (the per-object
        looks, where they vary, stay the step's)."""
        B, _, S, _ = image.shape
        camera = (scene or {}).get("camera")
        edge = torch.linspace(-_EDGE, _EDGE, PROPOSAL_GRID, device=image.device, dtype=image.dtype)
        grid = torch.cartesian_prod(edge, edge)  # (P, 2) ground positions (x, z)
        seen = self.renderer.project(grid if camera is None else grid.expand(B, -1, -1), camera)  # ([B,] P, 2)
        across = self.renderer.project(grid.new_tensor([[0.0, 0.0], [self.object_scale, 0.0]]))
        side = max(3, round(float((across[0] - across[1]).norm()) * S / 2)) // 2 * 2 + 1  # odd, pixels
        energy = (residual ** 2).sum(1)  # (B, S, S)
        peak = F.avg_pool2d(energy[:, None], side, stride=1, padding=side // 2,
                            count_include_pad=False).flatten(1).argmax(1)  # (B,)
        # The centroid of what differs near the peak: the smoothed peak leans toward the
        # brightest face; the centroid of an object's silhouette is where its centre projects.
        pixels = torch.arange(S, device=image.device)
        near = ((pixels.view(1, 1, S) - (peak % S).view(B, 1, 1)).abs() <= side) \
            & ((pixels.view(1, S, 1) - (peak // S).view(B, 1, 1)).abs() <= side)  # (B, S, S)
        local = energy * near
        weight = (local > SILHOUETTE * local.flatten(1).amax(1).view(B, 1, 1)).to(image.dtype)
        column = (weight * pixels.view(1, 1, S)).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)
        row = (weight * pixels.view(1, S, 1)).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)
        centre = (2 * torch.stack([column, row], 1) + 1) / S - 1  # (B, 2) grid coordinates
        nearest = ((seen.expand(B, -1, -1) - centre[:, None]) ** 2).sum(-1).argmin(1)  # (B,)
        position = grid[nearest]
        proposals = []
        for index, name in enumerate(SHAPES):
            for yaw in (PROPOSED_YAWS_DEG if YAW_SYMMETRY_DEG[name] is not None else (0.0,)):
                identity = torch.full((B,), index, dtype=torch.long, device=image.device)
                proposals.append({"identity": identity, "position": position,
                                  "yaw": position.new_full((B,), math.radians(yaw)),
                                  "identity_probs": F.one_hot(identity, len(SHAPES)).to(image.dtype)})
        return proposals

    def scene_vector(self, scene: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, scene_size)``: the scene latents as the network reads them (each in [0, 1], the
        light's azimuth as cosine and sine)."""
        return self.scene.look.to_vector(scene)

    # ------------------------------------------------------------------ the generative model
    def render(self, z_pres, objects, scene=None, grad: bool = False):
        """The scene's image ``(B, 3, S, S)``; with ``grad``, the hard image's values with the
        soft renderer's gradients (see the module docstring)."""
        shape = torch.where(z_pres > 0.5, objects["identity"], torch.full_like(objects["identity"], -1))
        look = {k: v for k, v in {**objects, **(scene or {})}.items() if k in LOOK}
        if not grad:
            return self.renderer(shape, objects["position"], objects["yaw"], **look)
        soft = self.renderer(shape, objects["position"], objects["yaw"], soft=True, **look)
        with torch.no_grad():
            hard = self.renderer(shape, objects["position"], objects["yaw"], **look)
        return hard + (soft - soft.detach())

    def empty(self, batch: int, like: torch.Tensor):
        out = {"identity": torch.zeros(batch, 0, dtype=torch.long, device=like.device),
               "position": like.new_zeros(batch, 0, 2), "yaw": like.new_zeros(batch, 0),
               "identity_probs": like.new_zeros(batch, 0, len(SHAPES))}
        for name, (per, factors) in arrays_of(self.variation.varied).items():
            if per == OBJECT:
                out[name] = like.new_zeros((batch, 0) + array_shape(factors))
        return out

    def free_latents(self, objects, scene):
        """Every continuous latent, unconstrained: each object's position as ``u``, its yaw,
        its looks' and the scene's looks' (:meth:`LookPosterior.free`), prefixed ``object.``
        and ``scene.``."""
        free = {"u": position_to_u(objects["position"]), "yaw": objects["yaw"]}
        free.update({f"object.{k}": v for k, v in self.look.free(objects).items()})
        if self.scene_keys:
            free.update({f"scene.{k}": v for k, v in self.scene.look.free(scene).items()})
        return free

    def bound_latents(self, free, objects, scene):
        """``objects`` and ``scene`` with :meth:`free_latents`' values, each valid (a position
        inside the scene square, a yaw in the cube's period, looks in their ranges)."""
        def part(prefix):
            return {k[len(prefix):]: v for k, v in free.items() if k.startswith(prefix)}

        objects = {**objects, "position": torch.tanh(free["u"] / 2), "yaw": wrap(4 * free["yaw"]) / 4,
                   **self.look.bound(part("object."))}
        scene = {**scene, **self.scene.look.bound(part("scene."))} if self.scene_keys else scene
        return objects, scene

    def describe(self, objects: dict[str, torch.Tensor]) -> list[list[dict]]:
        """Each image's steps in a scene file's terms (:func:`~inverse_air.objects3d.codec.describe_objects`)."""
        return codec.describe_objects(objects)

    def describe_scene(self, scene: dict[str, torch.Tensor]) -> list[dict]:
        """Each image's inferred look in a scene file's terms (:func:`~inverse_air.objects3d.codec.describe_look`)."""
        return codec.describe_look(scene)

    @torch.no_grad()
    def outline_masks(self, z_pres, objects, scene=None):
        """``(B, N, S, S)`` bool: each present object's whole silhouette (hidden parts
        included): where rendering it alone changes the empty scene's image."""
        B, N = z_pres.shape
        empty = self.render(z_pres[:, :0], self.empty(B, z_pres), scene)  # (B, 3, S, S)
        masks = []
        for i in range(N):
            only = torch.zeros_like(z_pres)
            only[:, i] = z_pres[:, i]
            masks.append((self.render(only, objects, scene) - empty).abs().amax(dim=1) > 0.02)
        return torch.stack(masks, 1)

    def sample_prior(self, counts: np.ndarray, generator: np.random.Generator,
                     max_objects: int | None = None) -> dict[str, np.ndarray]:
        """Scenes from the prior (:func:`inverse_air.objects3d.prior.sample_prior`)."""
        return sample_prior(counts, generator, self.render_config, self.variation, max_objects)


def _rename_legacy_keys(state_dict, prefix, *args) -> None:
    """Checkpoints made before the scene posterior had a module of its own name its weights
    ``scene_encoder.*``, ``scene_head.*``, ``scene_spread.*``: read them as today's."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        for old, new in _LEGACY_KEYS.items():
            if key.startswith(prefix + old):
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
