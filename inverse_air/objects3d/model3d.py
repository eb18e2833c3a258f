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

**Posterior** (per step): the core's state gives a coarse position; a glimpse of the image
around where that position projects (:meth:`Objects3D.glimpse`) is encoded, and the state and
the glimpse give a categorical over identity; a diagonal
Gaussian over ``u``; a wrapped normal over ``psi`` whose mean comes from a predicted 2-vector
``(cos, sin)``, so neither the network's output nor the density jumps at the wrap-around.

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
from ..object_model import ObjectStep
from .prior import LOG_PRIOR_PSI, log_prior_identity, logistic_log_prob, sample_prior
from .render3d import SceneRenderer
from .scene import SHAPES, YAW_SYMMETRY_DEG

_EDGE = 0.995  # target positions are clamped inside the open square tanh(u / 2) reaches


def wrapped_normal_log_prob(angle, mean, log_sigma, wraps: int = 4):
    """Density on the circle of ``N(mean, sigma)`` wrapped modulo 2 pi (``wraps`` terms each side)."""
    k = torch.arange(-wraps, wraps + 1, dtype=angle.dtype, device=angle.device)
    diff = (angle - mean).unsqueeze(-1) + 2 * math.pi * k  # (..., 2 * wraps + 1)
    return torch.logsumexp(normal_log_prob(diff, 0.0, log_sigma.unsqueeze(-1)), dim=-1)


def position_to_u(position):
    return 2 * torch.atanh(position.clamp(-_EDGE, _EDGE))


class Objects3D(nn.Module):
    """The 3D object model (see the module docstring) for :class:`inverse_air.air.AIR`.

    Latents per object: ``identity`` long index into :data:`SHAPES`, ``position`` ``(2,)``
    ``(x, z)`` world units, ``yaw`` radians (in (-45, 45] degrees, the cube's period). Each
    step also reports ``identity_probs`` ``(S,)``, the posterior over identity (for decompose).
    """

    latent_size = len(SHAPES) + 4  # one-hot identity, position, cos psi, sin psi
    scene_fields = ("shape", "position", "yaw_deg")
    pose_keys = ("position", "yaw")
    _OUT = len(SHAPES) + 2 + 2 + 2 + 1  # logits, u offset, u log-sigma, psi vector, psi log-sigma

    def __init__(self, config: AIRConfig):
        super().__init__()
        c = config.objects
        self.renderer = SceneRenderer(c.render)
        self.object_scale = c.render.object_scale
        self.glimpse_size = c.glimpse_size
        self.where = nn.Linear(config.lstm_size, 2)
        self.glimpse_encoder = ImageEncoder(3, c.glimpse_size, c.glimpse_channels, c.glimpse_features)
        self.head = MLP(config.lstm_size + c.glimpse_features, 256, self._OUT)
        observable = [YAW_SYMMETRY_DEG[name] is not None for name in SHAPES]
        self.register_buffer("yaw_observable", torch.tensor(observable, dtype=torch.float32),
                             persistent=False)  # (S,) 1.0 where a shape shows its yaw

    def glimpse(self, image: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """The ``G x G`` pixels of ``image (B, C, S, S)`` around where ``position (B, 2)``
        projects (bilinear, zeros outside): ``(B, C, G, G)``."""
        B, C, S, _ = image.shape
        G = self.glimpse_size
        centre = self.renderer.project(position)  # (B, 2) grid coordinates
        # The window's pixel centres relative to its centre, in the image's grid units: what
        # F.affine_grid gives for a scale-and-shift transform, without its batched matmul.
        offsets = ((2 * torch.arange(G, device=image.device, dtype=image.dtype) + 1 - G) / S)
        grid_x = offsets.view(1, 1, G) + centre[:, 0].view(B, 1, 1)  # (B, 1, G)
        grid_y = offsets.view(1, G, 1) + centre[:, 1].view(B, 1, 1)  # (B, G, 1)
        grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)  # (B, G, G, 2)
        return F.grid_sample(image, grid, align_corners=False)

    def infer_step(self, hidden, image, sample: bool, target=None, densities: bool = True) -> ObjectStep:
        """Attend, then infer: a coarse position from the core's state places a glimpse; the
        glimpse and the state give the posterior (the position as an offset from the coarse one)."""
        S = len(SHAPES)
        u_coarse = self.where(hidden)  # (B, 2)
        feats = self.glimpse_encoder(self.glimpse(image, torch.tanh(u_coarse / 2)))
        out = self.head(torch.cat([hidden, feats], dim=1))  # (B, OUT)
        logits = out[:, :S]
        u_mean, u_log_sigma = u_coarse + out[:, S:S + 2], soft_clamp(out[:, S + 2:S + 4], -7.0, 2.0)
        psi_mean = torch.atan2(out[:, S + 5], out[:, S + 4])
        psi_log_sigma = soft_clamp(out[:, S + 6], -6.0, 1.0)
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
        psi = torch.remainder(psi + math.pi, 2 * math.pi) - math.pi  # same point on the circle
        position = torch.tanh(u / 2)
        vector = torch.cat([F.one_hot(identity, S).to(hidden.dtype), position,
                            torch.cos(psi).unsqueeze(1), torch.sin(psi).unsqueeze(1)], dim=1)
        z = {"identity": identity, "position": position, "yaw": psi / 4,
             "identity_probs": log_probs.detach().exp()}
        if not densities:
            return ObjectStep(z=z, vector=vector, log_q_discrete=None, kl=None, target_nll=None)
        log_q_identity = log_probs.gather(1, identity.unsqueeze(1)).squeeze(1)
        log_q_u = normal_log_prob(u, u_mean, u_log_sigma).sum(-1)
        has_yaw = self.yaw_observable.to(hidden.dtype)[identity]  # (B,)
        log_q_psi = has_yaw * wrapped_normal_log_prob(psi, psi_mean, psi_log_sigma)
        kl = (log_q_identity - log_prior_identity()) + (log_q_u - logistic_log_prob(u).sum(-1)) \
            + has_yaw * (log_q_psi - LOG_PRIOR_PSI)
        nll = None if target is None else -(log_q_identity + log_q_u + log_q_psi)
        return ObjectStep(z=z, vector=vector, log_q_discrete=log_q_identity, kl=kl, target_nll=nll)

    def render(self, z_pres, objects, grad: bool = False):
        """The scene's image ``(B, 3, S, S)``; with ``grad``, the hard image's values with the
        soft renderer's gradients (see the module docstring)."""
        shape = torch.where(z_pres > 0.5, objects["identity"], torch.full_like(objects["identity"], -1))
        if not grad:
            return self.renderer(shape, objects["position"], objects["yaw"])
        soft = self.renderer(shape, objects["position"], objects["yaw"], soft=True)
        with torch.no_grad():
            hard = self.renderer(shape, objects["position"], objects["yaw"])
        return hard + (soft - soft.detach())

    def empty(self, batch: int, like: torch.Tensor):
        return {"identity": torch.zeros(batch, 0, dtype=torch.long, device=like.device),
                "position": like.new_zeros(batch, 0, 2), "yaw": like.new_zeros(batch, 0),
                "identity_probs": like.new_zeros(batch, 0, len(SHAPES))}

    def constrain_pose(self, objects: dict[str, torch.Tensor]) -> None:
        """Keep refined poses valid, in place: positions inside the scene square."""
        objects["position"].clamp_(-_EDGE, _EDGE)

    def describe(self, objects: dict[str, torch.Tensor]) -> list[list[dict]]:
        """Each image's steps in a scene file's terms: ``shape``, ``position`` ``[x, z]``
        (world units), ``yaw_deg`` (cubes: in [-45, 45), 0 for the yaw-less sphere and
        cylinder) and ``shape_probs`` (the posterior over shapes)."""
        # Rounded as arrays, then made Python numbers at once (tolist): the loops below only
        # build dictionaries (about 10x faster than rounding number by number).
        identity = objects["identity"].cpu().tolist()
        position = np.round(objects["position"].detach().cpu().numpy().astype(np.float64), 4).tolist()
        yaw = np.mod(np.rad2deg(objects["yaw"].detach().cpu().numpy().astype(np.float64)) + 45.0, 90.0) - 45.0
        yaw = np.round(yaw, 2).tolist()
        probs = np.round(objects["identity_probs"].detach().cpu().numpy().astype(np.float64), 4).tolist()
        shows_yaw = [YAW_SYMMETRY_DEG[name] is not None for name in SHAPES]
        return [[{"shape": SHAPES[k], "position": position[b][i],
                  "yaw_deg": yaw[b][i] if shows_yaw[k] else 0.0,
                  "shape_probs": dict(zip(SHAPES, probs[b][i]))}
                 for i, k in enumerate(identity[b])] for b in range(len(identity))]

    @torch.no_grad()
    def outline_masks(self, z_pres, objects):
        """``(B, N, S, S)`` bool: each present object's whole silhouette (hidden parts
        included): where rendering it alone changes the empty scene's image."""
        B, N = z_pres.shape
        empty = self.render(z_pres[:, :0], self.empty(B, z_pres))  # (B, 3, S, S)
        masks = []
        for i in range(N):
            only = torch.zeros_like(z_pres)
            only[:, i] = z_pres[:, i]
            masks.append((self.render(only, objects) - empty).abs().amax(dim=1) > 0.02)
        return torch.stack(masks, 1)

    def sample_prior(self, counts: np.ndarray, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """Scenes from the prior (:func:`inverse_air.objects3d.prior.sample_prior`)."""
        return sample_prior(counts, generator, self.object_scale)


# ---------------------------------------------------------------------------- data <-> latents
def targets_from_arrays(arrays: dict[str, np.ndarray], max_steps: int) -> dict[str, torch.Tensor]:
    """Ground truth in a dataset's format -> teacher-forcing targets in canonical order.

    Args:
        arrays: ``shape (B, K)`` (-1 empty), ``position (B, K, 2)``, ``yaw (B, K)`` degrees.

    Returns:
        ``z_pres (B, N)`` float, ``identity (B, N)`` long (0 where absent), ``position
        (B, N, 2)``, ``yaw (B, N)`` radians; objects sorted nearest-first (largest ``z``).

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
    sorted_shape = np.pad(take(shape), ((0, 0), (0, pad)), constant_values=-1)
    position = np.pad(take(np.asarray(arrays["position"], np.float32)), ((0, 0), (0, pad), (0, 0)))
    yaw = np.pad(take(np.asarray(arrays["yaw"], np.float32)), ((0, 0), (0, pad)))
    return {"z_pres": torch.from_numpy((sorted_shape >= 0).astype(np.float32)),
            "identity": torch.from_numpy(np.maximum(sorted_shape, 0).astype(np.int64)),
            "position": torch.from_numpy(position.astype(np.float32)),
            "yaw": torch.deg2rad(torch.from_numpy(yaw.astype(np.float32)))}


def latents_to_arrays(latents) -> dict[str, np.ndarray]:
    """Inferred latents -> a dataset's ground-truth format (for metrics and decompose)."""
    z_pres = latents.z_pres.detach().cpu().numpy() > 0.5
    shape = np.where(z_pres, latents.objects["identity"].cpu().numpy(), -1)
    return {"count": z_pres.sum(1).astype(np.int64), "shape": shape.astype(np.int64),
            "position": latents.objects["position"].detach().cpu().numpy().astype(np.float32),
            "yaw": np.mod(np.rad2deg(latents.objects["yaw"].detach().cpu().numpy()), 360.0).astype(np.float32)}
