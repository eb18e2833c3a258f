"""The ELBO and its gradient estimator, per example.

``ELBO(x) = log p(x | z) - KL_scene - sum_i KL_i`` for one sample ``z ~ q(z | x)``, where
``KL_i`` is step ``i``'s ``log q - log p`` (:attr:`inverse_air.air.Latents.kl`) and
``KL_scene`` the image's scene latents' (:attr:`inverse_air.air.Latents.scene_kl`; 0 for a
model without them).

**Gradients.** Continuous latents are reparameterized, so ``ELBO`` itself carries their
gradient (through the soft renderer in 3D). Discrete latents (presence, 3D identity) get the
score-function (REINFORCE) term ``log q(d_i) * stopgrad(L_i - b_i)`` with

- the learning signal ``L_i = log p(x | z) - sum_{j >= i} KL_j``: only what step ``i``'s
  choices can change (earlier steps' terms do not depend on them);
- a baseline ``b_i`` fitted by least squares to ``L_i``, which lowers the variance without
  biasing the gradient. As in NVIL, signals are centred and scaled by running estimates of
  their mean ``m`` and standard deviation ``s`` (:func:`update_signal_stats`): the network
  (:class:`inverse_air.networks.Baseline`) predicts ``(L_i - m) / s`` and the score term uses
  ``(L_i - b_i) / s``, so neither depends on the image size or the pixel noise.

The training loss is ``-(ELBO + score term) + ((L - m) / s - b)^2``; its gradient is an
unbiased estimate of ``-grad ELBO`` for the inference network up to the scale ``1 / s`` of the
score term, plus the baseline's own regression gradient (the baseline enters the first part
only through ``stopgrad``). Beside reparameterized terms, which stay in nats, ``1 / s`` weighs
the discrete choices less (``s`` is about 1,000 nats for 64x64 RGB images at pixel sigma 0.1);
``normalized=False`` (``TrainConfig.score_signal = "nats"``) weighs the advantage in nats,
``L_i - (m + s b_i)``, for the ELBO's own gradient. Measured on 3D fine-tuning, neither kept
identity better than the other across seeds (docs/performance.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .air import AIR, Latents


class ELBOTerms(NamedTuple):
    """Per-example terms, each ``(B,)`` unless noted; reduced only by the training loop."""

    elbo: torch.Tensor
    log_likelihood: torch.Tensor
    kl: torch.Tensor
    """Sum over steps of log q - log p."""
    surrogate: torch.Tensor
    """ELBO + score-function term: maximize this (its value is not meaningful, its gradient is)."""
    baseline_loss: torch.Tensor
    """Squared error of the baseline over the reached steps."""


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """``sum over pixels of log N(x; mean, sigma^2)``: ``(B, C, H, W) -> (B,)``."""
    return (-0.5 * ((x - mean) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def learning_signals(log_likelihood: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """``L_i = log p(x | z) - sum_{j >= i} KL_j``: ``(B,), (B, N) -> (B, N)``."""
    kl_to_go = kl.flip(1).cumsum(1).flip(1)
    return log_likelihood.unsqueeze(1) - kl_to_go


def reached_steps(z_pres: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` 1.0 where a step was reached (it and every earlier step made a choice)."""
    return torch.cat([torch.ones_like(z_pres[:, :1]), z_pres[:, :-1]], dim=1)


def elbo_terms(x: torch.Tensor, recon: torch.Tensor, latents: Latents, baseline: torch.Tensor,
               signal_stats: torch.Tensor, sigma: float, normalized: bool = True) -> ELBOTerms:
    """The ELBO and its score-function surrogate for one sample of ``latents``.

    Args:
        x: ``(B, C, H, W)`` observed images.
        recon: ``(B, C, H, W)`` the generative model's mean image of ``latents``.
        latents: one sample from q (``infer(x, sample=True)``).
        baseline: ``(B, N)`` the baseline network's prediction of each step's normalized
            learning signal ``(L_i - m) / s``.
        signal_stats: ``(3,)`` running ``(m, s, initialized)`` of the learning signals.
        sigma: pixel noise standard deviation.
        normalized: weigh the score term by the normalized advantage ``(L - m) / s - b``;
            ``False``: by the advantage in nats (see the module docstring).
    """
    log_lik = gaussian_log_likelihood(x, recon, sigma)
    kl = latents.kl.sum(1)
    if latents.scene_kl is not None:  # charged once per image; no step's choice changes it
        kl = kl + latents.scene_kl
    mean, std = signal_stats[0], signal_stats[1]
    signal = (learning_signals(log_lik, latents.kl).detach() - mean) / std  # (B, N) normalized
    advantage = signal - baseline.detach()
    if not normalized:
        advantage = advantage * std
    surrogate = log_lik - kl + (latents.log_q_discrete * advantage).sum(1)
    # Steps after the first absent one make no choice: their baseline is not fitted.
    baseline_loss = (reached_steps(latents.z_pres) * (signal - baseline) ** 2).sum(1)
    return ELBOTerms(elbo=log_lik - kl, log_likelihood=log_lik, kl=kl, surrogate=surrogate,
                     baseline_loss=baseline_loss)


@torch.no_grad()
def update_signal_stats(stats: torch.Tensor, latents: Latents, log_likelihood: torch.Tensor,
                        momentum: float = 0.99, reduce=None) -> None:
    """Update the running ``(mean, std, initialized)`` of the reached steps' learning signals
    in place (the first call sets them from the batch). ``reduce`` sums a tensor over all
    training processes (:meth:`inverse_air.distributed.Context.all_reduce_sum`), so that every
    process keeps the same statistics, those of the global batch."""
    signal = learning_signals(log_likelihood, latents.kl)
    values = signal[reached_steps(latents.z_pres) > 0].double()
    sums = torch.stack([values.new_tensor(float(values.numel())), values.sum(), (values ** 2).sum()])
    if reduce is not None:
        sums = reduce(sums)
    count = sums[0].clamp_min(1.0)
    mean = sums[1] / count
    std = (sums[2] / count - mean ** 2).clamp_min(0.0).sqrt().clamp_min(1.0)
    mean, std = mean.to(stats.dtype), std.to(stats.dtype)
    if stats[2] == 0:
        stats.copy_(torch.stack([mean, std, torch.ones_like(mean)]))
    else:
        stats[0] = momentum * stats[0] + (1 - momentum) * mean
        stats[1] = momentum * stats[1] + (1 - momentum) * std


@torch.no_grad()
def image_terms(model: AIR, x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """What a model makes of images ``x (B, C, S, S)`` without labels, per image ``(B,)``:
    ``count``, the count deterministic inference gives (as ``evaluate`` and ``decompose``), and
    the terms of a one-sample estimate of the ELBO (``elbo``, ``log_likelihood``, ``kl``; the
    sample drawn from a generator seeded by ``seed``, so that the same model gives the same
    figures; the reconstruction's value, as in training)."""
    count = model.infer(x, sample=False, densities=False).count
    with torch.random.fork_rng(devices=[x.device.index] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        latents = model.infer(x, sample=True)
    log_likelihood = gaussian_log_likelihood(x, model.reconstruct(latents), model.config.pixel_sigma)
    kl = latents.kl.sum(1) + (latents.scene_kl if latents.scene_kl is not None else 0.0)
    return {"count": count, "elbo": log_likelihood - kl, "log_likelihood": log_likelihood, "kl": kl}
