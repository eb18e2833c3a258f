"""The AIR core (with the 3D object model): the presence chain, its masking, the count prior,
the encoders, parameter groups; and that the core imports no kind."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from inverse_air.air import count_probs, log_count_prior, parameter_groups, pres_prior
from inverse_air.config import AIRConfig
from inverse_air.checkpoint import build_model
from inverse_air.networks import ImageEncoder
from inverse_air.objects3d.config import Objects3DConfig, RenderConfig, Variation

from conftest import TINY_AIR

TINY_3D = AIRConfig(objects=Objects3DConfig(render=RenderConfig(image_size=32), variation=Variation.none()), **TINY_AIR)
"""The core's tests run on the 3D object model with a fixed look (no scene latents)."""


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TINY_3D)


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
    # exact: one computation repeated in one process (same batch, threads and kernels)
    assert torch.equal(a.z_pres, b.z_pres) and torch.equal(a.objects["position"], b.objects["position"])


def test_predict_is_deterministic_inference_without_the_densities(model):
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        full = model.infer(x, sample=False)
    fast = model.predict(x)
    assert fast.kl is None and fast.log_q_discrete is None
    assert torch.equal(fast.z_pres, full.z_pres)  # the same arithmetic up to the presence, in one process
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
    model = build_model(dataclasses.replace(TINY_3D, dair=True))
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


def test_sleep_counts_follow_the_floored_count_prior(model):
    """The sleep phase draws counts from the same prior the ELBO charges: floored, so a count
    the dataset lacks is rare but possible in both."""
    p = count_probs((0.5, 0.5, 0.0, 0.0), 3, floor=0.01)
    assert p == pytest.approx([0.49, 0.49, 0.01, 0.01], abs=1e-3)
    config = dataclasses.replace(model.config, count_prior=(0.5, 0.5, 0.0, 0.0))
    counts = build_model(config).sample_counts(20000, np.random.default_rng(0))
    share = np.bincount(counts, minlength=4) / len(counts)
    assert share == pytest.approx(p, abs=0.01) and share[2] > 0 and share[3] > 0
    assert torch.allclose(log_count_prior(build_model(config)).exp(), torch.from_numpy(p), atol=1e-6)


CORE = ("inverse_air.air", "inverse_air.elbo", "inverse_air.networks", "inverse_air.object_model",
        "inverse_air.densities", "inverse_air.config")


def test_the_core_imports_no_kind():
    """The AIR core knows object models only through the protocol: importing it (in a fresh
    interpreter) loads neither kind's package, and no core module imports one (or the
    registry that finds them), not even inside a function."""
    code = ("import sys; import " + ", ".join(CORE) + "; "
            "print(sorted(m for m in sys.modules if m.startswith(('inverse_air.objects', 'pytorch3d'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded
    import ast
    import importlib
    from pathlib import Path

    for name in CORE:
        tree = ast.parse(Path(importlib.import_module(name).__file__).read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [f"{n.module}." + ".".join(a.name for a in n.names)
                     for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert imported, name
        for module in imported:
            assert not any(k in module for k in ("objects3d", "objects2d", "kinds")), (name, module)


# ---------------------------------------------------------------- scene latents
@pytest.fixture(scope="module")
def varied():
    torch.manual_seed(0)
    return build_model(dataclasses.replace(TINY_3D, objects=Objects3DConfig(render=RenderConfig(image_size=32))))


def test_scene_latents_are_inferred_once_per_image_and_charged_once(varied):
    """Camera, light and ground are the image's, not a step's: inferred before the first step,
    read by every step, their KL counted once per image, even where no object is present."""
    x = torch.rand(4, 3, 32, 32)
    lat = varied.infer(x, sample=True)
    assert varied.scene_size == 11 and set(lat.scene) == {"camera", "light_direction", "ambient", "diffuse",
                                                          "ground_color"}
    assert lat.scene["camera"].shape == (4, 3) and lat.scene_kl.shape == (4,)
    assert lat.kl.shape == (4, 3)
    # an empty image still pays for its scene latents in the ELBO
    from inverse_air.elbo import elbo_terms

    empty = lat._replace(z_pres=torch.zeros(4, 3), kl=torch.zeros(4, 3), log_q_discrete=torch.zeros(4, 3))
    terms = elbo_terms(x, x, empty, torch.zeros(4, 3), torch.tensor([0.0, 1.0, 1.0]), 0.1)
    assert torch.allclose(terms.kl, lat.scene_kl)
    # and the scene head learns from it
    varied.zero_grad()
    lat.scene_kl.sum().backward()
    assert varied.objects.scene.head[0].weight.grad.abs().sum() > 0


def test_teacher_forced_scene_latents_are_the_targets(varied):
    rng = np.random.default_rng(3)
    from inverse_air.objects3d.codec import targets_from_arrays

    target = targets_from_arrays(varied.objects.sample_prior(np.array([0, 2, 3]), rng), 3)
    lat = varied.infer(torch.rand(3, 3, 32, 32), target=target)
    for key in ("camera", "ambient", "diffuse", "ground_color"):
        assert torch.allclose(lat.scene[key], target[key], atol=1e-3), key
    assert torch.allclose(lat.scene["light_direction"], target["light_direction"], atol=1e-3)
    assert torch.allclose(lat.objects["color"][1, :2], target["color"][1, :2], atol=1e-3)
    assert lat.scene_target_nll.shape == (3,) and bool(torch.isfinite(lat.scene_target_nll).all())

