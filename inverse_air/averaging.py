"""An exponential moving average of the inference network's weights (``TrainConfig.weight_average``).

Training from images alone moves the one pass from one reading to the next: in 3D from scratch
the held-out count swings by 2-3 points between scores 100 steps apart (docs/design-notes.md).
The average of the last hundred or so steps' weights (Polyak averaging) is what the run then
saves as its model, monitors, draws and searches from (the "mean teacher" of semi-supervised
learning); the weights as trained go on training and are kept beside it only to resume the
run. Measured there (decay 0.99, seed 0): the count rose without a dip to 97.4% at 45 minutes,
where the run without it swung between 95% and 97% (docs/design-notes.md).

The average starts at the first update and its decay grows toward ``decay`` as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that early weights, far from any
good ones, are soon forgotten. Buffers (the learning signal's statistics, the presence prior
of the step) are the trained model's, copied at each update.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """The averaged weights of ``model`` in a model of their own (``average.model``).

    Args:
        model: the model being trained; the average starts as a copy of its state.
        make: builds a model of the same configuration (what holds the average).
        decay: the largest weight of the old average at an update (e.g. 0.99: about the
            last 100 steps).
    """

    def __init__(self, model: nn.Module, make, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = make().to(next(model.parameters()).device)
        self.model.load_state_dict(model.state_dict())
        self.model.requires_grad_(False).eval()

    def rate(self) -> float:
        """The weight of the old average at the next update."""
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s weights (after an optimizer step)."""
        keep = self.rate()
        for average, trained in zip(self.model.parameters(), model.parameters()):
            average.lerp_(trained.detach(), 1.0 - keep)
        for average, trained in zip(self.model.buffers(), model.buffers()):
            average.copy_(trained)
        self.updates += 1

    def load(self, weights: dict, updates: int) -> None:
        """Go on from a saved average (its state dict and its count of updates)."""
        self.model.load_state_dict(weights)
        self.updates = updates
