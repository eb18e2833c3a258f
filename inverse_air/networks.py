"""Plain neural-network building blocks of the inference network and the baseline.

Nothing here knows about probability: the AIR model (:mod:`inverse_air.air`) and the object
models (:mod:`inverse_air.object_model`) turn these modules' outputs
into distributions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Sequential):
    """Linear layers with ReLU between them (none after the last)."""

    def __init__(self, *sizes: int):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ImageEncoder(nn.Module):
    """Stride-2 convolutions over the image plus two coordinate channels, then a linear layer.

    The coordinate channels (x and y in [-1, 1]) let the features say *where* things are, which
    the pose outputs need to sub-pixel precision. With no convolutions the encoder is one
    linear layer on the pixels, which knows where each pixel is already (and to which constant
    coordinate channels would only add a bias), so it reads no coordinate channels.

    Args:
        in_channels: image channels C.
        image_size: image side S (square images).
        channels: output channels of each 3x3 stride-2 convolution.
        features: size F of the output vector.

    Shapes: ``(B, C, S, S) -> (B, F)``.
    """

    def __init__(self, in_channels: int, image_size: int, channels: tuple[int, ...], features: int):
        super().__init__()
        layers: list[nn.Module] = []
        self.with_coords = bool(channels)
        c, s = in_channels + 2 * self.with_coords, image_size
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c, s = out, (s + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c * s * s, features), nn.ReLU(inplace=True))
        ramp = torch.linspace(-1.0, 1.0, image_size)
        grid = torch.stack(torch.meshgrid(ramp, ramp, indexing="xy"))  # (2, S, S): x, y
        self.register_buffer("coords", grid, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.with_coords:
            return self.fc(image.flatten(1))
        # The first convolution, split by input channel: the image's part, plus the coordinate
        # channels' part (with the bias), which is the same for every image and so runs on one
        # 2-channel image and is broadcast. Equal to convolving the concatenation, without
        # materializing it (3D model, batches of 256, 2 cores: the encoder 55 -> 40 ms).
        first = self.convs[0]
        C = image.shape[1]
        per_position = F.conv2d(self.coords.to(image.dtype).unsqueeze(0), first.weight[:, C:],
                                first.bias, first.stride, first.padding)  # (1, C1, S1, S1)
        h = F.conv2d(image, first.weight[:, :C], None, first.stride, first.padding)
        return self.fc(self.convs[1:](h.add_(per_position)).flatten(1))


class Baseline(nn.Module):
    """The score-function baseline: a guess of each step's learning signal from the image.

    Its own small encoder reads the image; an MLP reads those features, the (detached) state of
    the inference core at the step and the step's index, and outputs one number per step. It
    learns by regression on the signal; its parameters form their own optimizer group.

    Shapes: image ``(B, C, S, S)``, hidden ``(B, N, H)`` -> ``(B, N)``.
    """

    def __init__(self, in_channels: int, image_size: int, channels: tuple[int, ...],
                 hidden_size: int, max_steps: int, features: int = 128):
        super().__init__()
        self.encoder = ImageEncoder(in_channels, image_size, channels, features)
        self.max_steps = max_steps
        self.head = MLP(features + hidden_size + max_steps, 128, 1)

    def forward(self, image: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        B, N, _ = hidden.shape
        feats = self.encoder(image).unsqueeze(1).expand(B, N, -1)  # (B, N, F)
        steps = torch.eye(self.max_steps, dtype=image.dtype, device=image.device)[:N]
        steps = steps.unsqueeze(0).expand(B, N, -1)  # (B, N, max_steps)
        return self.head(torch.cat([feats, hidden.detach(), steps], dim=-1)).squeeze(-1)
