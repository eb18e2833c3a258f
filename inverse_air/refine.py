"""Analysis by synthesis: the amortized answer improved through the generative model.

``decompose --refine K`` starts from what one AIR pass inferred and lowers each image's
reconstruction error (the mean squared pixel difference between the image and the hard render
of its latents: with a fixed Gaussian pixel likelihood, the negative log-likelihood up to
constants), keeping the count:

1. **Identity, by trying.** Where the posterior over a discrete object latent (the object
   model's :attr:`~inverse_air.object_model.ObjectModel.choices`; 3D: the shape) is unsure
   (its largest probability below :data:`UNSURE`), each value is rendered in turn and the best
   kept, one object at a time.
2. **Every continuous latent, by gradient.** ``K`` Adam steps on the object model's free
   latents (:meth:`~inverse_air.object_model.ObjectModel.free_latents`; 3D: each object's
   position, yaw, colour and size, and the image's camera, light and ground where they are
   latents), through the renderer's differentiable path.
3. Identity tried again from the refined pose.

Every candidate's error is known exactly (the differentiable render's value is the hard
render), and each image keeps the best candidate it has seen, the amortized answer included:
an image's error never rises (:class:`Best`).
"""

from __future__ import annotations

import torch

UNSURE = 0.4
"""Identities are tried where the posterior's largest probability is below this. At 0.6, on
varied looks, trying replaced right shapes with wrong ones that explained the pixels a little
better (identity 0.714 -> 0.683 on 100 scenes); at 0.4 the shipped models are this unsure of
no object of the refine benchmark (docs/performance.md#refinement)."""


def _pick(better: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per image (``better (B,)``), ``new`` where better, else ``old``."""
    return torch.where(better.view(-1, *([1] * (new.dim() - 1))), new, old)


class Best:
    """Each image's best latents so far and their reconstruction error."""

    def __init__(self, error: torch.Tensor, objects: dict, scene: dict):
        self.error, self.objects, self.scene = error, objects, scene

    def offer(self, error: torch.Tensor, objects: dict, scene: dict) -> None:
        """Keep ``objects`` and ``scene`` for the images where ``error (B,)`` is lower."""
        better = error < self.error
        if not bool(better.any()):
            return
        self.error = torch.where(better, error, self.error)
        self.objects = {k: _pick(better, objects[k].detach(), v) for k, v in self.objects.items()}
        self.scene = {k: _pick(better, scene[k].detach(), v) for k, v in self.scene.items()}


@torch.no_grad()
def reconstruction_error(model, x: torch.Tensor, z_pres: torch.Tensor, objects: dict, scene: dict) -> torch.Tensor:
    """``(B,)`` mean squared difference per pixel between ``x`` and the hard render."""
    recon = model.objects.render(z_pres, objects, scene or None)
    return ((recon - x) ** 2).mean(dim=(1, 2, 3))


def try_choices(model, x: torch.Tensor, z_pres: torch.Tensor, best: Best) -> None:
    """Where the posterior over a discrete latent is unsure, try each of its values, one object
    at a time, keeping the best (in ``best``)."""
    for name, values in model.objects.choices.items():
        unsure = (z_pres > 0.5) & (best.objects[f"{name}_probs"].amax(-1) < UNSURE)  # (B, N)
        for i in torch.nonzero(unsure.any(0)).flatten().tolist():
            for value in range(values):
                objects = dict(best.objects)
                objects[name] = objects[name].clone()
                objects[name][unsure[:, i], i] = value
                best.offer(reconstruction_error(model, x, z_pres, objects, best.scene), objects, best.scene)


def descend(model, x: torch.Tensor, z_pres: torch.Tensor, best: Best, steps: int, lr: float) -> None:
    """``steps`` Adam steps on every free latent from ``best``'s, offering each step's latents."""
    objects_model = model.objects
    start_objects, start_scene = best.objects, best.scene
    free = {k: v.detach().clone().requires_grad_() for k, v in
            objects_model.free_latents(start_objects, start_scene).items()}
    optimizer = torch.optim.Adam(list(free.values()), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            objects, scene = objects_model.bound_latents(free, start_objects, start_scene)
            recon = objects_model.render(z_pres, objects, scene or None, grad=True)
            error = ((recon - x) ** 2).mean(dim=(1, 2, 3))  # the hard render's: exact
            best.offer(error.detach(), objects, scene)
            if not error.requires_grad:  # nothing drawn depends on a free latent
                return
            optimizer.zero_grad()
            error.sum().backward()
            optimizer.step()
    with torch.no_grad():
        objects, scene = objects_model.bound_latents(free, start_objects, start_scene)
    best.offer(reconstruction_error(model, x, z_pres, objects, scene), objects, scene)


@torch.no_grad()
def refine(model, x: torch.Tensor, latents, steps: int, lr: float = 0.05):
    """Refine the AIR latents of images ``x (B, C, S, S)`` (see the module docstring).

    Returns:
        the refined latents (``latents`` with new ``objects`` and ``scene``), and each image's
        reconstruction error ``(B,)`` before and after (after <= before).
    """
    z_pres = latents.z_pres
    scene = dict(latents.scene or {})
    before = reconstruction_error(model, x, z_pres, latents.objects, scene)
    best = Best(before, dict(latents.objects), scene)
    try_choices(model, x, z_pres, best)
    if steps > 0:
        descend(model, x, z_pres, best, steps, lr)
        try_choices(model, x, z_pres, best)
    return latents._replace(objects=best.objects, scene=best.scene), before, best.error
