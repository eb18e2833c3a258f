"""The ELBO, the score-function surrogate and the baseline, checked against independent
computations on cases small enough to do by hand."""

import math

import pytest
import torch

from inverse_air.air import Latents
from inverse_air.elbo import elbo_terms, learning_signals, update_signal_stats
from inverse_air.train import elbo_loss

NO_NORMALIZATION = torch.tensor([0.0, 1.0, 1.0])


def latents(z_pres, kl, log_q_discrete):
    B, N = z_pres.shape
    return Latents(z_pres=z_pres, pres_prob=torch.full((B, N), 0.5), objects={}, kl=kl,
                   log_q_discrete=log_q_discrete, hidden=torch.zeros(B, N, 4), target_nll=None)


def test_elbo_matches_an_independent_computation():
    torch.manual_seed(0)
    x, recon = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    kl = torch.tensor([[0.5, 1.0, 0.0], [2.0, 0.0, 0.0]])
    lat = latents(torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), kl, torch.zeros(2, 3))
    terms = elbo_terms(x, recon, lat, torch.zeros(2, 3), NO_NORMALIZATION, sigma=0.3)
    log_lik = torch.distributions.Normal(recon, 0.3).log_prob(x).sum(dim=(1, 2, 3))
    assert torch.allclose(terms.log_likelihood, log_lik, atol=1e-4)
    assert torch.allclose(terms.elbo, log_lik - torch.tensor([1.5, 2.0]), atol=1e-4)
    assert terms.elbo.shape == terms.kl.shape == terms.baseline_loss.shape == (2,)


def test_learning_signal_is_what_each_step_can_change():
    log_lik = torch.tensor([10.0])
    kl = torch.tensor([[1.0, 2.0, 4.0]])
    assert learning_signals(log_lik, kl).tolist() == [[10 - 7, 10 - 6, 10 - 4]]  # small integers: exact in float


def bernoulli_surrogate_gradient(a: float, b: float, logit0: float, n: int, baseline: float,
                                 stats: torch.Tensor = NO_NORMALIZATION, normalized: bool = False):
    """Monte-Carlo gradient of the surrogate for one Bernoulli choice with payoff a (z=1) or
    b (z=0), against the exact d/dlogit E[f] = p (1 - p) (a - b). ``baseline`` is the baseline
    network's output (the signal centred and scaled by ``stats``)."""
    torch.manual_seed(1)
    logit = torch.tensor(logit0, requires_grad=True)
    p = torch.sigmoid(logit)
    z = torch.bernoulli(p.detach().expand(n))
    log_q = z * torch.log(p) + (1 - z) * torch.log1p(-p)  # (n,)
    # Image log-likelihood a or b: x = 0 and a mean chosen per sample.
    sigma = 1.0
    const = -0.5 * math.log(2 * math.pi)
    mean = torch.where(z > 0, math.sqrt(2 * (const - a)), math.sqrt(2 * (const - b)))
    x = torch.zeros(n, 1, 1, 1)
    lat = latents(z.unsqueeze(1), torch.zeros(n, 1), log_q.unsqueeze(1))
    terms = elbo_terms(x, mean.view(n, 1, 1, 1), lat, torch.full((n, 1), baseline), stats, sigma, normalized)
    assert torch.allclose(terms.log_likelihood, torch.where(z > 0, a, b).float(), atol=1e-3)
    terms.surrogate.mean().backward()
    exact = float((p * (1 - p)).detach()) * (a - b)
    return float(logit.grad), exact


@pytest.mark.parametrize("stats", [NO_NORMALIZATION, torch.tensor([-3.0, 7.0, 1.0])], ids=["raw", "scaled"])
@pytest.mark.parametrize("baseline", [0.0, -4.0])
def test_score_function_gradient_has_the_right_sign_and_size(baseline, stats):
    """``score_signal="nats"``: the ELBO's own gradient, in nats like the reparameterized terms'
    gradients, whatever the running statistics the baseline is scaled by."""
    estimate, exact = bernoulli_surrogate_gradient(a=-1.0, b=-5.0, logit0=0.3, n=200000, baseline=baseline,
                                                   stats=stats)
    assert exact > 0 and estimate > 0
    assert estimate == pytest.approx(exact, rel=0.05)
    estimate, exact = bernoulli_surrogate_gradient(a=-5.0, b=-1.0, logit0=-0.2, n=200000, baseline=baseline,
                                                   stats=stats)
    assert exact < 0 and estimate < 0
    assert estimate == pytest.approx(exact, rel=0.05)


def test_normalized_score_signal_is_the_elbo_gradient_divided_by_the_spread():
    """``score_signal="normalized"`` (the default, NVIL's scaling): 1 / s of the gradient."""
    stats = torch.tensor([-3.0, 7.0, 1.0])
    estimate, exact = bernoulli_surrogate_gradient(a=-1.0, b=-5.0, logit0=0.3, n=200000, baseline=0.0,
                                                   stats=stats, normalized=True)
    assert estimate == pytest.approx(exact / 7.0, rel=0.05)


def test_baseline_gets_the_regression_gradient_only():
    lat = latents(torch.ones(1, 2), torch.zeros(1, 2), torch.zeros(1, 2, requires_grad=True))
    baseline = torch.zeros(1, 2, requires_grad=True)
    x = torch.zeros(1, 1, 1, 1)
    terms = elbo_terms(x, x, lat, baseline, NO_NORMALIZATION, sigma=1.0)
    terms.surrogate.sum().backward(retain_graph=True)
    assert baseline.grad is None or float(baseline.grad.abs().sum()) == 0  # surrogate ignores it
    terms.baseline_loss.sum().backward()
    signal = float(terms.log_likelihood)
    assert baseline.grad[0].tolist() == pytest.approx([-2 * signal, -2 * signal])


def test_signal_statistics_normalize():
    stats = torch.tensor([0.0, 1.0, 0.0])
    lat = latents(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2), torch.zeros(2, 2))
    update_signal_stats(stats, lat, torch.tensor([100.0, 300.0]))
    # Reached steps: both of example 0, the first of example 1 -> signals 100, 100, 300.
    assert stats[0] == pytest.approx(500 / 3) and stats[2] == 1
    assert stats[1] == pytest.approx(torch.tensor([100.0, 100, 300]).std(unbiased=False).item())
    update_signal_stats(stats, lat, torch.tensor([100.0, 300.0]), momentum=0.5)
    assert stats[0] == pytest.approx(500 / 3)


def test_one_elbo_step_reaches_every_parameter_group(tiny_run_config):
    from inverse_air.checkpoint import build_model

    torch.manual_seed(0)
    model = build_model(tiny_run_config().air)
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():  # make sure some objects are present so every head is used
        model.pres_head.bias.fill_(3.0)
    loss, stats = elbo_loss(model, x)
    loss.backward()
    for part in ("encoder", "core", "pres_head", "objects.head", "baseline"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part + ".")]
        assert grads and any(g is not None and float(g.abs().sum()) > 0 for g in grads), part
    assert math.isfinite(stats["elbo"])
