"""Pieces of the 3D posteriors that the objects' (:mod:`inverse_air.objects3d.model3d`) and the
scene's (:mod:`inverse_air.objects3d.scene_posterior`) share: named layouts of a network's
outputs, the draws of continuous latents with their log-densities, angles on the circle, the
log-standardized image, and the posterior over a set of the look's factors
(:class:`LookPosterior`).

Every bounded latent is inferred through ``u``, a diagonal Gaussian whose mean comes from a
network head and whose log standard deviation comes from a head of its own that reads the
same features *detached*: a spread's fit must not shape the features its mean reads (when it
did, the scene encoder's features collapsed to constants; docs/looks3d.md).
"""

from __future__ import annotations

import math

import torch

from ..densities import normal_log_prob, soft_clamp
from .look import Factor
from .prior import LOG_PRIOR_PSI, Interval, light_direction, logistic_log_prob

LOG_SIGMA = (-7.0, 2.0)
"""Bounds (soft) of the log standard deviation of every Gaussian over a ``u``."""
ANGLE_LOG_SIGMA = (-6.0, 1.0)
"""Bounds (soft) of the log standard deviation of a wrapped normal over an azimuth."""


def wrapped_normal_log_prob(angle, mean, log_sigma, wraps: int = 4):
    """Density on the circle of ``N(mean, sigma)`` wrapped modulo 2 pi (``wraps`` terms each side)."""
    k = torch.arange(-wraps, wraps + 1, dtype=angle.dtype, device=angle.device)
    diff = (angle - mean).unsqueeze(-1) + 2 * math.pi * k  # (..., 2 * wraps + 1)
    return torch.logsumexp(normal_log_prob(diff, 0.0, log_sigma.unsqueeze(-1)), dim=-1)


def taught_angle_log_prob(angle, mean, log_sigma, mean_first: bool):
    """What teacher forcing maximizes of a target ``angle``: the wrapped normal's log density,
    or (``mean_first``) the density with its mean held, which teaches the spread, plus
    ``cos(angle - mean) - 1``, which teaches the mean whatever the spread
    (:attr:`~inverse_air.objects3d.config.Objects3DConfig.yaw_mean_first`). Both are largest
    at the same mean and spread; at the mean they are equal."""
    if not mean_first:
        return wrapped_normal_log_prob(angle, mean, log_sigma)
    return wrapped_normal_log_prob(angle, mean.detach(), log_sigma) + torch.cos(angle - mean) - 1


def wrap(angle):
    """The same point on the circle, in [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def standardized(image: torch.Tensor) -> torch.Tensor:
    """The log of ``image (B, C, S, S)`` (plus 0.02) less its mean, over its standard deviation
    (each image and channel; the deviation floored at 0.02, so a flat image stays near zero).
    In the log a colour or an intensity multiplies nothing: it shifts, and edges and shading
    show as differences."""
    log = torch.log(image + 0.02)
    mean = log.mean((2, 3), keepdim=True)
    return (log - mean) / (log.std((2, 3), keepdim=True) + 0.02)


class Layout(dict):
    """Named parts of a vector, in order: ``name -> width``."""

    @property
    def size(self) -> int:
        return sum(self.values())

    def split(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, size)`` as its named parts, each ``(B, width)``."""
        return dict(zip(self, x.split(list(self.values()), 1)))


def heads(x, head, means: Layout, spread=None, spreads: Layout | None = None) -> dict[str, torch.Tensor]:
    """``head(x)`` split into ``means``; with ``spread``, also ``spread(x.detach())`` split into
    ``spreads`` (see the module docstring)."""
    out = means.split(head(x))
    if spread is not None:
        out.update(spreads.split(spread(x.detach())))
    return out


class Draw:
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


class LookPosterior:
    """The posterior over some of the look's factors (those of one image, or of one object),
    from a head's outputs; its layouts come from the look table.

    Each factor's value is its array's (:attr:`~inverse_air.objects3d.look.Factor.array`; the
    camera's three are the columns of ``camera``); a bounded factor is drawn through its
    interval's ``u`` (:class:`~inverse_air.objects3d.prior.Interval`), a direction through its
    height (an interval) and its azimuth (a wrapped normal whose mean comes from a predicted
    2-vector, so neither the output nor the density jumps at the wrap-around).
    """

    def __init__(self, factors: tuple[Factor, ...], intervals: dict[str, Interval]):
        self.factors = factors
        self.intervals = intervals
        self.means = Layout((f.name, f.mean_size) for f in factors)
        """Each factor's part of the head's means (:attr:`~inverse_air.objects3d.look.Factor.mean_size`)."""
        self.spreads = Layout((f"{f.name}_log_sigma", f.spread_size) for f in factors)
        """Each factor's part of the spreads' head."""
        self.vector = Layout((f.name, f.vector_size) for f in factors)
        """Each factor's part of the latent vector the network reads back."""

    def draw(self, out: dict[str, torch.Tensor], draw: Draw, target: dict | None) -> dict[str, torch.Tensor]:
        """The factors' values (by array, each ``(B, ...)``) the posterior's parameters ``out``
        give, drawn by ``draw`` (from ``target``'s arrays when teacher-forced)."""
        values = {}
        for f in self.factors:
            mean, spread = out[f.name], out[f"{f.name}_log_sigma"]
            truth = None if target is None else f.take(target[f.array])
            if f.direction:
                height = draw.interval(self.intervals[f.name], mean[:, 0], soft_clamp(spread[:, 0], *LOG_SIGMA),
                                       None if truth is None else truth[:, 1])
                azimuth = draw.angle(torch.atan2(mean[:, 2], mean[:, 1]), soft_clamp(spread[:, 1], *ANGLE_LOG_SIGMA),
                                     None if truth is None else torch.atan2(truth[:, 2], truth[:, 0]))
                values[f.name] = light_direction(height, azimuth)
            else:
                log_sigma = soft_clamp(spread, *LOG_SIGMA)
                if f.channels == 1:
                    mean, log_sigma = mean[:, 0], log_sigma[:, 0]
                values[f.name] = draw.interval(self.intervals[f.name], mean, log_sigma, truth)
        return self._arrays(values)

    def _arrays(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Values by factor -> by array (the camera's fields stacked in their columns)."""
        columns: dict[str, dict] = {}
        for f in self.factors:
            columns.setdefault(f.array, {})[f.column] = values[f.name]
        return {name: parts[None] if None in parts else torch.stack([parts[c] for c in sorted(parts)], -1)
                for name, parts in columns.items()}

    def free(self, arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The factors' values in ``arrays`` (any leading shape) as unconstrained numbers, by
        factor: a bounded one its interval's ``u``; a direction its height's ``u`` and its
        azimuth, stacked in the last dimension (``decompose --refine`` descends on these)."""
        out = {}
        for f in self.factors:
            value, interval = f.take(arrays[f.array]), self.intervals[f.name]
            if f.direction:
                azimuth = torch.atan2(value[..., 2], value[..., 0])
                out[f.name] = torch.stack([interval.to_u(value[..., 1]), azimuth], -1)
            else:
                out[f.name] = interval.to_u(value)
        return out

    def bound(self, free: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The arrays of :meth:`free`'s numbers (its inverse): each value in its interval, a
        direction a unit vector in the upper hemisphere."""
        values = {}
        for f in self.factors:
            interval = self.intervals[f.name]
            if f.direction:
                values[f.name] = light_direction(interval.value(free[f.name][..., 0]), free[f.name][..., 1])
            else:
                values[f.name] = interval.value(free[f.name])
        return self._arrays(values)

    def to_vector(self, arrays: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, vector.size)``: the factors as the network reads them (each value rescaled to
        [0, 1]; a direction as its height and its azimuth's cosine and sine)."""
        parts = []
        for f in self.factors:
            value = f.take(arrays[f.array])
            if f.direction:
                azimuth = torch.atan2(value[:, 2], value[:, 0])
                parts += [value[:, 1:2], torch.cos(azimuth).unsqueeze(1), torch.sin(azimuth).unsqueeze(1)]
            else:
                parts.append(self.intervals[f.name].normalized(value).reshape(len(value), -1))
        return torch.cat(parts, 1)

    def from_vector(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """The arrays a vector of :meth:`to_vector` holds (its inverse)."""
        values = {}
        for f, part in zip(self.factors, self.vector.split(vector).values()):
            if f.direction:
                values[f.name] = light_direction(part[:, 0], torch.atan2(part[:, 2], part[:, 1]))
            else:
                interval = self.intervals[f.name]
                value = interval.low + (interval.high - interval.low) * part
                values[f.name] = value[:, 0] if f.channels == 1 else value
        return self._arrays(values)
