"""The 2D object model on the AIR core: latents, the generative model, targets, gradients."""

import dataclasses

import numpy as np
import pytest
import torch

from inverse_air.air import parameter_groups
from inverse_air.config import AIRConfig
from inverse_air.densities import normal_kl
from inverse_air.errors import UserError
from inverse_air.checkpoint import build_model
from inverse_air.objects2d.config import Objects2DConfig
from inverse_air.objects2d.model2d import latents_to_arrays, targets_from_arrays
from inverse_air.objects2d.render2d import paste

from conftest import TINY_AIR, TINY_OBJECTS_2D

S = 24


def tiny_config(glimpse_channels=(), **fields):
    objects = Objects2DConfig(canvas_size=S, glimpse_channels=glimpse_channels, **TINY_OBJECTS_2D)
    return AIRConfig(objects=objects, pixel_sigma=0.3, count_prior=(1 / 3, 1 / 3, 1 / 3, 0.0),
                     **{**TINY_AIR, **fields})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_config())


def test_infer_shapes_and_unary_presence(model):
    x = torch.rand(5, 1, S, S)
    with torch.no_grad():
        lat = model.infer(x, sample=True)
    assert lat.z_pres.shape == lat.kl.shape == lat.log_q_discrete.shape == (5, 3)
    assert lat.objects["where"].shape == (5, 3, 3) and lat.objects["what"].shape == (5, 3, 8)
    assert bool((lat.z_pres[:, 1:] <= lat.z_pres[:, :-1]).all())
    assert model.objects.latent_size == 3 + 8 and model.config.channels == 1


def test_initial_windows_sit_at_the_prior(model):
    """Before training, every step proposes a centred window of about the prior's scale."""
    with torch.no_grad():
        lat = model.infer(torch.rand(16, 1, S, S), sample=False)
    where = lat.objects["where"]
    assert float((where[..., 0] - 0.43).abs().max()) < 0.15
    assert float(where[..., 1:].abs().max()) < 0.15


def test_render_is_the_sum_of_the_present_objects_windows(model):
    torch.manual_seed(1)
    z_pres = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    objects = {"where": torch.tensor([[[0.4, -0.3, 0.2], [0.3, 0.5, -0.4], [0.5, 0.0, 0.0]]] * 2),
               "what": torch.randn(2, 3, 8)}
    with torch.no_grad():
        image = model.objects.render(z_pres, objects)
        windows = model.objects.decoder(objects["what"][0])  # (3, 1, G, G)
        by_hand = paste(windows[:2], objects["where"][0, :2], S).sum(0)
    assert image.shape == (2, 1, S, S)
    assert torch.allclose(image[0], by_hand, atol=1e-6)
    assert float(image[1].abs().max()) == 0.0  # absent objects draw nothing
    empty = model.objects.render(torch.zeros(2, 0), model.objects.empty(2, image))
    assert empty.shape == (2, 1, S, S) and float(empty.abs().max()) == 0.0


def test_over_composite_lays_windows_front_to_back_as_a_loop_does():
    """``composite="over"``: the vectorized compositing equals a slow loop, step 1 in front."""
    torch.manual_seed(2)
    config = dataclasses.replace(tiny_config(), objects=dataclasses.replace(tiny_config().objects, composite="over",
                                                                             channels=3))
    over = build_model(config).objects
    z_pres = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    objects = {"where": torch.tensor([[[0.5, -0.1, 0.0], [0.5, 0.1, 0.1], [0.4, 0.0, -0.1]]] * 2),
               "what": torch.randn(2, 3, 8)}
    with torch.no_grad():
        image = over.render(z_pres, objects)
        expected = torch.zeros(2, 3, S, S)
        for b in range(2):
            through = torch.ones(1, S, S)  # what still shows through the steps in front
            for i in range(3):
                if z_pres[b, i] == 0:
                    continue
                window = over.decoder(objects["what"][b, i:i + 1])  # (1, 4, G, G): colour, opacity
                pasted = paste(window, objects["where"][b, i:i + 1], S)[0]
                colour, opacity = pasted[:3], pasted[3:]
                expected[b] += through * opacity * colour
                through = through * (1 - opacity)
    assert image.shape == (2, 3, S, S) and torch.allclose(image, expected, atol=1e-6)
    assert float(image.max()) <= 1.0 + 1e-6  # an opaque object hides what is behind it: no sum past 1


def test_bounded_scale_stays_within_its_bounds_and_starts_at_the_prior_mean():
    objects = dataclasses.replace(tiny_config().objects, scale_prior_mean=0.25, scale_min=0.125, scale_max=0.375)
    bounded = build_model(dataclasses.replace(tiny_config(), objects=objects)).objects
    with torch.no_grad():
        bounded.where_head.weight.zero_()
        hidden = torch.zeros(3, bounded.where_head.in_features)
        scales = []
        for raw in (0.0, 50.0, -50.0):
            bounded.where_head.bias[0] = raw
            scales.append(float(bounded.infer_step(hidden, torch.rand(3, 1, S, S), sample=False).z["where"][0, 0]))
    assert scales == pytest.approx([0.25, 0.375, 0.125], abs=1e-5)
    with pytest.raises(UserError, match="scale_prior_mean must lie between scale_min"):
        dataclasses.replace(objects, scale_prior_mean=0.5)


def test_normal_kl_is_exact():
    mean, log_sigma = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([-2.0, 0.5, 0.0])
    prior_mean, prior_log_sigma = torch.tensor([0.43, 0.0, 0.0]), torch.tensor([-2.3, 0.0, 0.1])
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean, log_sigma.exp()),
                                                 torch.distributions.Normal(prior_mean, prior_log_sigma.exp()))
    assert torch.allclose(normal_kl(mean, log_sigma, prior_mean, prior_log_sigma), expected, atol=1e-6)


def test_targets_are_left_to_right_and_padded():
    arrays = {"count": np.array([2, 0, 1]),
              "box": np.array([[[0.4, 0.5, 0.1], [0.45, -0.6, 0.2]], [[0, 0, 0]] * 2,
                               [[0.42, 0.3, -0.3], [0, 0, 0]]], np.float32)}
    t = targets_from_arrays(arrays, max_steps=3)
    assert t["z_pres"].tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 0]]
    assert t["where"].shape == (3, 3, 3)
    assert np.allclose(t["where"][0, :2].numpy(), [[0.45, -0.6, 0.2], [0.4, 0.5, 0.1]])
    assert np.allclose(t["where"][2, 0].numpy(), [0.42, 0.3, -0.3])
    assert float(t["where"][1].abs().max()) == 0 and float(t["where"][2, 1:].abs().max()) == 0
    with pytest.raises(ValueError, match="at most 1"):
        targets_from_arrays(arrays, max_steps=1)


def test_teacher_forced_latents_come_back_as_the_boxes(model):
    arrays = {"count": np.array([2, 1, 0]),
              "box": np.array([[[0.4, 0.5, 0.1], [0.45, -0.6, 0.2]], [[0.42, 0.3, -0.3], [0, 0, 0]],
                               [[0, 0, 0]] * 2], np.float32)}
    target = targets_from_arrays(arrays, 3)
    with torch.no_grad():
        lat = model.infer(torch.rand(3, 1, S, S), target=target)
    back = latents_to_arrays(lat)
    assert back["count"].tolist() == [2, 1, 0]
    assert np.allclose(back["box"], target["where"].numpy())
    assert bool((lat.target_nll[2, 1:] == 0).all())  # nothing counts after the first absence


def test_one_elbo_step_reaches_every_parameter_group_decoder_included():
    """The decoder is the learned part of the generative model: the ELBO must train it, in the
    inference network's optimizer group (not the baseline's, not none)."""
    from inverse_air.train import elbo_loss

    torch.manual_seed(0)
    model = build_model(tiny_config())
    with torch.no_grad():  # some objects present, so every head is used
        model.pres_head.bias.fill_(3.0)
    loss, stats = elbo_loss(model, torch.rand(6, 1, S, S))
    loss.backward()
    names = {id(p): n for n, p in model.named_parameters()}
    for group in parameter_groups(model, lr=1e-3, baseline_lr=1e-2):
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in group["params"]), group["name"]
    inference = {names[id(p)] for p in parameter_groups(model, 1e-3, 1e-2)[0]["params"]}
    decoder = [n for n in names.values() if n.startswith("objects.decoder.")]
    assert decoder and set(decoder) <= inference
    for part in ("encoder", "core", "pres_head", "objects.where_head", "objects.glimpse_encoder",
                 "objects.what_head", "objects.decoder.hidden", "objects.decoder.out", "baseline"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part + ".")]
        assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads), part


def test_dair_reads_the_residual():
    torch.manual_seed(0)
    model = build_model(tiny_config(dair=True))
    assert model.encoder.convs[0].in_channels == 1 * 2 + 2
    with torch.no_grad():
        lat = model.infer(torch.rand(2, 1, S, S), sample=True)
    assert lat.z_pres.shape == (2, 3)


def test_linear_encoders_read_no_coordinate_channels():
    model = build_model(tiny_config(encoder_channels=(), glimpse_channels=()))
    assert model.encoder.fc[0].in_features == S * S
    assert model.objects.glimpse_encoder.fc[0].in_features == TINY_OBJECTS_2D["glimpse_size"] ** 2


def test_2d_has_no_sleep_phase(tiny_run_config_2d, tmp_path):
    from inverse_air.train import Trainer

    with pytest.raises(UserError, match="2d model has no sleep phase"):
        Trainer(tiny_run_config_2d(steps=4, sleep_fraction=0.5), tmp_path, progress=False)


def test_presets_and_the_dataset_fix_the_2d_model(tiny_run_config_2d):
    config = tiny_run_config_2d()
    assert config.air.kind == "2d" and config.air.pixel_sigma == 0.3 and config.train.sleep_fraction == 0
    assert config.air.image_size == 50 and config.air.objects.scale_prior_mean == pytest.approx(28 / 1.3 / 50, abs=1e-3)
    assert config.air.count_prior[:3] == pytest.approx((1 / 3,) * 3)


def test_supervised_2d_steps_lower_the_loss(tiny_run_config_2d, tmp_path):
    from inverse_air.train import Trainer

    trainer = Trainer(tiny_run_config_2d(steps=40, supervised=True, lr=3e-3), tmp_path, progress=False)
    losses = [trainer.train_step(step)["loss"] for step in range(40)]
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 1.0


def test_checkpoints_of_one_kind_are_refused_as_the_other(tiny_run_config_2d, tmp_path):
    from inverse_air.checkpoint import load_checkpoint, load_model, save_checkpoint

    config = tiny_run_config_2d()
    save_checkpoint(tmp_path / "m.pt", build_model(config.air), config, step=1)
    model, _ = load_model(tmp_path / "m.pt", expect_kind="2d")
    assert model.config == config.air
    with pytest.raises(UserError, match="is a 2d model checkpoint, expected a 3d model"):
        load_checkpoint(tmp_path / "m.pt", expect_kind="3d")
