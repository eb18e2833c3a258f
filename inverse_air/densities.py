"""Densities and bounds shared by the object models (torch only, no renderer)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(x, mean, log_sigma):
    """Elementwise ``log N(x; mean, exp(log_sigma)^2)``."""
    return -0.5 * ((x - mean) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * LOG_2PI


def normal_kl(mean, log_sigma, prior_mean, prior_log_sigma):
    """Elementwise ``KL(N(mean, sigma^2) || N(prior_mean, prior_sigma^2))``, exact."""
    ratio = torch.exp(2 * (log_sigma - prior_log_sigma))
    return 0.5 * (ratio + ((mean - prior_mean) * torch.exp(-prior_log_sigma)) ** 2 - 1.0) \
        - (log_sigma - prior_log_sigma)


def soft_clamp(x, low: float, high: float):
    """Bound ``x`` to (low, high) smoothly. A hard clamp has zero gradient outside, so a
    log-sigma that overshoots its bound stays there (the yaw then is never learned); this one
    always lets the gradient back."""
    return low + F.softplus(high - F.softplus(high - x) - low)
