"""What the AIR core, training and decompose need from a kind of object: the object-model
protocol.

An object model (3D: :class:`inverse_air.objects3d.model3d.Objects3D`, 2D:
:class:`inverse_air.objects2d.model2d.Objects2D`) owns the per-object latents: their prior,
their posterior head (attend, then infer) and the generative model that draws them. The core
(:mod:`inverse_air.air`) adds what every AIR variant shares. Latents travel as dicts of
tensors, each ``(B, ...)`` for one step and ``(B, N, ...)`` stacked over the N steps.

:class:`ObjectModel` is what every object model has; :class:`PriorSampler` is what a model
whose generative model is fully specified has in addition (the sleep phase needs it);
:class:`SceneModel` is what a model whose images also have latents of their own (a camera, a
light) has in addition. Scene latents travel as a dict of tensors ``(B, ...)``, ``scene``.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch


class ObjectStep(NamedTuple):
    """One step's object latents, as :meth:`ObjectModel.infer_step` returns them."""

    z: dict[str, torch.Tensor]
    """The object's latents, each ``(B, ...)`` (the target's when one is given)."""
    vector: torch.Tensor
    """``(B, D)`` the latents as the core reads them back at the next step."""
    log_q_discrete: torch.Tensor | None
    """``(B,)`` log q of the discrete object latents drawn (they need score-function gradients);
    None when ``infer_step`` was asked for no densities."""
    kl: torch.Tensor | None
    """``(B,)`` log q - log p of all object latents (single-sample estimate or exact); None
    when ``infer_step`` was asked for no densities."""
    target_nll: torch.Tensor | None
    """``(B,)`` -log q(target latents) when a target was given."""


class ObjectModel(Protocol):
    """What AIR, training and decompose use of a kind of object (3D shapes, 2D digits)."""

    latent_size: int
    """D: size of :attr:`ObjectStep.vector`."""
    scene_fields: tuple[str, ...]
    """The keys of :meth:`describe`'s entries that a scene description holds (decompose's
    ``objects``; 3D: a scene file's ``shape``, ``position``, ``yaw_deg``)."""
    choices: dict[str, int]
    """Discrete object latents ``decompose --refine`` may try each value of (3D: ``identity``,
    3), by name: how many values; the posterior's probabilities are the latent ``{name}_probs``.
    An object model may also say, by a method ``tried_with(name, value)``, which other latents'
    values each value is tried with (3D: a cube at each of a few yaws); without it, each value
    is tried with the object's own."""

    def infer_step(self, hidden: torch.Tensor, image: torch.Tensor, sample: bool,
                   target: dict[str, torch.Tensor] | None, densities: bool = True,
                   scene: dict[str, torch.Tensor] | None = None) -> ObjectStep:
        """Posterior of one object given the core's state ``hidden (B, H)``, the image
        ``(B, C, S, S)`` (which the object model may attend to) and the image's scene latents
        (a :class:`SceneModel`'s; else None); ``sample=False`` takes the most likely discrete
        values and the mean of continuous ones; ``target`` teacher-forces the step's latents;
        ``densities=False`` skips the log-densities (``log_q_discrete`` and ``kl`` are None)."""

    def render(self, z_pres: torch.Tensor, objects: dict[str, torch.Tensor],
               scene: dict[str, torch.Tensor] | None = None, grad: bool = False) -> torch.Tensor:
        """The generative model's mean image ``(B, C, S, S)`` of objects ``(B, N, ...)`` where
        ``z_pres (B, N)`` is 1, in each image's ``scene`` (None: a model without scene latents).
        ``grad=True`` makes it differentiable with respect to the continuous latents (the ELBO
        and ``--refine`` need it); its value is the same image."""

    def empty(self, batch: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latents of zero objects, each ``(B, 0, ...)`` (DAIR's first step renders them)."""

    def describe(self, objects: dict[str, torch.Tensor]) -> list[list[dict]]:
        """Each image's steps ``(B, N, ...)`` as JSON-ready dicts (decompose's output; the keys
        :attr:`scene_fields` among them)."""

    def outline_masks(self, z_pres: torch.Tensor, objects: dict[str, torch.Tensor],
                      scene: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``(B, N, S, S)`` bool: what overlays outline for each step (3D: the object's whole
        silhouette; 2D: its window)."""

    def free_latents(self, objects: dict[str, torch.Tensor],
                     scene: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The continuous latents ``decompose --refine`` descends on, as unconstrained tensors
        (of the objects ``(B, N, ...)`` and, for a :class:`SceneModel`, of the scene)."""

    def bound_latents(self, free: dict[str, torch.Tensor], objects: dict[str, torch.Tensor],
                      scene: dict[str, torch.Tensor]) -> tuple[dict, dict]:
        """``objects`` and ``scene`` with :meth:`free_latents`' values put back (each valid);
        differentiable in ``free``."""

    def order_key(self, objects: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, N)``: where each step's object comes in the canonical order of teacher forcing
        (ascending; the kind's ``targets_from_arrays`` sorts a dataset's objects the same way:
        3D nearest the camera first, 2D left to right)."""

    def propose(self, image: torch.Tensor, residual: torch.Tensor,
                scene: dict[str, torch.Tensor] | None = None) -> list[dict[str, torch.Tensor]]:
        """Objects worth trying where ``image (B, C, S, S)`` is least explained (``residual``:
        the image minus its reconstruction), each a dict of one step's latents ``(B, ...)``:
        the count search of :mod:`inverse_air.refine` adds them in a free step where they lower
        the energy."""


@runtime_checkable
class PriorSampler(Protocol):
    """An object model whose generative model is fully specified (3D): scenes can be drawn from
    its prior and drawn as images, so the inference network can learn from the model itself
    (the sleep phase) and datasets are samples of the same prior."""

    def sample_prior(self, counts: np.ndarray, generator: np.random.Generator,
                     max_objects: int | None = None) -> dict[str, np.ndarray]:
        """Scenes of ``counts (B,)`` objects from the prior, in the kind's ground-truth format
        (a dataset shard's arrays, without ``images``), with ``max_objects`` object slots
        (default: the largest count)."""


class SceneStep(NamedTuple):
    """An image's scene latents, as :meth:`SceneModel.infer_scene` returns them."""

    z: dict[str, torch.Tensor]
    """The scene latents, each ``(B, ...)`` (the target's when one is given)."""
    mean: dict[str, torch.Tensor]
    """The posterior's mean of the scene latents (detached): the scene the core explains away."""
    vector: torch.Tensor
    """``(B, D_scene)`` the latents as the core's LSTM reads them at every step."""
    kl: torch.Tensor | None
    """``(B,)`` log q - log p of the scene latents; None without densities."""
    target_nll: torch.Tensor | None
    """``(B,)`` -log q(target scene latents) when a target was given."""


@runtime_checkable
class SceneModel(Protocol):
    """An object model whose images also have latents of their own (3D: camera, light, ground
    colour), inferred once per image before the first object (:meth:`inverse_air.air.AIR.infer`)."""

    scene_size: int
    """D_scene: size of :attr:`SceneStep.vector`; 0 when nothing of the scene is inferred."""
    scene_keys: tuple[str, ...]
    """The keys of the scene latents (in :attr:`SceneStep.z` and in teacher-forcing targets)."""

    def infer_scene(self, image: torch.Tensor, sample: bool, target: dict[str, torch.Tensor] | None,
                    densities: bool = True) -> SceneStep:
        """Posterior of the scene latents given the image ``(B, C, S, S)`` (the object model
        reads it with an encoder of its own); arguments as in :meth:`ObjectModel.infer_step`."""

    def describe_scene(self, scene: dict[str, torch.Tensor]) -> list[dict]:
        """Each image's scene latents as a JSON-ready dict (decompose merges it into each
        image's result; 3D: a scene file's ``camera``, ``light``, ``ground_color``)."""

