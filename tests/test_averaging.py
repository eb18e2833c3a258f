"""The weights' exponential moving average (inverse_air.averaging)."""

import torch
from torch import nn

from inverse_air.averaging import WeightAverage


def test_the_average_follows_the_decay_and_copies_buffers():
    model = nn.BatchNorm1d(1)  # a weight, a bias and buffers
    average = WeightAverage(model, lambda: nn.BatchNorm1d(1), decay=0.5)
    expected = 1.0  # the weight starts at 1 and the average with it
    for n, value in enumerate([3.0, -1.0, 5.0, 7.0]):
        with torch.no_grad():
            model.weight.fill_(value)
            model.running_mean.fill_(value)
        keep = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18, 0.25, 0.31
        assert average.rate() == keep
        average.update(model)
        expected = keep * expected + (1 - keep) * value
        assert torch.allclose(average.model.weight, torch.tensor([expected]))
        assert average.model.running_mean.item() == value  # buffers: the trained model's
    assert average.updates == 4
    assert not any(p.requires_grad for p in average.model.parameters())


def test_an_average_resumes_from_its_weights_and_count():
    model = nn.Linear(2, 1)
    average = WeightAverage(model, lambda: nn.Linear(2, 1), decay=0.99)
    for _ in range(30):
        average.update(model)
    again = WeightAverage(nn.Linear(2, 1), lambda: nn.Linear(2, 1), decay=0.99)
    again.load(average.model.state_dict(), average.updates)
    assert again.rate() == average.rate() > 0.7
    assert torch.equal(again.model.weight, average.model.weight)
