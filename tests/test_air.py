"""The AIR core and the 3D object model: the presence chain, its masking, priors, densities."""

import math

import numpy as np
import pytest
import torch

from inverse_air.air import log_count_prior, parameter_groups, pres_prior
from inverse_air.config import AIRConfig, RenderConfig
from inverse_air.model3d import (latents_to_arrays, logistic_log_prob, normal_log_prob,
                                 sample_prior_scenes, targets_from_arrays, wrapped_normal_log_prob)
from inverse_air.models import build_model
from inverse_air.networks import ImageEncoder

from conftest import TINY_AIR


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(AIRConfig(render=RenderConfig(image_size=32), **TINY_AIR))


def test_pres_prior_reproduces_the_count_prior():
    counts = (0.1, 0.2, 0.3, 0.4)
    p = pres_prior(counts, 3, floor=0.0)
    assert p.shape == (3,)
    # P(n) = prod_{i<n} p_i * (1 - p_n): rebuild it by hand.
    rebuilt = [1 - p[0], p[0] * (1 - p[1]), p[0] * p[1] * (1 - p[2]), p[0] * p[1] * p[2]]
    assert torch.allclose(torch.stack(rebuilt), torch.tensor(counts), atol=1e-6)
    # Uniform over 0..3 is the chain 3/4, 2/3, 1/2; a floor keeps impossible counts finite.
    assert torch.allclose(pres_prior((0.25,) * 4, 3, 0.0), torch.tensor([3 / 4, 2 / 3, 1 / 2]))
    floored = pres_prior((1 / 3, 1 / 3, 1 / 3, 0.0), 3, 0.01)
    assert 0 < floored[2] < 0.05
    with pytest.raises(ValueError, match="needs 4 entries"):
        pres_prior((0.5, 0.5), 3, 0.0)


def test_log_count_prior_matches_the_config(model):
    assert torch.allclose(log_count_prior(model).exp(), torch.full((4,), 0.25, dtype=torch.float64))


def test_infer_shapes_and_unary_presence(model):
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        lat = model.infer(x, sample=True)
    B, N = 5, 3
    assert lat.z_pres.shape == lat.pres_prob.shape == lat.kl.shape == lat.log_q_discrete.shape == (B, N)
    assert lat.hidden.shape == (B, N, 32)
    assert lat.objects["identity"].shape == (B, N) and lat.objects["identity"].dtype == torch.long
    assert lat.objects["position"].shape == (B, N, 2) and lat.objects["yaw"].shape == (B, N)
    assert lat.target_nll is None
    # A unary code: never present after an absent step.
    assert bool((lat.z_pres[:, 1:] <= lat.z_pres[:, :-1]).all())
    assert bool((lat.objects["position"].abs() < 1).all())
    assert bool((lat.objects["yaw"].abs() <= math.pi / 4 + 1e-6).all())


def test_nothing_counts_after_the_first_absent_step(model):
    """A target that says 'present, absent, present' is cut at the first absence, and the
    unreached step contributes nothing to any term."""
    x = torch.rand(2, 3, 32, 32)
    target = {"z_pres": torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]),
              "identity": torch.tensor([[0, 1, 2], [2, 1, 0]]),
              "position": torch.zeros(2, 3, 2), "yaw": torch.zeros(2, 3)}
    lat = model.infer(x, target=target)
    assert lat.z_pres.tolist() == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    assert lat.kl[0, 2] == 0 and lat.log_q_discrete[0, 2] == 0 and lat.target_nll[0, 2] == 0
    # Step 2 of example 0 was reached (absent): only its presence terms count.
    assert lat.kl[0, 1] != 0 and lat.target_nll[0, 1] != 0
    assert bool((lat.kl[1] != 0).all())
    # Gradients: the unreached step's object head output gets none from example 0.
    lat.target_nll[0].sum().backward()


def test_masking_gives_zero_gradient_from_unreached_steps(model):
    x = torch.rand(1, 3, 32, 32)
    target = {"z_pres": torch.tensor([[0.0, 1.0, 1.0]]), "identity": torch.tensor([[0, 1, 2]]),
              "position": torch.zeros(1, 3, 2), "yaw": torch.zeros(1, 3)}
    model.zero_grad()
    lat = model.infer(x, target=target)
    lat.target_nll[:, 1:].sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(float(g.abs().sum()) == 0 for g in grads)


def test_deterministic_inference_is_repeatable(model):
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        a, b = model.infer(x, sample=False), model.infer(x, sample=False)
    assert torch.equal(a.z_pres, b.z_pres) and torch.equal(a.objects["position"], b.objects["position"])


def test_predict_is_deterministic_inference_without_the_densities(model):
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        full = model.infer(x, sample=False)
    fast = model.predict(x)
    assert fast.kl is None and fast.log_q_discrete is None
    assert torch.equal(fast.z_pres, full.z_pres)
    for key, value in full.objects.items():
        assert torch.allclose(fast.objects[key], value, atol=1e-6), key
    with pytest.raises(ValueError, match="densities"):
        model.infer(x, target={"z_pres": torch.ones(3, 3)}, densities=False)


def test_image_encoder_equals_convolving_the_coordinate_channels():
    """The encoder adds the coordinate channels' part of the first convolution per position
    instead of concatenating them to every image: same values, same gradients."""
    torch.manual_seed(0)
    encoder = ImageEncoder(3, 20, (8, 16), 12)
    x = torch.rand(4, 3, 20, 20, requires_grad=True)

    def reference(x):
        coords = encoder.coords.expand(len(x), -1, -1, -1)
        return encoder.fc(encoder.convs(torch.cat([x, coords], dim=1)).flatten(1))

    grads = []
    for forward in (encoder, reference):
        encoder.zero_grad()
        x.grad = None
        out = forward(x)
        (out * torch.arange(12.0)).sum().backward()
        grads.append((out.detach(), x.grad.clone(), [p.grad.clone() for p in encoder.parameters()]))
    (out_a, gx_a, gp_a), (out_b, gx_b, gp_b) = grads
    assert torch.allclose(out_a, out_b, atol=1e-6)
    assert torch.allclose(gx_a, gx_b, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(gp_a, gp_b))


def test_dair_reads_the_residual():
    torch.manual_seed(0)
    model = build_model(AIRConfig(render=RenderConfig(image_size=32), dair=True, **TINY_AIR))
    assert model.encoder.convs[0].in_channels == 3 * 2 + 2
    with torch.no_grad():
        lat = model.infer(torch.rand(2, 3, 32, 32), sample=True)
    assert lat.z_pres.shape == (2, 3)


def test_parameter_groups_split_baseline_by_name(model):
    groups = parameter_groups(model, lr=1e-3, baseline_lr=1e-1)
    names = {id(p): n for n, p in model.named_parameters()}
    main = [names[id(p)] for p in groups[0]["params"]]
    base = [names[id(p)] for p in groups[1]["params"]]
    assert base and all(n.startswith("baseline.") for n in base)
    assert not any(n.startswith("baseline.") for n in main)
    assert len(main) + len(base) == len(list(model.parameters()))
    assert groups[1]["lr"] == 1e-1 and groups[0]["lr"] == 1e-3


# ---------------------------------------------------------------- densities of the 3D model
def test_logistic_prior_makes_positions_uniform():
    """tanh(u / 2) with u ~ Logistic(0, 1) is uniform on (-1, 1): the density of the position,
    p(u) / |d pos / d u|, is 1/2 everywhere."""
    u = torch.linspace(-6, 6, 101, dtype=torch.float64)
    jacobian = 0.5 * (1 - torch.tanh(u / 2) ** 2)
    assert torch.allclose(logistic_log_prob(u).exp() / jacobian, torch.full_like(u, 0.5))


def test_wrapped_normal_is_a_density_on_the_circle():
    angles = torch.linspace(-math.pi, math.pi, 20001, dtype=torch.float64)
    for mean, log_sigma in [(0.3, -2.0), (3.0, 0.0), (-2.0, 1.5)]:
        density = wrapped_normal_log_prob(angles, torch.tensor(mean, dtype=torch.float64),
                                          torch.tensor(log_sigma, dtype=torch.float64)).exp()
        integral = torch.trapezoid(density, angles)
        assert abs(float(integral) - 1.0) < 1e-3
        # Periodic: no jump at the wrap-around.
        assert abs(float(density[0] - density[-1])) < 1e-7


def test_position_kl_estimate_matches_quadrature(model):
    """The single-sample KL term of the position, averaged, equals KL(N(m, s) || Logistic)
    computed by numerical integration (an independent computation)."""
    m, log_s = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.5, dtype=torch.float64)
    u = torch.linspace(-15, 15, 200001, dtype=torch.float64)
    q = normal_log_prob(u, m, log_s)
    exact = torch.trapezoid(q.exp() * (q - logistic_log_prob(u)), u)
    torch.manual_seed(0)
    samples = m + log_s.exp() * torch.randn(400000, dtype=torch.float64)
    estimate = (normal_log_prob(samples, m, log_s) - logistic_log_prob(samples)).mean()
    assert abs(float(estimate - exact)) < 0.01


# ---------------------------------------------------------------- scenes <-> targets
def test_targets_are_sorted_nearest_first_and_padded():
    arrays = {"shape": np.array([[0, 2, -1], [-1, -1, -1]]),
              "position": np.array([[[0.1, -0.5], [0.2, 0.6], [0, 0]], [[0, 0]] * 3], np.float32),
              "yaw": np.array([[10.0, 20.0, 0.0], [0, 0, 0]], np.float32)}
    t = targets_from_arrays(arrays, max_steps=3)
    assert t["z_pres"].tolist() == [[1, 1, 0], [0, 0, 0]]
    assert t["identity"].tolist() == [[2, 0, 0], [0, 0, 0]]
    assert t["position"][0, 0].tolist() == pytest.approx([0.2, 0.6])
    assert t["yaw"][0, :2].tolist() == pytest.approx([math.radians(20), math.radians(10)])
    with pytest.raises(ValueError, match="at most 1"):
        targets_from_arrays(arrays, max_steps=1)


def test_prior_samples_follow_the_count_prior():
    rng = np.random.default_rng(0)
    arrays = sample_prior_scenes(rng, 400, (0.5, 0.5, 0.0, 0.0), object_scale=0.6)
    assert set(arrays["count"].tolist()) == {0, 1}
    assert arrays["shape"].shape == (400, 3)
    assert ((arrays["shape"] >= 0).sum(1) == arrays["count"]).all()


def test_latents_to_arrays_round_trip(model):
    """Teacher-forced latents come back as the ground truth they were made from."""
    rng = np.random.default_rng(1)
    arrays = sample_prior_scenes(rng, 6, (0.25,) * 4, object_scale=0.6)
    target = targets_from_arrays(arrays, 3)
    with torch.no_grad():
        lat = model.infer(torch.rand(6, 3, 32, 32), target=target)
    back = latents_to_arrays(lat)
    assert (back["count"] == arrays["count"]).all()
    for i in range(6):
        assert sorted(back["shape"][i][back["shape"][i] >= 0]) == sorted(arrays["shape"][i][arrays["shape"][i] >= 0])


def test_yaw_is_a_latent_of_cubes_only(model):
    """Spheres and cylinders do not show their yaw: their yaw enters no loss term."""
    x = torch.rand(3, 3, 32, 32)
    base = {"z_pres": torch.tensor([[1.0, 0.0, 0.0]] * 3), "identity": torch.tensor([[0, 0, 0], [1, 0, 0], [2, 0, 0]]),
            "position": torch.zeros(3, 3, 2), "yaw": torch.zeros(3, 3)}
    turned = {**base, "yaw": torch.full((3, 3), 0.3)}
    with torch.no_grad():
        a, b = model.infer(x, target=base), model.infer(x, target=turned)
    same = torch.isclose(a.target_nll[:, 0], b.target_nll[:, 0])
    assert same.tolist() == [True, False, True]  # sphere, cube, cylinder


def test_soft_clamp_bounds_and_keeps_gradients():
    from inverse_air.model3d import soft_clamp

    x = torch.tensor([-50.0, -6.0, 0.0, 1.0, 50.0], requires_grad=True)
    y = soft_clamp(x, -6.0, 1.0)
    assert bool((y > -6.0 - 1e-6).all() and (y < 1.0 + 0.01).all())
    y.sum().backward()
    assert bool((x.grad[1:4] > 0).all())  # no dead zone around and at the bounds
