"""The 3D object model: identity and pose of spheres, cubes and cylinders, drawn by PyTorch3D.

**Generative model** (no learned parameters). The count ``n`` follows the AIR presence chain
(:mod:`inverse_air.air`; by default uniform over the training data's counts). Each object has
an ``identity``, a ``position = (x, z) = tanh(u / 2)`` and, for a cube, ``psi = 4 yaw``, drawn
from the scene prior (:mod:`inverse_air.objects3d.prior`, which also gives their densities).
Spheres and cylinders do not show their yaw, so for them ``psi`` is not a latent: it enters no
term of the ELBO or of the teacher-forced loss (were it kept, two objects in three would teach
the network that yaw is uniform noise, flattening the yaw posterior and stalling its learning).

The image is the renderer's (:mod:`inverse_air.objects3d.render3d`) with a Gaussian pixel
likelihood of standard deviation ``pixel_sigma``. Rendered with ``grad=True`` (the ELBO,
``decompose --refine``) the image's value is the hard render and its gradient the soft
render's, so pose gradients exist while the likelihood sees the image the model draws.

**Scene latents** (what the model's ``variation`` varies: camera, light, ground colour) are
inferred once per image by a scene encoder of their own (:meth:`Objects3D.infer_scene`): a
diagonal Gaussian over each bounded latent's ``u`` (:class:`~inverse_air.objects3d.prior.
Interval`) and a wrapped normal over the light's azimuth. Every step reads them, and the core
explains the empty scene they draw away (:mod:`inverse_air.air`). The means come from the
encoder's features, the spreads from a head of their own on the features *detached*: the
spread's fit wants one thing of every image at first (grow, to cover the prior), and when it
shaped the encoder its features collapsed to constants within a hundred steps and the camera
and the light were never learned (5,500 sleep steps at the prior's mean); with the spreads
detached, the same encoder reads the camera within 400 steps (the object head's colour and
size spreads are detached the same way: position error 0.084 after 1,500 steps instead of 0.158
after 2,000). The encoder reads the image and
its log standardized (per image and channel: :func:`standardized`), where the ground's edges
look the same whatever its colour and the light: in the scene fit alone (everything varied,
batches of 64), the camera's angles stayed at chance for 1,200 steps from the image alone,
fell to 3 deg within 400-1,400 steps with the image standardized, and to 2.2 and 1.1 deg by
2,000 with its log standardized. The glimpse encoder, where the look varies, reads its glimpse
and the glimpse's log standardized too: a shape classifier on glimpses of objects of every
colour, light and size reached 90% in 600 steps with it, 76% without.

**Posterior** (per step): the core's state gives a coarse position; a glimpse of the image
around where that position projects with the image's camera (:meth:`Objects3D.glimpse`) is
encoded, and the state, the glimpse and the scene latents give a categorical over identity; a
diagonal Gaussian over ``u``; a wrapped normal over ``psi`` whose mean comes from a predicted
2-vector ``(cos, sin)``, so neither the network's output nor the density jumps at the
wrap-around; and, where they vary, diagonal Gaussians over the colour's and the size's ``u``.
With nothing varying, the model is exactly the fixed-look model of format-1 checkpoints.

Where the camera's azimuth varies, the head's yaw is the yaw seen from the camera (a cube
turned by the camera's azimuth looks as an unturned one does from azimuth 0), turned into the
world's by adding the inferred azimuth: the head need not learn to rotate by it (unrotated,
the yaw stayed at chance, 24 deg, after 4,000 steps).

**Object order.** Scenes are sets; for teacher forcing (sleep and supervised phases) the
objects are put in a canonical order, nearest to the camera (largest ``z``) first.
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
from .prior import (LOG_PRIOR_PSI, Interval, intervals, light_direction, log_prior_identity,
                    logistic_log_prob, sample_prior)
from .render3d import LOOK, SceneRenderer
from .scene import SHAPES, YAW_SYMMETRY_DEG

_EDGE = 0.995  # target positions are clamped inside the open square tanh(u / 2) reaches
CAMERA = ("elevation", "azimuth", "distance")
"""The camera latent's coordinates (``camera[:, i]``), by the names of their intervals."""
SCENE_KEYS = {"camera": ("camera",), "light": ("light_direction", "ambient", "diffuse"), "ground": ("ground_color",)}
"""The scene latents (renderer looks) each varying factor brings."""


def wrapped_normal_log_prob(angle, mean, log_sigma, wraps: int = 4):
    """Density on the circle of ``N(mean, sigma)`` wrapped modulo 2 pi (``wraps`` terms each side)."""
    k = torch.arange(-wraps, wraps + 1, dtype=angle.dtype, device=angle.device)
    diff = (angle - mean).unsqueeze(-1) + 2 * math.pi * k  # (..., 2 * wraps + 1)
    return torch.logsumexp(normal_log_prob(diff, 0.0, log_sigma.unsqueeze(-1)), dim=-1)


def wrap(angle):
    """The same point on the circle, in [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def position_to_u(position):
    return 2 * torch.atanh(position.clamp(-_EDGE, _EDGE))


def standardized(image: torch.Tensor) -> torch.Tensor:
    """The log of ``image (B, C, S, S)`` (plus 0.02) less its mean, over its standard deviation
    (each image and channel; the deviation floored at 0.02, so a flat image stays near zero).
    In the log a colour or an intensity multiplies nothing: it shifts, and edges and shading
    show as differences."""
    log = torch.log(image + 0.02)
    mean = log.mean((2, 3), keepdim=True)
    return (log - mean) / (log.std((2, 3), keepdim=True) + 0.02)


def _heads(x, head, sizes: dict, spread=None, spread_sizes: dict | None = None) -> dict[str, torch.Tensor]:
    """``head(x)`` split into named outputs by ``sizes``; with ``spread``, also the spreads
    ``spread(x.detach())`` split by ``spread_sizes``: a spread's fit must not shape the
    features its mean reads (see the module docstring)."""
    out = dict(zip(sizes, head(x).split(list(sizes.values()), 1)))
    if spread is not None:
        out.update(zip(spread_sizes, spread(x.detach()).split(list(spread_sizes.values()), 1)))
    return out


class _Draw:
    """Draws the posterior's values for one step (or one image's scene) and sums their
    log-densities: each continuous latent from its Gaussian over ``u`` (or wrapped normal over an
    angle), taken from the target when teacher-forced, sampled, or its mean."""

    def __init__(self, sample: bool, teacher: bool, densities: bool):
        self.sample, self.teacher, self.densities = sample, teacher, densities
        self.log_q = 0.0  # sum of log q of everything drawn
        self.log_p = 0.0  # sum of log p of everything drawn

    def interval(self, interval: Interval, mean, log_sigma, target=None):
        """A bounded latent: ``(B, ...)`` value."""
        if self.teacher:
            u = interval.to_u(target)
        elif self.sample:
            u = mean + torch.exp(log_sigma) * torch.randn_like(mean)
        else:
            u = mean
        if self.densities:
            self.log_q = self.log_q + normal_log_prob(u, mean, log_sigma).reshape(len(u), -1).sum(1)
            self.log_p = self.log_p + logistic_log_prob(u).reshape(len(u), -1).sum(1)
        return interval.value(u)

    def angle(self, mean, log_sigma, target=None):
        """An angle uniform on the circle under the prior: ``(B,)`` radians in [-pi, pi)."""
        if self.teacher:
            angle = target
        elif self.sample:
            angle = mean + torch.exp(log_sigma) * torch.randn_like(mean)
        else:
            angle = mean
        angle = wrap(angle)
        if self.densities:
            self.log_q = self.log_q + wrapped_normal_log_prob(angle, mean, log_sigma)
            self.log_p = self.log_p + LOG_PRIOR_PSI
        return angle


class Objects3D(nn.Module):
    """The 3D object model (see the module docstring) for :class:`inverse_air.air.AIR`.

    Latents per object: ``identity`` long index into :data:`SHAPES`, ``position`` ``(2,)``
    ``(x, z)`` world units, ``yaw`` radians (in (-45, 45] degrees, the cube's period), and where
    they vary ``color`` ``(3,)`` and ``size``. Each step also reports ``identity_probs``
    ``(S,)``, the posterior over identity (for decompose). Scene latents (where they vary):
    ``camera`` ``(3,)`` (elevation and azimuth in degrees, distance), ``light_direction``
    ``(3,)``, ``ambient``, ``diffuse``, ``ground_color`` ``(3,)``: the renderer's :data:`LOOK`.
    """

    pose_keys = ("position", "yaw")

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
        # Per object: one-hot identity, position, cos psi, sin psi, and colour and size where they vary.
        self.latent_size = S + 4 + 3 * v.color + v.size
        self.scene_fields = ("shape", "position", "yaw_deg") + ("color",) * v.color + ("size",) * v.size
        self.scene_keys = tuple(k for factor, keys in SCENE_KEYS.items() if getattr(v, factor) for k in keys)
        # Scene: normalized camera (3); light height, cos and sin of its azimuth, ambient, diffuse (5); ground (3).
        self.scene_size = 3 * v.camera + 5 * v.light + 3 * v.ground
        # The head's outputs, by name and size (torch.split).
        self.out_sizes = {"logits": S, "u": 2, "u_log_sigma": 2, "psi": 2, "psi_log_sigma": 1}
        if v.color:
            self.out_sizes.update(color=3)
        if v.size:
            self.out_sizes.update(size=1)
        # The spreads of colour and size, from a head of their own on detached inputs (as the
        # scene's: see the module docstring).
        self._look_spreads = {f"{k}_log_sigma": n for k, n in (("color", 3), ("size", 1)) if getattr(v, k)}
        self.scene_sizes = {}
        if v.camera:
            self.scene_sizes.update(camera=3, camera_log_sigma=3)
        if v.light:
            self.scene_sizes.update(light_height=1, light_height_log_sigma=1, light_azimuth=2,
                                    light_azimuth_log_sigma=1, ambient=1, ambient_log_sigma=1,
                                    diffuse=1, diffuse_log_sigma=1)
        if v.ground:
            self.scene_sizes.update(ground_color=3, ground_color_log_sigma=3)
        self._scene_means = {k: n for k, n in self.scene_sizes.items() if not k.endswith("_log_sigma")}
        self._scene_spreads = {k: n for k, n in self.scene_sizes.items() if k.endswith("_log_sigma")}
        self.where = nn.Linear(config.lstm_size, 2)
        # Where the look varies, the glimpse encoder also reads the glimpse's log standardized
        # (:func:`standardized`): a shape then looks the same whatever its colour and light.
        self.standardize_glimpse = bool(v.varied)
        # The yaw's spread is bounded: a wrapped normal of sigma e (the fixed look's bound) is
        # nearly flat on the circle, so its mean gets no gradient; where the look varies, the
        # features that show the yaw come late, the spread reached that bound first and the
        # yaw was never learned (24 deg, chance, after 4,000 steps). Bounded at 1 (14 deg of
        # cube yaw), the mean keeps its gradient.
        self.psi_log_sigma_max = 0.0 if v.varied else 1.0
        self.glimpse_encoder = ImageEncoder(3 + 3 * self.standardize_glimpse, c.glimpse_size, c.glimpse_channels,
                                            c.glimpse_features)
        self.head = MLP(config.lstm_size + c.glimpse_features + self.scene_size, 256, sum(self.out_sizes.values()))
        self.look_spread = MLP(config.lstm_size + c.glimpse_features + self.scene_size, 128,
                               sum(self._look_spreads.values())) if self._look_spreads else None
        if self.scene_size:
            self.scene_encoder = ImageEncoder(6, c.render.image_size, c.scene_channels, c.scene_features)
            self.scene_head = MLP(c.scene_features, 256, sum(self._scene_means.values()))
            self.scene_spread = MLP(c.scene_features, 128, sum(self._scene_spreads.values()))
        observable = [YAW_SYMMETRY_DEG[name] is not None for name in SHAPES]
        self.register_buffer("yaw_observable", torch.tensor(observable, dtype=torch.float32),
                             persistent=False)  # (S,) 1.0 where a shape shows its yaw

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
        """The image's camera, light and ground colour (what varies), read from the image by
        the scene encoder (see the module docstring)."""
        features = self.scene_encoder(torch.cat([image, standardized(image)], 1))
        out = _heads(features, self.scene_head, self._scene_means, self.scene_spread, self._scene_spreads)
        draw = _Draw(sample, target is not None, densities)
        z = self._scene_values(out, draw, target or {})
        with torch.no_grad():
            mean = z if not sample and target is None else self._scene_values(out, _Draw(False, False, False), {})
        kl = draw.log_q - draw.log_p if densities else None
        nll = -draw.log_q if target is not None else None
        return SceneStep(z=z, mean={k: v.detach() for k, v in mean.items()}, vector=self.scene_vector(z), kl=kl,
                         target_nll=nll)

    def _scene_values(self, out: dict, draw: "_Draw", t: dict) -> dict[str, torch.Tensor]:
        """The scene latents the posterior's parameters ``out`` give, drawn by ``draw``
        (targets ``t`` when teacher-forced)."""
        bound = lambda key: soft_clamp(out[key], -7.0, 2.0)
        z = {}
        if self.variation.camera:
            log_sigma = bound("camera_log_sigma")
            parts = [draw.interval(self.intervals[name], out["camera"][:, i], log_sigma[:, i],
                                   t["camera"][:, i] if t else None) for i, name in enumerate(CAMERA)]
            z["camera"] = torch.stack(parts, 1)
        if self.variation.light:
            direction = t.get("light_direction")
            height = draw.interval(self.intervals["light_height"], out["light_height"][:, 0],
                                   bound("light_height_log_sigma")[:, 0], None if direction is None else direction[:, 1])
            azimuth = draw.angle(torch.atan2(out["light_azimuth"][:, 1], out["light_azimuth"][:, 0]),
                                 soft_clamp(out["light_azimuth_log_sigma"][:, 0], -6.0, 1.0),
                                 None if direction is None else torch.atan2(direction[:, 2], direction[:, 0]))
            z["light_direction"] = light_direction(height, azimuth)
            for key in ("ambient", "diffuse"):
                z[key] = draw.interval(self.intervals[key], out[key][:, 0], bound(f"{key}_log_sigma")[:, 0], t.get(key))
        if self.variation.ground:
            z["ground_color"] = draw.interval(self.intervals["ground_color"], out["ground_color"],
                                              bound("ground_color_log_sigma"), t.get("ground_color"))
        return z

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
        out = _heads(inputs, self.head, self.out_sizes, self.look_spread, self._look_spreads)
        logits = out["logits"]
        u_mean, u_log_sigma = u_coarse + out["u"], soft_clamp(out["u_log_sigma"], -7.0, 2.0)
        psi_mean = torch.atan2(out["psi"][:, 1], out["psi"][:, 0])
        if "camera" in scene:  # the head reads the yaw as the camera sees it: turn it into the world's
            psi_mean = wrap(psi_mean + 4 * torch.deg2rad(scene["camera"][:, 1]))
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
        vector = [F.one_hot(identity, S).to(hidden.dtype), position,
                  torch.cos(psi).unsqueeze(1), torch.sin(psi).unsqueeze(1)]
        z = {"identity": identity, "position": position, "yaw": psi / 4,
             "identity_probs": log_probs.detach().exp()}
        draw = _Draw(sample, target is not None, densities)
        for key in ("color", "size"):
            if key in out:
                mean, log_sigma = out[key], soft_clamp(out[f"{key}_log_sigma"], -7.0, 2.0)
                if key == "size":
                    mean, log_sigma = mean[:, 0], log_sigma[:, 0]
                z[key] = draw.interval(self.intervals[key], mean, log_sigma, None if target is None else target[key])
                vector.append(self.intervals[key].normalized(z[key]).reshape(len(hidden), -1))
        vector = torch.cat(vector, dim=1)
        if not densities:
            return ObjectStep(z=z, vector=vector, log_q_discrete=None, kl=None, target_nll=None)
        log_q_identity = log_probs.gather(1, identity.unsqueeze(1)).squeeze(1)
        log_q_u = normal_log_prob(u, u_mean, u_log_sigma).sum(-1)
        has_yaw = self.yaw_observable.to(hidden.dtype)[identity]  # (B,)
        log_q_psi = has_yaw * wrapped_normal_log_prob(psi, psi_mean, psi_log_sigma)
        kl = (log_q_identity - log_prior_identity()) + (log_q_u - logistic_log_prob(u).sum(-1)) \
            + has_yaw * (log_q_psi - LOG_PRIOR_PSI)
        nll = None if target is None else -(log_q_identity + log_q_u + log_q_psi)
        if isinstance(draw.log_q, torch.Tensor):  # colour and size
            kl = kl + (draw.log_q - draw.log_p)
            nll = None if nll is None else nll - draw.log_q
        return ObjectStep(z=z, vector=vector, log_q_discrete=log_q_identity, kl=kl, target_nll=nll)

    def scene_vector(self, scene: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, scene_size)``: the scene latents as the network reads them (each in [0, 1], the
        light's azimuth as cosine and sine)."""
        parts = []
        if self.variation.camera:
            parts += [self.intervals[name].normalized(scene["camera"][:, i]).unsqueeze(1)
                      for i, name in enumerate(CAMERA)]
        if self.variation.light:
            d = scene["light_direction"]
            azimuth = torch.atan2(d[:, 2], d[:, 0])
            parts += [d[:, 1:2], torch.cos(azimuth).unsqueeze(1), torch.sin(azimuth).unsqueeze(1),
                      self.intervals["ambient"].normalized(scene["ambient"]).unsqueeze(1),
                      self.intervals["diffuse"].normalized(scene["diffuse"]).unsqueeze(1)]
        if self.variation.ground:
            parts.append(self.intervals["ground_color"].normalized(scene["ground_color"]))
        return torch.cat(parts, 1)

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
        if self.variation.color:
            out["color"] = like.new_zeros(batch, 0, 3)
        if self.variation.size:
            out["size"] = like.new_zeros(batch, 0)
        return out

    def constrain_pose(self, objects: dict[str, torch.Tensor]) -> None:
        """Keep refined poses valid, in place: positions inside the scene square."""
        objects["position"].clamp_(-_EDGE, _EDGE)

    def describe(self, objects: dict[str, torch.Tensor]) -> list[list[dict]]:
        """Each image's steps in a scene file's terms: ``shape``, ``position`` ``[x, z]``
        (world units), ``yaw_deg`` (cubes: in [-45, 45), 0 for the yaw-less sphere and
        cylinder), where they vary ``color`` and ``size``, and ``shape_probs`` (the posterior
        over shapes)."""
        # Rounded as arrays, then made Python numbers at once (tolist): the loops below only
        # build dictionaries (about 10x faster than rounding number by number).
        identity = objects["identity"].cpu().tolist()
        position = np.round(objects["position"].detach().cpu().numpy().astype(np.float64), 4).tolist()
        yaw = np.mod(np.rad2deg(objects["yaw"].detach().cpu().numpy().astype(np.float64)) + 45.0, 90.0) - 45.0
        yaw = np.round(yaw, 2).tolist()
        probs = np.round(objects["identity_probs"].detach().cpu().numpy().astype(np.float64), 4).tolist()
        look = {k: np.round(objects[k].detach().cpu().numpy().astype(np.float64), 3).tolist()
                for k in ("color", "size") if k in objects}
        shows_yaw = [YAW_SYMMETRY_DEG[name] is not None for name in SHAPES]
        return [[{"shape": SHAPES[k], "position": position[b][i],
                  "yaw_deg": yaw[b][i] if shows_yaw[k] else 0.0,
                  **{key: values[b][i] for key, values in look.items()},
                  "shape_probs": dict(zip(SHAPES, probs[b][i]))}
                 for i, k in enumerate(identity[b])] for b in range(len(identity))]

    def describe_scene(self, scene: dict[str, torch.Tensor]) -> list[dict]:
        """Each image's inferred look in a scene file's terms (``camera``, ``light``,
        ``ground_color``; what varies)."""
        values = {k: np.round(v.detach().cpu().numpy().astype(np.float64), 4).tolist() for k, v in scene.items()}
        B = len(next(iter(values.values()))) if values else 0
        out = [{} for _ in range(B)]
        for b, d in enumerate(out):
            if "camera" in values:
                elevation, azimuth, distance = values["camera"][b]
                d["camera"] = {"elevation_deg": elevation, "azimuth_deg": azimuth, "distance": distance}
            if "light_direction" in values:
                d["light"] = {"direction": values["light_direction"][b], "ambient": values["ambient"][b],
                              "diffuse": values["diffuse"][b]}
            if "ground_color" in values:
                d["ground_color"] = values["ground_color"][b]
        return out

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


# ---------------------------------------------------------------------------- data <-> latents
PER_IMAGE = ("camera", "light_direction", "ambient", "diffuse", "ground_color")
"""Ground-truth arrays of the scene's look, ``(B, ...)``, where they vary."""
PER_OBJECT = ("color", "size")
"""Ground-truth arrays of the objects' look, ``(B, K, ...)``, where they vary."""


def targets_from_arrays(arrays: dict[str, np.ndarray], max_steps: int) -> dict[str, torch.Tensor]:
    """Ground truth in a dataset's format -> teacher-forcing targets in canonical order.

    Args:
        arrays: ``shape (B, K)`` (-1 empty), ``position (B, K, 2)``, ``yaw (B, K)`` degrees, and
            any of :data:`PER_OBJECT` ``(B, K, ...)`` and :data:`PER_IMAGE` ``(B, ...)``.

    Returns:
        ``z_pres (B, N)`` float, ``identity (B, N)`` long (0 where absent), ``position
        (B, N, 2)``, ``yaw (B, N)`` radians, the per-object looks ``(B, N, ...)``; objects sorted
        nearest-first (largest ``z``); and the per-image looks ``(B, ...)`` as they are.

    Raises:
        ValueError: a scene holds more than ``max_steps`` objects.
    """
    shape = np.asarray(arrays["shape"])
    present = shape >= 0
    if present.sum(1).max(initial=0) > max_steps:
        raise ValueError(f"a scene holds {present.sum(1).max()} objects; the model infers at "
                         f"most {max_steps}")
    z = np.where(present, arrays["position"][..., 1], -np.inf)
    order = np.argsort(-z, axis=1, kind="stable")[:, :max_steps]  # present first, nearest first
    take = lambda a: np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)
    B, K = shape.shape
    pad = max(0, max_steps - K)
    padded = lambda a: np.pad(take(np.asarray(a, np.float32)), ((0, 0), (0, pad)) + ((0, 0),) * (a.ndim - 2))
    sorted_shape = np.pad(take(shape), ((0, 0), (0, pad)), constant_values=-1)
    position = np.pad(take(np.asarray(arrays["position"], np.float32)), ((0, 0), (0, pad), (0, 0)))
    yaw = np.pad(take(np.asarray(arrays["yaw"], np.float32)), ((0, 0), (0, pad)))
    out = {"z_pres": torch.from_numpy((sorted_shape >= 0).astype(np.float32)),
           "identity": torch.from_numpy(np.maximum(sorted_shape, 0).astype(np.int64)),
           "position": torch.from_numpy(position.astype(np.float32)),
           "yaw": torch.deg2rad(torch.from_numpy(yaw.astype(np.float32)))}
    for key in PER_OBJECT:
        if key in arrays:
            out[key] = torch.from_numpy(np.ascontiguousarray(padded(arrays[key])))
    for key in PER_IMAGE:
        if key in arrays:
            out[key] = torch.from_numpy(np.asarray(arrays[key], np.float32))
    return out


def latents_to_arrays(latents) -> dict[str, np.ndarray]:
    """Inferred latents -> a dataset's ground-truth format (for metrics and decompose)."""
    z_pres = latents.z_pres.detach().cpu().numpy() > 0.5
    shape = np.where(z_pres, latents.objects["identity"].cpu().numpy(), -1)
    out = {"count": z_pres.sum(1).astype(np.int64), "shape": shape.astype(np.int64),
           "position": latents.objects["position"].detach().cpu().numpy().astype(np.float32),
           "yaw": np.mod(np.rad2deg(latents.objects["yaw"].detach().cpu().numpy()), 360.0).astype(np.float32)}
    for key in PER_OBJECT:
        if key in latents.objects:
            out[key] = latents.objects[key].detach().cpu().numpy().astype(np.float32)
    for key in PER_IMAGE:
        if key in latents.scene:
            out[key] = latents.scene[key].detach().cpu().numpy().astype(np.float32)
    return out
