"""Training schedules: values that change with the training step, as pure functions of it.

**Presence-prior annealing.** Under the ELBO an object costs its KL, so early in training,
while the decoder still draws grey blobs that explain nothing, the inference network learns
that the cheapest answer is "no objects" and may never find them again (Eslami et al. 2016
annealed the presence prior; public reproductions start it near 1 and lower it in log space).
:func:`annealed_presence_prior` starts every step's ``p(z_pres_i = 1 | z_pres_{i-1} = 1)`` at
``start`` and moves it, linearly in log-odds, to the model's own prior over ``steps`` steps;
from then on the model's own prior is used.
"""

from __future__ import annotations

import torch


def annealed_presence_prior(target: torch.Tensor, start: float, steps: int, step: int) -> torch.Tensor:
    """The presence prior to train step ``step`` (counted from the first ELBO step) with.

    Args:
        target: ``(N,)`` the model's own per-step presence probabilities, each in (0, 1).
        start: the probability every step starts at, in (0, 1).
        steps: the length of the anneal (0: none, ``target`` from the first step).
        step: the step, 0-based; at ``step >= steps`` the result is ``target``.

    Returns:
        ``(N,)`` probabilities, of ``target``'s dtype and device: ``sigmoid((1 - f) *
        logit(start) + f * logit(target))`` with ``f = min(1, step / steps)``.

    Raises:
        ValueError: ``start`` outside (0, 1), or a negative ``steps`` or ``step``.
    """
    if not 0.0 < start < 1.0:
        raise ValueError(f"start must lie in (0, 1), got {start}")
    if steps < 0 or step < 0:
        raise ValueError(f"steps and step must be at least 0, got {steps} and {step}")
    if step >= steps:
        return target.clone()
    f = step / steps
    logit = lambda p: torch.log(p) - torch.log1p(-p)
    begin = logit(torch.full_like(target, start, dtype=torch.float64))
    return torch.sigmoid((1.0 - f) * begin + f * logit(target.double())).to(target.dtype)
