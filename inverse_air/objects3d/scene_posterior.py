"""The scene posterior: what of an image's look varies (the camera, the light, the ground's
colour; the look table's per-image factors, :mod:`inverse_air.objects3d.look`), inferred once
per image, before its objects, by an encoder of its own.

The encoder reads the image and its log standardized (:func:`~inverse_air.objects3d.posterior.
standardized`), where the ground's edges look the same whatever its colour and the light
(docs/looks3d.md); a head gives each factor's posterior mean, a head of its own on the features
detached gives the spreads (:mod:`inverse_air.objects3d.posterior`). Every step of the objects
reads the latents, and the AIR core explains away the empty scene their mean draws
(:mod:`inverse_air.air`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..networks import MLP, ImageEncoder
from ..object_model import SceneStep
from .look import Factor
from .posterior import Draw, LookPosterior, heads, standardized
from .prior import Interval


class ScenePosterior(nn.Module):
    """q(an image's look | image) over ``factors`` (per image, those that vary).

    Args:
        factors: the look table's per-image factors to infer.
        intervals: the prior's interval of each (:func:`~inverse_air.objects3d.prior.intervals`).
        image_size: side S of the images.
        channels: the encoder's stride-2 convolution channels.
        features: the encoder's output size.
    """

    def __init__(self, factors: tuple[Factor, ...], intervals: dict[str, Interval], image_size: int,
                 channels: tuple[int, ...], features: int):
        super().__init__()
        self.look = LookPosterior(factors, intervals)
        self.encoder = ImageEncoder(6, image_size, channels, features)  # the image and its log standardized
        self.head = MLP(features, 256, self.look.means.size)
        self.spread = MLP(features, 128, self.look.spreads.size)

    @property
    def keys(self) -> tuple[str, ...]:
        """The latents' (and the teacher-forcing targets') arrays."""
        return tuple(dict.fromkeys(f.array for f in self.look.factors))

    def forward(self, image: torch.Tensor, sample: bool, target: dict[str, torch.Tensor] | None = None,
                densities: bool = True) -> SceneStep:
        """The look of ``image (B, 3, S, S)``: drawn (``sample``), the posterior's mean, or the
        ``target``'s (teacher forcing), with its densities (see
        :meth:`inverse_air.object_model.SceneModel.infer_scene`)."""
        features = self.encoder(torch.cat([image, standardized(image)], 1))
        out = heads(features, self.head, self.look.means, self.spread, self.look.spreads)
        draw = Draw(sample, target is not None, densities)
        z = self.look.draw(out, draw, target)
        with torch.no_grad():
            mean = z if not sample and target is None else self.look.draw(out, Draw(False, False, False), None)
        kl = draw.log_q - draw.log_p if densities else None
        nll = -draw.log_q if target is not None else None
        return SceneStep(z=z, mean={k: v.detach() for k, v in mean.items()}, vector=self.look.to_vector(z), kl=kl,
                         target_nll=nll)
