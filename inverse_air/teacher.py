"""The count search as a teacher of the one pass (``TrainConfig.teacher_images``): what it
answers on a batch of images (:func:`search_answer`), as a :class:`Lesson`, and the pool of the
last lessons (:func:`pooled`). Training (:mod:`inverse_air.train`) teaches them beside the ELBO;
:mod:`inverse_air.search_worker` answers in processes of its own."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .air import AIR
from .refine import present_first, refine


class Lesson(NamedTuple):
    """What the count search teaches in one ELBO step (:func:`search_answer`)."""

    images: torch.Tensor
    """``(K, C, S, S)`` the images whose answer (the count, or a present object) the search changed."""
    answer: dict[str, torch.Tensor]
    """The search's latents for them as a teacher-forcing target (``z_pres`` and the objects)."""
    share: float
    """The fraction of the images searched that they are."""


def pooled(pool: Lesson | None, lesson: Lesson, size: int) -> Lesson:
    """The last ``size`` images taught, ``pool``'s then ``lesson``'s, with their answers; the
    share (how much of the one pass the search still changes) is the new lesson's."""
    if pool is not None:
        lesson = Lesson(torch.cat([pool.images, lesson.images]),
                        {k: torch.cat([pool.answer[k], v]) for k, v in lesson.answer.items()}, lesson.share)
    return Lesson(lesson.images[-size:], {k: v[-size:] for k, v in lesson.answer.items()}, lesson.share)


@torch.no_grad()
def search_answer(model: AIR, x: torch.Tensor, steps: int = 0) -> Lesson:
    """What the count search teaches on images ``x``: its answers (``decompose --refine steps``
    with the count searched, in 3D too: the one pass, then each object's identity tried, not
    only where the posterior is unsure (a network that learns from its own search is often
    sure and wrong: in 3D from scratch, at 30 minutes, the searched answers' identity rose from
    70% to 85% of 256 held-out scenes' objects at the same cost), and objects removed and
    added where that lowers the energy, :mod:`inverse_air.refine`), each
    image's objects put in the canonical order of teacher forcing (the object model's
    ``order_key``: else a step would be taught whichever object the pass or the search put
    there, and its pose would regress to the mean of the scene's objects), for the images
    where the search changed the count or a present object (3D: its shape, or its pose where
    it was removed and proposed again elsewhere). The others are not taught: the one pass
    already gives the search's answer there (in its own order), and teaching a network its
    own answer only narrows its posterior."""
    latents = model.predict(x)
    answer = refine(model, x, latents, steps, count_search=True, unsure_below=math.inf)[0]
    z_pres, objects = present_first(answer.z_pres, answer.objects, model.objects.order_key(answer.objects))
    was_pres, was = present_first(latents.z_pres, latents.objects, model.objects.order_key(latents.objects))
    changed = (z_pres != was_pres).any(1)
    present = z_pres > 0.5
    for name, value in objects.items():
        changed |= ((value != was[name]).reshape(*present.shape, -1).any(2) & present).any(1)
    return Lesson(x[changed], {"z_pres": z_pres[changed], **{k: v[changed] for k, v in objects.items()}},
                  changed.float().mean().item())
