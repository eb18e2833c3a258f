"""The 2D object model: digits drawn by a learned decoder on a canvas (the paper's multi-MNIST).

**Generative model.** The count ``n`` follows the AIR presence chain (:mod:`inverse_air.air`).
Each object has

- ``z_what ~ N(0, I)`` (``Objects2DConfig.z_what_size``, 50): its appearance;
- ``z_where = (scale, x, y)`` (box convention in :mod:`inverse_air.objects2d.render2d`, the same as
  the dataset's boxes) with independent normal priors ``scale ~ N(scale_prior_mean,
  scale_prior_std)`` and ``x, y ~ N(0, position_prior_std)``.

The learned decoder (:class:`inverse_air.objects2d.render2d.Decoder`) draws ``z_what`` into a window in
[0, 1]; the spatial transformer pastes it at ``z_where``; the image's mean is the **sum** of the
pasted windows, not clamped (the inked parts of the dataset's digits never overlap, so a sum is
the model of the data; a clamp would stop the gradient wherever two windows' faint
backgrounds add up past 1). With ``Objects2DConfig.composite = "over"`` the decoder also
draws each pixel's opacity ``a`` and the windows are laid over each other on a black ground,
step 1 in front: ``image = sum_i a_i c_i prod_{j < i} (1 - a_j)`` (objects may occlude each
other, and a window drawn over an object already drawn explains nothing more, so it is not
worth its KL). Pixels are Gaussian around that mean with standard deviation
``AIRConfig.pixel_sigma`` (0.3 in the 2D preset). The decoder is part of the model being
learned: it trains on the ELBO with the inference network (same optimizer group).

**Posterior** (per step; attend, then infer). The core's state gives a diagonal Gaussian over
``z_where``; the window at the *sampled* ``z_where`` is read from the image (the transformer's
inverse direction, :func:`inverse_air.objects2d.render2d.crop`) and encoded into a diagonal Gaussian over
``z_what``, so ``z_what`` describes what is in the window the decoder will draw. Both are
reparameterized; their KL terms against the priors are exact. There is no discrete object
latent (only presence needs score-function gradients).

**Object order.** For teacher forcing (``--supervised``) objects are put in a canonical order,
left to right (increasing ``x``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import AIRConfig
from ..densities import normal_kl, normal_log_prob, soft_clamp
from ..networks import ImageEncoder
from ..object_model import ObjectStep
from .render2d import Decoder, crop, paste

WHERE_SIZE = 3
"""``z_where = (scale, x, y)``."""

PROPOSED_SCALES = 4
"""Window sizes :meth:`Objects2D.propose` tries at each proposed centre, evenly across the
scale's range."""


class Objects2D(nn.Module):
    """The 2D object model (see the module docstring) for :class:`inverse_air.air.AIR`.

    Latents per object: ``where (3,)`` = (scale, x, y) and ``what (D,)``.
    """

    scene_fields = ("box",)
    choices: dict[str, int] = {}

    def __init__(self, config: AIRConfig):
        super().__init__()
        c = config.objects
        self.canvas_size = c.canvas_size
        self.channels = c.channels
        self.glimpse_size = c.glimpse_size
        self.z_what_size = c.z_what_size
        self.latent_size = WHERE_SIZE + c.z_what_size
        # z_where posterior: (loc offset from the prior mean (3), log-sigma (3)) from the state.
        # Small weights: every step starts near the prior (a centred window of the usual size)
        # with a moderate spread, and learns to move from there.
        self.where_head = nn.Linear(config.lstm_size, 2 * WHERE_SIZE)
        with torch.no_grad():
            self.where_head.weight.mul_(0.1)
            self.where_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0] + [math.log(0.1)] * 3))
        self.glimpse_encoder = ImageEncoder(c.channels, c.glimpse_size, c.glimpse_channels, c.glimpse_features)
        self.what_head = nn.Linear(c.glimpse_features, 2 * c.z_what_size)
        self.composite = c.composite
        self.scale_bounds = (c.scale_min, c.scale_max) if c.scale_max > 0 else None
        self.decoder = Decoder(c.z_what_size, c.decoder_hidden, c.window_size, c.decoder_output_bias, c.channels,
                               opacity=c.composite == "over")
        prior_mean = torch.tensor([c.scale_prior_mean, 0.0, 0.0])
        prior_std = torch.tensor([c.scale_prior_std, c.position_prior_std, c.position_prior_std])
        self.register_buffer("where_prior_mean", prior_mean, persistent=False)
        self.register_buffer("where_prior_log_sigma", prior_std.log(), persistent=False)

    def infer_step(self, hidden, image, sample: bool, target=None, densities: bool = True, scene=None) -> ObjectStep:
        """Where from the core's state; what from the window there (see the module docstring)."""
        where_loc, where_log_sigma = self.where_head(hidden).split(WHERE_SIZE, dim=1)  # (B, 3) each
        if self.scale_bounds is None:
            where_loc = where_loc + self.where_prior_mean
        else:  # a sigmoid from scale_min to scale_max, at the prior mean for a zero output
            low, high = self.scale_bounds
            raw, centre = where_loc.split([1, 2], dim=1)  # (B, 1), (B, 2)
            mean = (self.where_prior_mean[0] - low) / (high - low)
            scale = low + (high - low) * torch.sigmoid(raw + torch.logit(mean))
            where_loc = torch.cat([scale, centre + self.where_prior_mean[1:]], dim=1)
        where_log_sigma = soft_clamp(where_log_sigma, -7.0, 1.0)
        if target is not None:
            where = target["where"]
        elif sample:
            where = where_loc + torch.exp(where_log_sigma) * torch.randn_like(where_loc)
        else:
            where = where_loc
        what_loc, what_log_sigma = self.what_posterior(image, where)
        if sample and target is None:
            what = what_loc + torch.exp(what_log_sigma) * torch.randn_like(what_loc)
        else:  # evaluation, and teacher forcing (the data have no appearance labels)
            what = what_loc
        vector = torch.cat([where, what], dim=1)
        if not densities:
            return ObjectStep(z={"where": where, "what": what}, vector=vector, log_q_discrete=None,
                              kl=None, target_nll=None)
        zeros = torch.zeros_like(what_loc)
        kl = normal_kl(where_loc, where_log_sigma, self.where_prior_mean, self.where_prior_log_sigma).sum(-1) \
            + normal_kl(what_loc, what_log_sigma, zeros, zeros).sum(-1)
        nll = None if target is None else -normal_log_prob(where, where_loc, where_log_sigma).sum(-1)
        return ObjectStep(z={"where": where, "what": what}, vector=vector,
                          log_q_discrete=hidden.new_zeros(hidden.shape[0]), kl=kl, target_nll=nll)

    def render(self, z_pres, objects, scene=None, grad: bool = False):
        """The decoded windows of the present objects put together (``composite``; see the
        module docstring): ``(B, C, S, S)`` (the decoder and the transformer are differentiable
        as they are: ``grad`` changes nothing)."""
        B, N = z_pres.shape
        C, S = self.channels, self.canvas_size
        if N == 0:
            return z_pres.new_zeros(B, C, S, S)
        windows = self.decoder(objects["what"].reshape(B * N, -1))  # (B * N, C or C + 1, G, G)
        canvases = paste(windows, objects["where"].reshape(B * N, WHERE_SIZE), S).view(B, N, -1, S, S)
        present = z_pres.view(B, N, 1, 1, 1)
        if self.composite == "sum":
            return (canvases * present).sum(1)
        colour, opacity = canvases.split([C, 1], dim=2)  # (B, N, C, S, S), (B, N, 1, S, S)
        opacity = opacity * present
        # What shows through to step i: every step in front of it (steps 1..i-1) let it through.
        through = torch.cumprod(torch.cat([torch.ones_like(opacity[:, :1]), 1 - opacity[:, :-1]], dim=1), dim=1)
        return (colour * opacity * through).sum(1)

    def what_posterior(self, image: torch.Tensor, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, log_sigma)``, each ``(B, D)``: the appearance posterior the glimpse of
        ``image (B, C, S, S)`` at windows ``where (B, 3)`` gives."""
        glimpse = crop(image, where, self.glimpse_size)  # (B, C, G, G)
        loc, log_sigma = self.what_head(self.glimpse_encoder(glimpse)).split(self.z_what_size, dim=1)
        return loc, soft_clamp(log_sigma, -7.0, 1.0)

    @torch.no_grad()
    def cost(self, image: torch.Tensor, objects: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, N)`` nats each object costs to describe: the KL of the appearance posterior the
        glimpse at its window gives against the prior (what the ELBO charges for its ``what``),
        ``decompose --refine``'s energy (:mod:`inverse_air.refine`)."""
        B, N = objects["where"].shape[:2]
        if N == 0:
            return image.new_zeros(B, 0)
        loc, log_sigma = self.what_posterior(image.repeat_interleave(N, 0), objects["where"].reshape(B * N, WHERE_SIZE))
        return normal_kl(loc, log_sigma, torch.zeros_like(loc), torch.zeros_like(loc)).sum(-1).view(B, N)

    def order_key(self, objects: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, N)``: left to right (the window's ``x``), as :func:`targets_from_arrays`."""
        return objects["where"][..., 1]

    @torch.no_grad()
    def propose(self, image: torch.Tensor, residual: torch.Tensor, scene=None) -> list[dict[str, torch.Tensor]]:
        """Objects worth trying where ``image (B, C, S, S)`` is least explained (``residual``:
        the image minus its reconstruction; no ``scene`` latents in 2D), for ``decompose --refine``'s count search
        (:mod:`inverse_air.refine`): a window centred on the peak of the residual's energy
        (squared, summed over channels, averaged over a square of half the prior's object size)
        at :data:`PROPOSED_SCALES` sizes across the scale's range; ``what`` from the glimpse
        there (the posterior mean). Each proposal is ``{"where": (B, 3), "what": (B, D)}``."""
        S = self.canvas_size
        energy = (residual ** 2).sum(1, keepdim=True)  # (B, 1, S, S)
        side = max(3, round(float(self.where_prior_mean[0]) * S / 2)) // 2 * 2 + 1  # odd
        energy = F.avg_pool2d(energy, side, stride=1, padding=side // 2, count_include_pad=False)
        peak = energy.flatten(1).argmax(1)  # (B,)
        centre = torch.stack([peak % S, peak // S], 1).to(image.dtype)  # (B, 2): column, row
        centre = (2 * centre + 1) / S - 1  # pixel centres in the box convention
        low, high = self.scale_bounds or (float(self.where_prior_mean[0]) / 2, float(self.where_prior_mean[0]) * 2)
        proposals = []
        for scale in torch.linspace(low, high, PROPOSED_SCALES).tolist():
            where = torch.cat([centre.new_full((len(centre), 1), scale), centre], 1)
            proposals.append({"where": where, "what": self.what_posterior(image, where)[0]})
        return proposals

    def empty(self, batch: int, like: torch.Tensor):
        return {"where": like.new_zeros(batch, 0, WHERE_SIZE), "what": like.new_zeros(batch, 0, self.z_what_size)}

    def free_latents(self, objects, scene):
        """The windows (``where``): what ``decompose --refine`` moves (the decoder's ``what``
        stays the amortized one)."""
        return {"where": objects["where"]}

    def bound_latents(self, free, objects, scene):
        """``objects`` with the windows of ``free``, kept valid: a positive size, the centre
        near the canvas."""
        where = free["where"]
        where = torch.cat([where[..., :1].clamp(0.05, 2.0), where[..., 1:].clamp(-1.5, 1.5)], -1)
        return {**objects, "where": where}, scene

    def describe(self, objects: dict[str, torch.Tensor]) -> list[list[dict]]:
        """Each image's steps: ``box`` ``[scale, x, y]`` (the dataset's convention) and
        ``window_px`` ``[left, top, side]`` in canvas pixels."""
        where = objects["where"].detach().cpu().numpy()
        S = self.canvas_size
        out = []
        for boxes in where:
            steps = []
            for scale, x, y in boxes:
                side = scale * S
                left, top = (x + 1) * S / 2 - side / 2, (y + 1) * S / 2 - side / 2
                steps.append({"box": [round(float(v), 4) for v in (scale, x, y)],
                              "window_px": [round(float(v), 1) for v in (left, top, side)]})
            out.append(steps)
        return out

    def outline_masks(self, z_pres: torch.Tensor, objects: dict[str, torch.Tensor], scene=None) -> torch.Tensor:
        """``(B, N, S, S)`` bool: the pixels inside each step's window (what overlays outline)."""
        S = self.canvas_size
        centres = (torch.arange(S, device=objects["where"].device, dtype=objects["where"].dtype) + 0.5) * 2 / S - 1
        scale, x, y = objects["where"].unbind(-1)  # (B, N) each
        inside_x = (centres.view(1, 1, 1, S) - x[..., None, None]).abs() <= scale[..., None, None]
        inside_y = (centres.view(1, 1, S, 1) - y[..., None, None]).abs() <= scale[..., None, None]
        return inside_x & inside_y


# ---------------------------------------------------------------------------- data <-> latents
def targets_from_arrays(arrays: dict[str, np.ndarray], max_steps: int) -> dict[str, torch.Tensor]:
    """Ground truth in a 2D dataset's format -> teacher-forcing targets, left to right.

    Args:
        arrays: ``count (B,)`` and ``box (B, K, 3)`` (scale, x, y); the first ``count`` slots
            of each scene hold its digits.

    Returns:
        ``z_pres (B, N)`` float and ``where (B, N, 3)`` (zeros where absent), objects in order
        of increasing ``x``.

    Raises:
        ValueError: a scene holds more than ``max_steps`` objects.
    """
    count = np.asarray(arrays["count"])
    box = np.asarray(arrays["box"], dtype=np.float32)
    if count.max(initial=0) > max_steps:
        raise ValueError(f"a scene holds {count.max()} objects; the model infers at most {max_steps}")
    B, K = box.shape[:2]
    present = np.arange(K)[None, :] < count[:, None]  # (B, K)
    key = np.where(present, box[..., 1], np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :max_steps]  # present first, left to right
    where = np.take_along_axis(box, order[..., None], axis=1) * np.take_along_axis(present, order, axis=1)[..., None]
    pad = max(0, max_steps - where.shape[1])
    where = np.pad(where, ((0, 0), (0, pad), (0, 0)))
    z_pres = (np.arange(max_steps)[None, :] < count[:, None]).astype(np.float32)
    return {"z_pres": torch.from_numpy(z_pres), "where": torch.from_numpy(where.astype(np.float32))}


def latents_to_arrays(latents) -> dict[str, np.ndarray]:
    """Inferred latents -> a 2D dataset's ground-truth format: ``count (B,)``, ``box (B, N, 3)``
    (zeros in absent slots; the first ``count`` slots hold the objects, in inference order)."""
    z_pres = latents.z_pres.detach().cpu().numpy() > 0.5
    box = latents.objects["where"].detach().cpu().numpy() * z_pres[..., None]
    return {"count": z_pres.sum(1).astype(np.int64), "box": box.astype(np.float32)}
