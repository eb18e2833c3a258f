"""The AIR model: a recurrent inference network over a variable number of objects.

The core does not know what an object is. It takes an *object model*
(:class:`inverse_air.object_model.ObjectModel`) that owns the per-object latents (their prior,
their posterior head and the generative model that draws them) and adds what every AIR variant
shares: the image encoder, the LSTM core, the presence chain and the score-function baseline.
It imports no kind's package (a test checks it).

**The presence chain.** ``z_pres`` is a unary code over ``N = max_steps`` steps: ``n`` ones
then zeros, ``n`` the object count. Its prior comes from a prior over counts ``P(n)``:
``p(z_pres_i = 1 | z_pres_{i-1} = 1) = P(n > i) / P(n >= i)``. Inference stops at the first
absent step: later steps are computed (the batch is dense) but masked, so they contribute
nothing to any term (``z_pres``, the KL, the discrete log-probabilities, the target loss).

**Scene latents.** An object model may give each image latents of its own (3D: camera, light,
ground colour; :class:`inverse_air.object_model.SceneModel`). They are inferred once per image,
before the first step (the object model reads the image for them), and every step reads them.
Their KL is charged once per image, whatever the count. The image encoder then reads the image
and the image minus the empty scene the posterior-mean scene latents draw (the background
explained away, as DAIR explains away the objects found so far; the mean, not the sample or
the target, so that training sees what inference will), which is what lets the steps find
objects on grounds of any colour seen from any camera.

One step of inference reads the image features (with DAIR: of the image
and of the image minus the reconstruction of the objects found so far), the previous
object's latents and the scene latents, updates the LSTM and draws ``z_pres`` and the object's
latents.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import AIRConfig
from .networks import Baseline, ImageEncoder
from .object_model import ObjectModel, SceneModel


PRECISIONS = ("fp32", "bf16")
"""Arithmetic precisions of :meth:`AIR.predict`."""


class Latents(NamedTuple):
    """Everything one pass of inference returns; per step, masked after the first absence."""

    z_pres: torch.Tensor
    """``(B, N)`` 1.0 for present objects (a unary code)."""
    pres_prob: torch.Tensor
    """``(B, N)`` q(z_pres = 1) at each step (whether or not the step was reached)."""
    objects: dict[str, torch.Tensor]
    """Object latents stacked over steps, each ``(B, N, ...)``."""
    log_q_discrete: torch.Tensor | None
    """``(B, N)`` log q of the discrete choices made at each step (z_pres and the object's);
    None from :meth:`AIR.predict`, which skips the densities."""
    kl: torch.Tensor | None
    """``(B, N)`` log q - log p of each step's latents (z_pres and, if present, the object's);
    None from :meth:`AIR.predict`."""
    hidden: torch.Tensor
    """``(B, N, H)`` the LSTM state after each step (the baseline reads it, detached)."""
    target_nll: torch.Tensor | None
    """``(B, N)`` -log q(target) per step when inference was given a target."""
    scene: dict[str, torch.Tensor] = {}
    """The image's scene latents, each ``(B, ...)`` (empty for a model without them)."""
    scene_kl: torch.Tensor | None = None
    """``(B,)`` log q - log p of the scene latents (None without them or without densities)."""
    scene_target_nll: torch.Tensor | None = None
    """``(B,)`` -log q(target scene latents) when inference was given a target."""

    @property
    def count(self) -> torch.Tensor:
        """``(B,)`` long: the number of present objects."""
        return self.z_pres.sum(1).round().long()


def count_probs(count_prior: tuple[float, ...], max_steps: int, floor: float) -> np.ndarray:
    """The model's prior ``P(n)`` over counts ``n = 0..N``, ``(N + 1,)`` float64:
    ``count_prior`` with every entry raised to at least ``floor``, renormalized. The presence
    chain (the ELBO) and the sleep phase's scenes both follow it."""
    if len(count_prior) != max_steps + 1:
        raise ValueError(f"count_prior needs {max_steps + 1} entries (counts 0..{max_steps}), "
                         f"got {len(count_prior)}")
    p = np.maximum(np.asarray(count_prior, dtype=np.float64), floor)
    return p / p.sum()


def pres_prior(count_prior: tuple[float, ...], max_steps: int, floor: float) -> torch.Tensor:
    """Per-step ``p(z_pres_i = 1 | z_pres_{i-1} = 1)``, shape ``(N,)``, from the count prior
    :func:`count_probs` gives."""
    p = torch.from_numpy(count_probs(count_prior, max_steps, floor))
    at_least = p.flip(0).cumsum(0).flip(0)  # P(n >= i), i = 0..N
    return (at_least[1:] / at_least[:-1]).float()


class AIR(nn.Module):
    """Attend, Infer, Repeat over an object model.

    Args:
        config: the model configuration (image size and channels from ``config.objects``).
        objects: the object model (owns per-object latents and the generative model).

    Parameters whose names start with ``baseline.`` belong to the score-function baseline and
    get their own optimizer group (:func:`parameter_groups`).
    """

    def __init__(self, config: AIRConfig, objects: ObjectModel):
        super().__init__()
        self.config = config
        self.objects = objects
        S = config.image_size
        self.channels = channels = config.channels
        self.scene_size = objects.scene_size if isinstance(objects, SceneModel) else 0
        # DAIR reads the image and the image minus the reconstruction so far; a scene model
        # the image minus the inferred empty scene (see the module docstring).
        in_channels = 2 * channels if (config.dair or self.scene_size) else channels
        self.encoder = ImageEncoder(in_channels, S, config.encoder_channels, config.encoder_features)
        self.core = nn.LSTMCell(config.encoder_features + objects.latent_size + self.scene_size, config.lstm_size)
        self.pres_head = nn.Linear(config.lstm_size, 1)
        nn.init.zeros_(self.pres_head.weight)
        self.baseline = Baseline(channels, S, config.baseline_channels, config.lstm_size,
                                 config.max_steps)
        # Running (mean, std, initialized) of the score-function learning signals (NVIL's
        # centring and scaling; see inverse_air.elbo). Saved in checkpoints.
        self.register_buffer("signal_stats", torch.tensor([0.0, 1.0, 0.0]))
        self.register_buffer("prior_pres", pres_prior(config.count_prior, config.max_steps,
                                                      config.count_prior_floor), persistent=False)

    def infer(self, x: torch.Tensor, *, sample: bool = True,
              target: dict[str, torch.Tensor] | None = None, densities: bool = True) -> Latents:
        """Run inference on a batch of images.

        Args:
            x: ``(B, C, S, S)`` images in [0, 1].
            sample: draw latents from q (training); ``False`` takes the most likely presence
                and identity and the posterior mean of continuous latents (evaluation).
            target: teacher forcing (sleep and supervised phases): ``z_pres (B, N)``, the
                object model's latents ``(B, N, ...)`` and its scene latents ``(B, ...)``
                (``SceneModel.scene_keys``); each step then feeds the target's latents forward
                and reports ``-log q(target)``.
            densities: compute the log-densities and KL terms the objectives need; ``False``
                (prediction only, no target) leaves ``log_q_discrete`` and ``kl`` None.

        Returns:
            :class:`Latents`.
        """
        if target is not None and not densities:
            raise ValueError("teacher forcing reports -log q(target): it needs densities=True")
        B, N = x.shape[0], self.config.max_steps
        h = c = x.new_zeros(B, self.config.lstm_size)
        prev = x.new_zeros(B, self.objects.latent_size)
        alive = x.new_ones(B)
        target, scene_target = split_scene(target, self.objects)
        scene = seen = None
        if self.scene_size:
            scene = self.objects.infer_scene(x, sample, scene_target, densities)
            with torch.no_grad():
                background = self.objects.render(x.new_zeros(B, 0), self.objects.empty(B, x), scene.mean)
            feats = None if self.config.dair else self.encoder(torch.cat([x, x - background], dim=1))
            # The steps read the scene inferred (teacher forcing: its posterior mean, what they
            # will be given at test time, not the target's), so they learn to place their
            # glimpses with the camera that inference finds.
            seen = scene if scene_target is None else scene._replace(
                z=scene.mean, vector=self.objects.scene_vector(scene.mean))
        else:
            feats = None if self.config.dair else self.encoder(x)
        out: dict[str, list] = {k: [] for k in ("z_pres", "prob", "logq", "kl", "hidden", "nll", "z")}
        for i in range(N):
            if self.config.dair:
                done = self._reconstruct_prefix(out["z_pres"], out["z"], x, seen)
                feats = self.encoder(torch.cat([x, x - done], dim=1))
            inputs = [feats, prev] if scene is None else [feats, prev, seen.vector]
            h, c = self.core(torch.cat(inputs, dim=1), (h, c))
            logit = self.pres_head(h).squeeze(1)  # (B,)
            step_target = None if target is None else {k: v[:, i] for k, v in target.items()}
            obj = self.objects.infer_step(h, x, sample, step_target, densities,
                                          scene=None if scene is None else seen.z)
            if target is not None:
                z_pres = step_target["z_pres"].to(x.dtype) * alive
            elif sample:
                z_pres = torch.bernoulli(torch.sigmoid(logit).detach()) * alive
            else:
                z_pres = (logit > 0).to(x.dtype) * alive
            out["z_pres"].append(z_pres)
            out["prob"].append(torch.sigmoid(logit))
            out["hidden"].append(h)
            out["z"].append(obj.z)
            if densities:
                log_q_pres = -F.binary_cross_entropy_with_logits(logit, z_pres, reduction="none")
                p = self.prior_pres[i]
                log_p_pres = z_pres * torch.log(p) + (1 - z_pres) * torch.log1p(-p)
                out["logq"].append(alive * log_q_pres + z_pres * obj.log_q_discrete)
                out["kl"].append(alive * (log_q_pres - log_p_pres) + z_pres * obj.kl)
            if target is not None:
                out["nll"].append(-alive * log_q_pres + z_pres * obj.target_nll)
            prev = obj.vector * z_pres.unsqueeze(1)
            alive = z_pres
        return Latents(
            z_pres=torch.stack(out["z_pres"], 1), pres_prob=torch.stack(out["prob"], 1),
            objects=_stack_steps(out["z"]),
            log_q_discrete=torch.stack(out["logq"], 1) if densities else None,
            kl=torch.stack(out["kl"], 1) if densities else None, hidden=torch.stack(out["hidden"], 1),
            target_nll=torch.stack(out["nll"], 1) if target is not None else None,
            scene={} if scene is None else scene.z, scene_kl=None if scene is None else scene.kl,
            scene_target_nll=None if scene is None or target is None else scene.target_nll)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, precision: str = "fp32") -> Latents:
        """Deterministic inference for evaluation and decompose: ``infer(x, sample=False)``
        without the densities (``log_q_discrete`` and ``kl`` are None).

        ``precision="bf16"`` runs convolutions and linear layers in bfloat16 (``torch.autocast``;
        about 1.6x the throughput of large batches on CPUs with AVX-512 BF16 or AMX, slower for
        single images; a small cost in pose precision);
        latents come back in float32 either way.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            latents = self.infer(x, sample=False, densities=False)
        if precision == "fp32":
            return latents
        as_float = lambda t: t.float() if t.is_floating_point() else t
        return latents._replace(**{f: as_float(getattr(latents, f)) for f in latents._fields
                                   if isinstance(getattr(latents, f), torch.Tensor)},
                                objects={k: as_float(v) for k, v in latents.objects.items()},
                                scene={k: as_float(v) for k, v in latents.scene.items()})

    def sample_counts(self, batch: int, generator: np.random.Generator) -> np.ndarray:
        """``(B,)`` object counts drawn from the model's prior over counts (:func:`count_probs`)."""
        c = self.config
        p = count_probs(c.count_prior, c.max_steps, c.count_prior_floor)
        return generator.choice(len(p), size=batch, p=p)

    def reconstruct(self, latents: Latents, grad: bool = False) -> torch.Tensor:
        """Render the inferred latents with the generative model: ``(B, C, S, S)``;
        ``grad=True``: differentiable in the continuous latents (``ObjectModel.render``)."""
        return self.objects.render(latents.z_pres, latents.objects, latents.scene or None, grad=grad)

    def _reconstruct_prefix(self, z_pres: list, z: list, x: torch.Tensor, scene=None) -> torch.Tensor:
        """DAIR's reconstruction of the objects found in the steps so far (no gradient), in the
        posterior-mean scene."""
        B = x.shape[0]
        look = None if scene is None else scene.mean
        with torch.no_grad():
            if not z_pres:
                return self.objects.render(x.new_zeros(B, 0), self.objects.empty(B, x), look)
            return self.objects.render(torch.stack(z_pres, 1), _stack_steps(z), look)


def split_scene(target: dict | None, objects) -> tuple[dict | None, dict | None]:
    """A teacher-forcing target's per-step part (``z_pres`` and object latents, ``(B, N, ...)``)
    and its scene part (the object model's ``scene_keys``, ``(B, ...)``)."""
    if target is None:
        return None, None
    keys = set(getattr(objects, "scene_keys", ()))
    return ({k: v for k, v in target.items() if k not in keys},
            {k: v for k, v in target.items() if k in keys} or None)


def _stack_steps(steps: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in steps], 1) for k in steps[0]}


def parameter_groups(model: AIR, lr: float, baseline_lr: float) -> list[dict]:
    """Adam parameter groups: the inference network (with, in 2D, the learned decoder: the
    part of the generative model that trains on the same ELBO), then the baseline (own
    learning rate).

    The baseline is found by name (``baseline.``); a test checks that every parameter lands in
    exactly one group, because a baseline silently trained at the main rate (or not at all)
    is a known way to break AIR without an error.
    """
    main, base = [], []
    for name, param in model.named_parameters():
        (base if name.startswith("baseline.") else main).append(param)
    return [{"params": main, "lr": lr, "name": "inference"},
            {"params": base, "lr": baseline_lr, "name": "baseline"}]


def log_count_prior(model: AIR) -> torch.Tensor:
    """``(N + 1,)`` log P(n) implied by the presence chain (for checks and reports)."""
    p = model.prior_pres.double()
    logs = []
    reach = torch.zeros((), dtype=torch.float64)
    for i in range(len(p) + 1):
        stop = torch.log1p(-p[i]) if i < len(p) else torch.zeros((), dtype=torch.float64)
        logs.append(reach + stop)
        if i < len(p):
            reach = reach + torch.log(p[i])
    return torch.stack(logs)

