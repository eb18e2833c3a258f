"""The presence-prior anneal: its ends and its middle, against values worked out by hand."""

import math

import pytest
import torch

from inverse_air.schedules import annealed_presence_prior

TARGET = torch.tensor([0.01, 0.2, 0.5])


def test_the_anneal_starts_at_start_for_every_step():
    """Step 0: every step's presence probability is ``start`` (float32 rounding: 1e-6)."""
    p = annealed_presence_prior(TARGET, 0.99, 500, 0)
    assert torch.allclose(p, torch.full((3,), 0.99), atol=1e-6)


@pytest.mark.parametrize("step", [500, 501, 10_000])
def test_the_anneal_ends_at_the_models_own_prior(step):
    """From ``steps`` on, the model's own prior (float32 rounding through the log-odds: 1e-6)."""
    p = annealed_presence_prior(TARGET, 0.99, 500, step)
    assert torch.allclose(p, TARGET, atol=1e-6) and p.dtype == TARGET.dtype


def test_the_middle_of_the_anneal_is_the_mean_of_the_log_odds():
    """Halfway, each probability's log-odds are the mean of the start's and the target's
    (linear in log-odds, not in probability: 0.99 -> 0.01 passes 0.5 at the middle, where a
    linear blend of probabilities would too, so the 0.2 and 0.5 targets tell them apart).
    1e-5: float32 rounding."""
    p = annealed_presence_prior(TARGET, 0.99, 500, 250)
    logit = lambda q: math.log(q / (1 - q))
    expected = [1 / (1 + math.exp(-(logit(0.99) + logit(t)) / 2)) for t in TARGET.tolist()]
    assert p.tolist() == pytest.approx(expected, abs=1e-5)
    assert p[1].item() == pytest.approx(0.8326, abs=1e-4)  # odds sqrt(99 / 4), worked by hand
    assert p[1].item() != pytest.approx((0.99 + 0.2) / 2, abs=1e-2)


def test_no_anneal_is_the_target_from_the_first_step():
    assert torch.allclose(annealed_presence_prior(TARGET, 0.99, 0, 0), TARGET, atol=1e-7)


@pytest.mark.parametrize("start, steps, step", [(1.0, 10, 0), (0.0, 10, 0), (0.9, -1, 0), (0.9, 10, -1)])
def test_bad_arguments_are_refused(start, steps, step):
    with pytest.raises(ValueError):
        annealed_presence_prior(TARGET, start, steps, step)
