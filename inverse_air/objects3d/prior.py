"""The 3D scene prior, written once: how scenes are drawn (``render-dataset`` and the sleep
phase draw them with :func:`sample_prior`) and the densities the ELBO charges for them.

Per object, independently but for the placement constraint:

- ``identity`` uniform over :data:`~inverse_air.objects3d.scene.SHAPES`:
  :func:`log_prior_identity`;
- ``position = (x, z)`` uniform over the valid square ``[POSITION_MIN, POSITION_MAX]^2`` =
  ``[-1, 1]^2``. The posterior works in unconstrained coordinates ``u`` with ``position =
  tanh(u / 2)``, under which the uniform square is a standard logistic density per coordinate
  (:func:`logistic_log_prob`);
- ``yaw`` uniform over [0, 360) degrees. A cube looks the same after a quarter turn, so its
  latent is ``psi = 4 yaw``, uniform on the circle (:data:`LOG_PRIOR_PSI`); spheres and
  cylinders do not show their yaw, so for them it is no latent at all.

Objects are placed one after another; a placement that would interpenetrate an earlier object
is re-drawn (:func:`~inverse_air.objects3d.scene.min_distance`). The ELBO ignores this
constraint's normalizer. The object count is the AIR core's (:meth:`inverse_air.air.AIR.
sample_counts` for the sleep phase; ``--counts`` for datasets).

Draws come from a numpy ``Generator`` in a fixed order (per object: shape, position
re-drawn until it fits, yaw), so a seed gives the same scenes anywhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .scene import (POSITION_MAX, POSITION_MIN, SHAPES, ObjectSpec, Scene, SceneError, min_distance,
                    scenes_to_arrays)

LOG_2PI = math.log(2 * math.pi)
LOG_PRIOR_PSI = -LOG_2PI
"""``log p(psi)`` of a cube's quarter-turn angle ``psi = 4 yaw``: uniform on the circle."""


def log_prior_identity() -> float:
    """``log p(identity)``: uniform over the shapes."""
    return -math.log(len(SHAPES))


def logistic_log_prob(u: torch.Tensor) -> torch.Tensor:
    """Standard logistic log-density, elementwise: the prior on ``u`` that makes ``position =
    tanh(u / 2)`` uniform on (-1, 1)."""
    return -u - 2 * F.softplus(-u)


def sample_scene(rng: np.random.Generator, count: int, object_scale: float,
                 max_tries: int = 1000) -> Scene:
    """A scene of ``count`` objects from the prior (see the module docstring).

    Raises:
        SceneError: ``count`` objects of this scale could not be placed.
    """
    objects: list[ObjectSpec] = []
    for _ in range(count):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        for _ in range(max_tries):
            x, z = rng.uniform(POSITION_MIN, POSITION_MAX, size=2)
            if all(math.dist((x, z), o.position) >= min_distance(shape, o.shape, object_scale)
                   for o in objects):
                break
        else:
            raise SceneError(f"could not place {count} objects of scale {object_scale} "
                             f"without interpenetration")
        yaw = float(rng.uniform(0.0, 360.0))
        objects.append(ObjectSpec(shape, (float(x), float(z)), yaw))
    return Scene(tuple(objects))


def sample_prior(counts: np.ndarray, rng: np.random.Generator, object_scale: float,
                 max_objects: int | None = None) -> dict[str, np.ndarray]:
    """Scenes of ``counts (B,)`` objects from the prior, in a 3D dataset's ground-truth format:
    ``count (B,)``, ``shape (B, K)`` (-1 = empty slot), ``position (B, K, 2)``, ``yaw (B, K)``
    degrees, with ``K = max_objects`` or the largest count; objects in the order drawn."""
    counts = np.asarray(counts, dtype=np.int64)
    scenes = [sample_scene(rng, int(n), object_scale) for n in counts]
    K = max_objects if max_objects is not None else int(counts.max(initial=0))
    return {"count": counts, **scenes_to_arrays(scenes, K)}
