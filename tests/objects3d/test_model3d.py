"""The 3D object model: its prior's densities, ground truth <-> latents, the yaw latent,
rendering with gradients, outlines and prior samples."""

import math

import numpy as np
import pytest
import torch

from inverse_air.config import AIRConfig
from inverse_air.densities import normal_log_prob, soft_clamp
from inverse_air.checkpoint import build_model
from inverse_air.object_model import PriorSampler
from inverse_air.objects3d.config import Objects3DConfig, RenderConfig, Variation
from inverse_air.objects3d.codec import latents_to_arrays, targets_from_arrays
from inverse_air.objects3d.posterior import taught_angle_log_prob, wrapped_normal_log_prob
from inverse_air.objects3d.prior import logistic_log_prob, sample_prior

from conftest import TINY_AIR


@pytest.fixture(scope="module")
def model():
    """The fixed-look model (nothing of the look varies)."""
    torch.manual_seed(0)
    return build_model(AIRConfig(objects=Objects3DConfig(render=RenderConfig(image_size=32), variation=Variation.none()),
                                 **TINY_AIR))


@pytest.fixture(scope="module")
def varied():
    """The model of scenes whose camera, light, ground, colours and sizes vary."""
    torch.manual_seed(0)
    return build_model(AIRConfig(objects=Objects3DConfig(render=RenderConfig(image_size=32)), **TINY_AIR))


# ---------------------------------------------------------------- densities of the prior
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


def test_prior_samples_have_the_counts_asked_for():
    rng = np.random.default_rng(0)
    arrays = sample_prior(rng.choice(2, size=400), rng, 0.6, max_objects=3)
    assert set(arrays["count"].tolist()) == {0, 1}
    assert arrays["shape"].shape == (400, 3)
    assert ((arrays["shape"] >= 0).sum(1) == arrays["count"]).all()


def test_latents_to_arrays_round_trip(model):
    """Teacher-forced latents come back as the ground truth they were made from."""
    rng = np.random.default_rng(1)
    arrays = model.objects.sample_prior(np.array([0, 1, 2, 3, 3, 2]), rng)
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
    x = torch.tensor([-50.0, -6.0, 0.0, 1.0, 50.0], requires_grad=True)
    y = soft_clamp(x, -6.0, 1.0)
    assert bool((y > -6.0 - 1e-6).all() and (y < 1.0 + 0.01).all())
    y.sum().backward()
    assert bool((x.grad[1:4] > 0).all())  # no dead zone around and at the bounds


def test_render_with_grad_is_the_hard_image_with_the_soft_gradient(model):
    """The ELBO's image: the hard render's value, the soft render's gradient (so the likelihood
    sees what the model draws and poses still get gradients)."""
    objects = {"identity": torch.tensor([[1, 0, 0]]), "position": torch.tensor([[[0.2, -0.1], [0.0, 0.0], [0.0, 0.0]]]),
               "yaw": torch.tensor([[0.3, 0.0, 0.0]])}
    z_pres = torch.tensor([[1.0, 0.0, 0.0]])
    hard = model.objects.render(z_pres, objects)
    position = objects["position"].clone().requires_grad_()
    image = model.objects.render(z_pres, {**objects, "position": position}, grad=True)
    assert torch.equal(image.detach(), hard)  # exact: hard + (soft - soft) adds an exact zero
    image.sum().backward()
    soft_position = objects["position"].clone().requires_grad_()
    shape = torch.tensor([[1, -1, -1]])
    model.objects.renderer(shape, soft_position, objects["yaw"], soft=True).sum().backward()
    assert torch.allclose(position.grad, soft_position.grad) and float(position.grad.abs().sum()) > 0


def test_outlines_are_each_objects_whole_silhouette(model):
    objects = {"identity": torch.tensor([[1, 0, 2]]),
               "position": torch.tensor([[[-0.5, 0.0], [0.5, 0.0], [0.0, 0.6]]]), "yaw": torch.zeros(1, 3)}
    masks = model.objects.outline_masks(torch.tensor([[1.0, 1.0, 0.0]]), objects)
    assert masks.shape == (1, 3, 32, 32) and masks.dtype == torch.bool
    left, right = masks[0, 0].nonzero()[:, 1].float().mean(), masks[0, 1].nonzero()[:, 1].float().mean()
    assert left < 16 < right and not bool(masks[0, 2].any())  # the absent third step has none


def test_the_3d_model_samples_its_prior():
    assert isinstance(build_model(AIRConfig(objects=Objects3DConfig(render=RenderConfig(image_size=32)),
                                            **TINY_AIR)).objects, PriorSampler)


def test_varied_ground_truth_round_trips_through_latents(varied):
    """Teacher-forced latents of scenes whose look varies come back as their ground truth:
    the per-object looks follow their objects into canonical order."""
    rng = np.random.default_rng(2)
    arrays = varied.objects.sample_prior(np.array([3, 2, 0, 1]), rng)
    assert {"size", "color", "camera", "light_direction", "ambient", "diffuse", "ground_color"} <= set(arrays)
    target = targets_from_arrays(arrays, 3)
    with torch.no_grad():
        lat = varied.infer(torch.rand(4, 3, 32, 32), target=target)
    back = latents_to_arrays(lat)
    for i in range(4):
        n = arrays["count"][i]
        order = np.argsort(-arrays["position"][i, :n, 1], kind="stable")
        for key in ("size", "color"):
            np.testing.assert_allclose(back[key][i, :n], arrays[key][i, order], atol=1e-3, err_msg=key)
    for key in ("camera", "ambient", "diffuse", "ground_color", "light_direction"):
        np.testing.assert_allclose(back[key], arrays[key], atol=2e-3, err_msg=key)


def test_the_prior_stays_in_its_ranges_and_places_sized_objects_apart():
    from inverse_air.objects3d.scene import SHAPES, min_distance

    v, render = Variation(), RenderConfig()
    a = sample_prior(np.full(300, 3), np.random.default_rng(0), render, v)
    lo, hi = v.size_range
    assert a["size"].min() >= lo and a["size"].max() <= hi and a["size"].std() > 0.08
    assert a["color"].min() >= v.color_range[0] and a["ground_color"].max() <= v.ground_color_range[1]
    elevation, azimuth, distance = a["camera"].T
    assert elevation.min() >= 40 and elevation.max() <= 70 and abs(azimuth).max() <= 30
    assert distance.min() >= 0.85 * 5.8 - 1e-4 and distance.max() <= 1.15 * 5.8 + 1e-4
    np.testing.assert_allclose(np.linalg.norm(a["light_direction"], axis=1), 1.0, atol=1e-5)
    assert a["light_direction"][:, 1].min() >= 0 and abs(a["light_direction"][:, 1].mean() - 0.5) < 0.06
    for i in range(300):
        for j in range(3):
            for k in range(j + 1, 3):
                d = np.linalg.norm(a["position"][i, j] - a["position"][i, k])
                need = min_distance(SHAPES[a["shape"][i, j]], SHAPES[a["shape"][i, k]], a["size"][i, j], a["size"][i, k])
                assert d >= need - 1e-5


def test_nothing_varying_draws_exactly_the_fixed_look_scenes():
    """With nothing varying, the prior consumes the generator as the fixed-look prior always
    did: the same scenes from the same seed (datasets keep their bytes)."""
    from inverse_air.objects3d.prior import sample_scene
    from inverse_air.objects3d.scene import scenes_to_arrays

    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    counts = np.array([0, 3, 1, 2])
    a = sample_prior(counts, rng_a, RenderConfig(), Variation.none(), 3)
    b = scenes_to_arrays([sample_scene(rng_b, int(n), 0.6) for n in counts], 3)
    assert set(a) == {"count", "shape", "position", "yaw"}
    for key in b:  # exact: the same generator draws through the same numpy arithmetic, in one process
        np.testing.assert_array_equal(a[key], b[key])


def test_decompose_describes_the_inferred_look(varied):
    with torch.no_grad():
        lat = varied.predict(torch.rand(2, 3, 32, 32))
    looks = varied.objects.describe_scene(lat.scene)
    assert set(looks[0]) == {"camera", "light", "ground_color"}
    assert set(looks[0]["camera"]) == {"elevation_deg", "azimuth_deg", "distance"}
    assert 40 <= looks[0]["camera"]["elevation_deg"] <= 70
    steps = varied.objects.describe(lat.objects)
    assert {"color", "size"} <= set(steps[0][0]) and varied.objects.scene_fields[-2:] == ("color", "size")



# ---------------------------------------------------------------- the look switches of old checkpoints
@pytest.mark.parametrize("path, looks", [("inverse_air/objects3d/models/air3d.pt", False),
                                         ("inverse_air/objects3d/models/air3d-looks.pt", True),
                                         ("tests/data/v1/model3d.pt", False)])
def test_old_checkpoints_load_with_the_look_switches_of_before(path, looks):
    """Checkpoints made before ``standardize_glimpse`` and ``psi_log_sigma_max`` were config
    fields (format 2 without them; format 1) get them as the rule of before says: on where the
    look varies."""
    import json
    from pathlib import Path

    from inverse_air.checkpoint import load_model

    path = Path(__file__).resolve().parents[2] / path
    raw = json.loads(torch.load(path, weights_only=True)["config"])
    assert "standardize_glimpse" not in json.dumps(raw)  # a checkpoint of before
    model, payload = load_model(path)
    objects = payload["config"].air.objects
    assert bool(objects.variation.varied) == looks
    assert (objects.standardize_glimpse, objects.psi_log_sigma_max) == ((True, 0.0) if looks else (False, 1.0))
    assert (model.objects.standardize_glimpse, model.objects.psi_log_sigma_max) == (looks, 0.0 if looks else 1.0)
    assert model.objects.glimpse_encoder.convs[0].in_channels == (6 if looks else 3) + 2  # and x, y


def test_the_look_switches_are_saved_and_follow_the_data():
    """A config holds the switches' values (checkpoints show them); fitted to data whose look is
    fixed, the preset's switches become the fixed look's; set explicitly, they are kept."""
    from inverse_air.config import DatasetConfig, to_dict
    from inverse_air.kinds import read_config
    from inverse_air.objects3d.config import Scenes3DConfig
    from inverse_air.objects3d.kind import KIND

    preset = KIND.air
    assert (preset.objects.standardize_glimpse, preset.objects.psi_log_sigma_max) == (True, 0.0)
    fixed = DatasetConfig(scenes=Scenes3DConfig(variation=Variation.none()))
    fitted = KIND.fit_to_data(preset, fixed)
    assert (fitted.objects.standardize_glimpse, fitted.objects.psi_log_sigma_max) == (False, 1.0)
    saved = to_dict(fitted)
    assert saved["objects"]["standardize_glimpse"] is False and saved["objects"]["psi_log_sigma_max"] == 1.0
    explicit = Objects3DConfig(variation=Variation.none(), standardize_glimpse=True, psi_log_sigma_max=0.5)
    assert read_config(AIRConfig, to_dict(AIRConfig(objects=explicit))).objects == explicit


def test_scene_posterior_weights_of_before_load_under_their_new_names(varied):
    """Checkpoints before the scene posterior had a module of its own named its weights
    ``objects.scene_encoder.*``, ``objects.scene_head.*``, ``objects.scene_spread.*``."""
    state = varied.state_dict()
    assert any(k.startswith("objects.scene.encoder.") for k in state)
    legacy = {k.replace("objects.scene.encoder.", "objects.scene_encoder.").replace("objects.scene.head.", "objects.scene_head.")
              .replace("objects.scene.spread.", "objects.scene_spread."): v.clone() + 1 for k, v in state.items()}
    torch.manual_seed(1)
    other = build_model(AIRConfig(objects=Objects3DConfig(render=RenderConfig(image_size=32)), **TINY_AIR))
    other.load_state_dict(legacy)
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k] + 1), k


def test_a_yaw_taught_mean_first_moves_the_mean_whatever_the_spread():
    """At the spread's bound a wrapped normal is nearly flat: its -log q gives a wrong mean
    almost no gradient and widens the spread. Mean first, the mean is taught as if the spread
    were narrow, the spread about the mean held; at the mean both values agree."""
    target, log_sigma = torch.tensor([1.0]), torch.tensor([1.0], requires_grad=True)
    grads = {}
    for mean_first in (False, True):
        mean = torch.tensor([0.0], requires_grad=True)
        taught_angle_log_prob(target, mean, log_sigma, mean_first).sum().backward()
        grads[mean_first] = mean.grad.item()
    assert abs(grads[False]) < 0.05  # -log q: a wrong mean is left where it is
    assert grads[True] == pytest.approx(math.sin(1.0), abs=1e-5)  # the cosine's alone: the spread's term holds it
    at = torch.tensor([0.4])
    assert taught_angle_log_prob(at, at, torch.tensor([-1.0]), True).item() == pytest.approx(
        wrapped_normal_log_prob(at, at, torch.tensor([-1.0])).item(), abs=1e-6)
