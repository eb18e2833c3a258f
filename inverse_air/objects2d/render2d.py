"""The 2D generative model's drawing: a spatial transformer (window <-> canvas) and the learned
decoder that draws one object into its window.

**Convention** (written once here; :mod:`inverse_air.objects2d.multimnist` composes data with the same
boxes). A window is a square of side ``w`` pixels on a square canvas of side ``S``; its
``z_where = (scale, x, y)`` is

- ``scale = w / S``: the window's side as a fraction of the canvas side;
- ``(x, y)``: the window's centre in normalized canvas coordinates, ``x`` to the right and
  ``y`` down, -1 at the left/top *edge* of the canvas and +1 at its right/bottom *edge* (pixel
  edges, not pixel centres: ``align_corners=False`` in ``affine_grid`` / ``grid_sample``).

So a point ``(u, v)`` of the window, in the window's own normalized coordinates ([-1, 1] edge
to edge), lies at ``(x + scale * u, y + scale * v)`` on the canvas. :func:`crop` reads a window
out of an image with that map (the inference network's attention); :func:`paste` draws a window
onto a blank canvas with its inverse (the generative model). Both sample bilinearly with
``grid_sample(align_corners=False)`` and read zeros outside their source. The sampling grid is
the one ``affine_grid(theta, align_corners=False)`` would give for ``theta = [[scale, 0, x],
[0, scale, y]]`` (crop) or its inverse (paste), built directly: the map has no rotation, so
the grid is an outer sum, and building it costs nothing next to ``affine_grid``'s batched
matrix product. ``scale`` is clamped below at :data:`MIN_SCALE` so that a sampled scale near or
below zero never divides by zero or mirrors the window.

Shapes: images ``(B, C, S, S)``, windows ``(B, C, G, G)``, ``z_where (B, 3)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_SCALE = 0.02
"""Smallest window scale the transformer uses (about one pixel of a 50-pixel canvas)."""


def _split(z_where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scale, x, y = z_where.unbind(-1)  # each (B,)
    return scale.clamp_min(MIN_SCALE), x, y


def sampling_grid(scale: torch.Tensor, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, size, size, 2)``: where each output pixel centre of a ``size x size`` image reads
    its source, ``(x + scale * u, y + scale * v)`` for the pixel's own normalized coordinates
    ``(u, v)`` (pixel centres, ``align_corners=False``); ``scale, x, y`` are ``(B,)``."""
    ramp = (2 * torch.arange(size, dtype=scale.dtype, device=scale.device) + 1) / size - 1  # (size,)
    gx = x[:, None] + scale[:, None] * ramp  # (B, size): source x of each column
    gy = y[:, None] + scale[:, None] * ramp  # (B, size): source y of each row
    B = scale.shape[0]
    return torch.stack([gx[:, None, :].expand(B, size, size), gy[:, :, None].expand(B, size, size)], dim=-1)


def crop(image: torch.Tensor, z_where: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size x size`` window ``z_where`` selects from ``image``: ``(B, C, S, S) ->
    (B, C, size, size)`` (bilinear; zeros outside the image). Differentiable in both inputs."""
    scale, x, y = _split(z_where)
    grid = sampling_grid(scale, x, y, size)  # window coordinates -> canvas coordinates
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def paste(window: torch.Tensor, z_where: torch.Tensor, canvas_size: int) -> torch.Tensor:
    """Draw ``window (B, C, G, G)`` where ``z_where`` says on a blank ``(B, C, S, S)`` canvas
    (bilinear; zeros outside the window). Differentiable in both inputs."""
    scale, x, y = _split(z_where)
    grid = sampling_grid(1.0 / scale, -x / scale, -y / scale, canvas_size)  # canvas -> window
    return F.grid_sample(window, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Decoder(nn.Module):
    """The learned part of the 2D generative model: ``z_what (B, D) -> window (B, C, G, G)``
    in [0, 1] (C = 1 for grey images, 3 for RGB); with ``opacity``, ``(B, C + 1, G, G)``: the
    colour, then the opacity of each pixel.

    An MLP with one hidden layer and a sigmoid output. The output layer's bias starts at
    ``output_bias`` (-2: about 0.12 per pixel; with ``opacity``, the opacity's, the colour's
    at 0), so a new object draws a faint window rather than a grey square; objects that
    would only add grey are not worth their KL early on, and the model does not learn to use
    every step before it can draw.
    """

    def __init__(self, z_what_size: int, hidden: int, window_size: int, output_bias: float = -2.0,
                 channels: int = 1, opacity: bool = False):
        super().__init__()
        self.window_size, self.channels = window_size, channels + int(opacity)
        self.hidden = nn.Linear(z_what_size, hidden)
        self.out = nn.Linear(hidden, self.channels * window_size * window_size)
        nn.init.constant_(self.out.bias, output_bias)
        if opacity:
            with torch.no_grad():
                self.out.bias[:channels * window_size * window_size] = 0.0

    def forward(self, z_what: torch.Tensor) -> torch.Tensor:
        C, G = self.channels, self.window_size
        logits = self.out(F.relu(self.hidden(z_what)))  # (B, C * G * G)
        return torch.sigmoid(logits).view(-1, C, G, G)
