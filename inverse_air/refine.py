"""Analysis by synthesis: the amortized answer improved through the generative model.

``decompose --refine K`` starts from what one AIR pass inferred and lowers each image's
**energy**, what the image and its latents cost in nats: ``SSE / (2 sigma^2) - log P(n) +
sum_i cost_i``: the squared pixel difference between the image and the hard render of its
latents under the model's Gaussian pixel likelihood, the count prior, and, for object models
with ``cost`` (2D), what each present object costs to describe (the KL its appearance posterior
pays in the ELBO). An object stays only where the pixels it explains are worth more than it
costs. Without ``cost`` (3D) and at a fixed count the energy orders candidates as the
reconstruction error does.

1. **Identity, by trying.** Where the posterior over a discrete object latent (the object
   model's :attr:`~inverse_air.object_model.ObjectModel.choices`; 3D: the shape) is unsure
   (its largest probability below :data:`UNSURE`), each value is rendered in turn and the best
   kept, one object at a time; with each value, what the object model's ``tried_with`` gives
   (3D: a cube at each of a few yaws, since a cube tried at another shape's yaw loses).
2. **The count, by trying** (object models with ``propose`` and ``cost``: 2D; training's
   teacher asks for it in 3D too, :func:`inverse_air.teacher.search_answer`). Each object is
   removed in turn, and kept out where the pixels it explains are worth less than it costs (a
   window that draws next to nothing, or retouches what another drew); then, while a step is
   free, objects are proposed where the image is least explained
   (:meth:`~inverse_air.objects2d.model2d.Objects2D.propose`,
   :meth:`~inverse_air.objects3d.model3d.Objects3D.propose`) and kept where they pay for
   themselves. This reaches the objects amortized inference left
   out entirely (its windows gathered where there was nothing to draw), which gradients
   cannot: a window over an empty background has none. Where objects cost nothing but the
   count prior (3D, whose prior over counts is uniform), any object that lowers the error
   would pay for itself (a second cube patching the edges of a first one turned a little), so
   there an object is kept only where it explains at least :data:`WORTH` of what it draws, and
   ``decompose --refine`` does not search the count.
3. **Every continuous latent, by gradient.** ``K`` Adam steps on the object model's free
   latents (:meth:`~inverse_air.object_model.ObjectModel.free_latents`; 3D: each object's
   position, yaw, colour and size, and the image's camera, light and ground where they are
   latents; 2D: the windows), through the renderer's differentiable path.
4. Identity tried again from the refined pose; 2D: removals tried again.

Every candidate's energy is known exactly (the differentiable render's value is the hard
render), and each image keeps the best candidate it has seen, the amortized answer included:
an image's energy never rises (:class:`Best`), and where the count is kept (3D) neither does
its reconstruction error. The one exception is the count search where objects cost nothing (3D,
training's teacher): there an object that explains less than :data:`WORTH` of what it draws is
removed even where the error rises a little (a second object laid over a first to patch its
edges, or a shape read as two of another: from scratch, cubes were read as two cylinders).
"""

from __future__ import annotations

import torch

from .air import log_count_prior
from .errors import UserError

MAX_STEPS = 10_000
"""The most gradient steps ``--refine`` takes (each is one differentiable render of the batch)."""

UNSURE = 0.4
"""Identities are tried where the posterior's largest probability is below this. At 0.6, on
varied looks, trying replaced right shapes with wrong ones that explained the pixels a little
better (identity 0.714 -> 0.683 on 100 scenes); at 0.4 the shipped models are this unsure of
no object of the refine benchmark (docs/performance.md#refinement)."""


WORTH = 0.5
"""Where objects have no ``cost`` (3D), the count search adds an object only where it lowers
the energy by at least this fraction of what it draws (the squared change its drawing makes to
the image, in the energy's nats), and removes one that explains less. A missing object, once
proposed, explains most of what it draws; one laid over another to patch its edges, little."""


def check_steps(steps: int) -> None:
    """Refuse (``UserError``) a ``--refine`` that is not an integer from 0 to :data:`MAX_STEPS`."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise UserError(f"--refine must be between 0 and {MAX_STEPS:,}, got {steps!r}")


def _pick(better: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per image (``better (B,)``), ``new`` where better, else ``old``."""
    return torch.where(better.view(-1, *([1] * (new.dim() - 1))), new, old)


class Best:
    """Each image's best latents so far (presence, objects, scene), their energy, their
    reconstruction error and their render."""

    def __init__(self, energy: torch.Tensor, error: torch.Tensor, render: torch.Tensor, z_pres: torch.Tensor,
                 objects: dict, scene: dict):
        self.energy, self.error, self.render = energy, error, render
        self.z_pres, self.objects, self.scene = z_pres, objects, scene

    def offer(self, energy: torch.Tensor, error: torch.Tensor, render: torch.Tensor, z_pres: torch.Tensor,
              objects: dict, scene: dict, allowed: torch.Tensor | None = None, lower: bool = True) -> bool:
        """Keep ``z_pres``, ``objects`` and ``scene`` (and ``error (B,)``, ``render``) for the
        images where ``energy (B,)`` is lower (and ``allowed (B,)``, where given; ``lower=False``:
        wherever allowed, lower or not); whether any image took them."""
        better = energy < self.energy
        if allowed is not None:
            better = better & allowed if lower else allowed
        if not bool(better.any()):
            return False
        self.energy = torch.where(better, energy, self.energy)
        self.error = torch.where(better, error, self.error)
        self.render = _pick(better, render.detach(), self.render)
        self.z_pres = _pick(better, z_pres, self.z_pres)
        self.objects = {k: _pick(better, objects[k].detach(), v) for k, v in self.objects.items()}
        self.scene = {k: _pick(better, scene[k].detach(), v) for k, v in self.scene.items()}
        return True


def energy_of_error(model, x: torch.Tensor, error: torch.Tensor, z_pres: torch.Tensor,
                    objects: dict) -> torch.Tensor:
    """``(B,)`` energy (see the module docstring) of images whose mean squared error per pixel
    is ``error (B,)`` with objects ``objects`` present where ``z_pres (B, N)`` is 1."""
    present = z_pres > 0.5
    log_prior = log_count_prior(model).to(x.dtype)[present.sum(1)]
    cost = getattr(model.objects, "cost", None)
    if cost is not None:
        log_prior = log_prior - (cost(x, objects) * present).sum(1)
    return squared_nats(model, x, error) - log_prior


def squared_nats(model, x: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """``(B,)`` what a mean squared difference per pixel ``error (B,)`` between images like ``x``
    costs under the model's Gaussian pixel likelihood, in nats (without its constant)."""
    return error * x[0].numel() / (2 * model.config.pixel_sigma ** 2)


def mean_squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean squared difference per pixel between two batches of images."""
    return ((a - b) ** 2).mean(dim=(1, 2, 3))


@torch.no_grad()
def reconstruction_error(model, x: torch.Tensor, z_pres: torch.Tensor, objects: dict, scene: dict) -> torch.Tensor:
    """``(B,)`` mean squared difference per pixel between ``x`` and the hard render."""
    recon = model.objects.render(z_pres, objects, scene or None)
    return mean_squared(recon, x)


@torch.no_grad()
def offer(model, x: torch.Tensor, best: Best, z_pres: torch.Tensor, objects: dict, scene: dict,
          start: tuple[torch.Tensor, torch.Tensor] | None = None, added: bool = True) -> bool:
    """Render a candidate and offer it to ``best``; whether any image took it. ``start``: the
    render and energy of what the candidate changes by one object ``added`` (or removed);
    where the object model has no ``cost``, an object added must explain :data:`WORTH` of what
    it draws, and one removed goes where it explains less, whether or not the energy falls."""
    recon = model.objects.render(z_pres, objects, scene or None)
    error = mean_squared(recon, x)
    energy = energy_of_error(model, x, error, z_pres, objects)
    allowed, lower = None, True
    if start is not None and getattr(model.objects, "cost", None) is None:
        drawn = squared_nats(model, x, mean_squared(recon, start[0]))
        if added:
            allowed = energy + WORTH * drawn < start[1]
        else:  # gone where it explains less than WORTH of what it draws, even where the error rises
            allowed, lower = energy - WORTH * drawn <= start[1], False
    return best.offer(energy, error, recon, z_pres, objects, scene, allowed, lower)


def try_choices(model, x: torch.Tensor, best: Best, unsure_below: float = UNSURE) -> None:
    """Where the posterior over a discrete latent is unsure (its largest probability below
    ``unsure_below``), try each of its values, one object at a time, keeping the best (in
    ``best``); with each value, each of the object model's ``tried_with`` (3D: a cube at
    each of a few yaws)."""
    tried_with = getattr(model.objects, "tried_with", lambda name, value: ({},))
    for name, values in model.objects.choices.items():
        unsure = (best.z_pres > 0.5) & (best.objects[f"{name}_probs"].amax(-1) < unsure_below)  # (B, N)
        for i in torch.nonzero(unsure.any(0)).flatten().tolist():
            for value in range(values):
                for also in tried_with(name, value):
                    objects = dict(best.objects)
                    which = unsure[:, i] if also else unsure[:, i] & (objects[name][:, i] != value)  # else best's own
                    if not bool(which.any()):
                        continue
                    for key, new in {name: value, **also}.items():
                        objects[key] = objects[key].clone()
                        objects[key][which, i] = new
                    offer(model, x, best, best.z_pres, objects, best.scene)


def present_first(z_pres: torch.Tensor, objects: dict, key: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """``z_pres (B, N)`` and ``objects`` with each image's present steps moved to the front, in
    their order, or in ascending ``key (B, N)`` (an object model's ``order_key``: teacher
    forcing's canonical order) where given (AIR's presence is a prefix: step i is present
    only if step i - 1 is)."""
    order = torch.arange(z_pres.shape[1], device=z_pres.device).expand_as(z_pres)
    if key is not None:
        order = torch.sort(key, dim=1, stable=True).indices
    absent = torch.gather(z_pres <= 0.5, 1, order).to(torch.uint8)
    order = torch.gather(order, 1, torch.sort(absent, dim=1, stable=True).indices)  # (B, N)
    take = lambda v: torch.gather(v, 1, order.view(*order.shape, *([1] * (v.dim() - 2))).expand_as(v))
    return take(z_pres), {k: take(v) for k, v in objects.items()}


def try_removals(model, x: torch.Tensor, best: Best) -> None:
    """Remove each present object in turn (the last first), keeping each removal that lowers
    an image's energy."""
    for i in reversed(range(best.z_pres.shape[1])):
        if not bool((best.z_pres[:, i] > 0.5).any()):
            continue
        z_pres = best.z_pres.clone()
        z_pres[:, i] = 0
        offer(model, x, best, *present_first(z_pres, best.objects), best.scene, (best.render, best.energy), added=False)


def try_additions(model, x: torch.Tensor, best: Best) -> None:
    """While a step is free, add the object model's proposals (``propose``) in the first free
    step, one object a round, keeping each that lowers an image's energy; stop at a round that
    adds none."""
    B, N = best.z_pres.shape
    rows = torch.arange(B)
    for _ in range(N):
        count = (best.z_pres > 0.5).sum(1)
        free = count < N
        if not bool(free.any()):
            return
        slot = count.clamp(max=N - 1)
        start = best.render, best.energy
        added = False
        for proposal in model.objects.propose(x, x - best.render, best.scene or None):
            z_pres = best.z_pres.clone()
            z_pres[rows, slot] = torch.where(free, torch.ones_like(z_pres[:, 0]), z_pres[rows, slot])
            objects = {k: v.clone() for k, v in best.objects.items()}
            for k, v in proposal.items():
                objects[k][rows, slot] = _pick(free, v, objects[k][rows, slot])
            added |= offer(model, x, best, z_pres, objects, best.scene, start)
        if not added:
            return


def descend(model, x: torch.Tensor, best: Best, steps: int, lr: float) -> None:
    """``steps`` Adam steps on every free latent from ``best``'s, offering each step's latents."""
    objects_model, z_pres = model.objects, best.z_pres
    start_objects, start_scene = best.objects, best.scene
    free = {k: v.detach().clone().requires_grad_() for k, v in
            objects_model.free_latents(start_objects, start_scene).items()}
    optimizer = torch.optim.Adam(list(free.values()), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            objects, scene = objects_model.bound_latents(free, start_objects, start_scene)
            recon = objects_model.render(z_pres, objects, scene or None, grad=True)
            error = mean_squared(recon, x)  # the hard render's: exact
            seen = error.detach()
            best.offer(energy_of_error(model, x, seen, z_pres, objects).detach(), seen, recon, z_pres, objects, scene)
            if not error.requires_grad:  # nothing drawn depends on a free latent
                return
            optimizer.zero_grad()
            error.sum().backward()
            optimizer.step()
    with torch.no_grad():
        objects, scene = objects_model.bound_latents(free, start_objects, start_scene)
    offer(model, x, best, z_pres, objects, scene)


def searches_count(objects) -> bool:
    """Whether ``decompose --refine`` searches the count with this object model: where it can
    propose objects and says what each costs (see the module docstring)."""
    return hasattr(objects, "propose") and hasattr(objects, "cost")


@torch.no_grad()
def refine(model, x: torch.Tensor, latents, steps: int, lr: float = 0.05, count_search: bool | None = None,
           unsure_below: float = UNSURE):
    """Refine the AIR latents of images ``x (B, C, S, S)`` (see the module docstring).
    ``count_search``: try removing and adding objects (None: where :func:`searches_count`;
    True needs an object model with ``propose``). ``unsure_below``: each value of a discrete
    latent is tried where its posterior's largest probability is below this (above 1: for
    every object).

    Returns:
        the refined latents (``latents`` with new ``z_pres``, ``objects`` and ``scene``;
        ``pres_prob`` stays the network's, except at steps whose presence the count search
        changed: there it is that presence, 0 or 1), and each image's reconstruction error
        ``(B,)`` before and after (after <= before where the count is kept).
    """
    scene = dict(latents.scene or {})
    render = model.objects.render(latents.z_pres, latents.objects, scene or None)
    before = mean_squared(render, x)
    best = Best(energy_of_error(model, x, before, latents.z_pres, latents.objects), before, render, latents.z_pres,
                dict(latents.objects), scene)
    counts = searches_count(model.objects) if count_search is None else count_search
    try_choices(model, x, best, unsure_below)
    if counts:
        try_removals(model, x, best)
        try_additions(model, x, best)
        try_removals(model, x, best)  # a window an added object made redundant
    if steps > 0:
        descend(model, x, best, steps, lr)
        try_choices(model, x, best, unsure_below)
        if counts:
            try_removals(model, x, best)
    searched = best.z_pres != latents.z_pres  # steps whose presence the count search changed
    pres_prob = torch.where(searched, best.z_pres, latents.pres_prob)
    return (latents._replace(z_pres=best.z_pres, pres_prob=pres_prob, objects=best.objects, scene=best.scene),
            before, best.error)
