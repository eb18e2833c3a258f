"""The 3D scene prior, written once: how scenes are drawn (``render-dataset`` and the sleep
phase draw them with :func:`sample_prior`) and the densities the ELBO charges for them.

Per image, for each factor of the look that varies (the look table's,
:mod:`inverse_air.objects3d.look`, where :class:`~inverse_air.objects3d.config.Variation`
varies its group; the others take the render config's value):

- ``camera``: elevation, azimuth and distance, each uniform over its range;
- ``light``: the direction towards it uniform over the upper hemisphere (the sine of its
  elevation, its *height*, uniform in [0, 1]; its azimuth uniform on the circle); the
  ambient and diffuse intensities uniform over their ranges;
- ``ground``: each RGB channel of the ground's colour uniform over its range.

Per object, independently but for the placement constraint:

- ``identity`` uniform over :data:`~inverse_air.objects3d.scene.SHAPES`:
  :func:`log_prior_identity`;
- ``size`` (if it varies) uniform over its range;
- ``position = (x, z)`` uniform over the valid square ``[POSITION_MIN, POSITION_MAX]^2`` =
  ``[-1, 1]^2``. The posterior works in unconstrained coordinates ``u`` with ``position =
  tanh(u / 2)``, under which the uniform square is a standard logistic density per coordinate
  (:func:`logistic_log_prob`);
- ``yaw`` uniform over [0, 360) degrees. A cube looks the same after a quarter turn, so its
  latent is ``psi = 4 yaw``, uniform on the circle (:data:`LOG_PRIOR_PSI`); spheres and
  cylinders do not show their yaw, so for them it is no latent at all;
- ``color`` (if it varies): each RGB channel uniform over its range.

Every bounded uniform latent is an :class:`Interval`: the posterior works on ``u`` with
``value = low + (high - low) * sigmoid(u)``, under which the uniform prior is the standard
logistic density of ``u``, as for positions.

Objects are placed one after another; a placement that would interpenetrate an earlier object
(with both objects' sizes) is re-drawn (:func:`~inverse_air.objects3d.scene.min_distance`); an
object that finds no place (the earlier ones left no room) starts the scene's objects over
(a scene placed at the first attempt draws exactly what it drew before restarts existed). The
ELBO ignores this constraint's normalizer. The object count is the AIR core's
(:meth:`inverse_air.air.AIR.sample_counts` for the sleep phase; ``--counts`` for datasets).

Draws come from a numpy ``Generator`` in a fixed order (per image: its factors in table order,
camera, light, ground; then per object: shape, the factors drawn before placement (size),
position re-drawn until it fits, yaw, the factors drawn after it (colour); each only where it
varies), so a seed gives the same scenes anywhere, and with nothing varying exactly the scenes
of the fixed-look prior before the look could vary.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .config import RenderConfig, Variation
from .look import IMAGE, OBJECT, Factor, array_shape, arrays_of, defaults, varied
from .scene import POSITION_MAX, POSITION_MIN, SHAPES, ObjectSpec, Scene, SceneError, min_distance

LOG_2PI = math.log(2 * math.pi)
LOG_PRIOR_PSI = -LOG_2PI
"""``log p`` of an angle uniform on the circle: a cube's quarter-turn angle ``psi = 4 yaw``,
the light's azimuth."""

_U_EDGE = 1e-4  # teacher-forced values are kept this far inside an interval's open ends


def log_prior_identity() -> float:
    """``log p(identity)``: uniform over the shapes."""
    return -math.log(len(SHAPES))


def logistic_log_prob(u: torch.Tensor) -> torch.Tensor:
    """Standard logistic log-density, elementwise: the prior on ``u`` that makes ``position =
    tanh(u / 2)`` uniform on (-1, 1), and every :class:`Interval` uniform."""
    return -u - 2 * F.softplus(-u)


class Interval(NamedTuple):
    """A latent uniform on ``[low, high]``, inferred through ``u``: ``value = low + (high -
    low) * sigmoid(u)``, ``u ~ Logistic(0, 1)`` under the prior."""

    low: float
    high: float

    def value(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(u)

    def to_u(self, value: torch.Tensor) -> torch.Tensor:
        """The ``u`` of a value (kept just inside the interval)."""
        t = ((value - self.low) / (self.high - self.low)).clamp(_U_EDGE, 1 - _U_EDGE)
        return torch.log(t) - torch.log1p(-t)

    def normalized(self, value: torch.Tensor) -> torch.Tensor:
        """The value rescaled to [0, 1] (what the network reads back)."""
        return (value - self.low) / (self.high - self.low)

    def sample(self, rng: np.random.Generator, size=None):
        return rng.uniform(self.low, self.high, size=size)


def intervals(variation: Variation, render: RenderConfig) -> dict[str, Interval]:
    """The bounded latents of the look's factors that ``variation`` varies, by factor name
    (:data:`~inverse_air.objects3d.look.FACTORS`): each its range (``Variation``'s, the camera's
    distance times ``render.camera_distance``); a direction its height's, [0, 1]."""
    out = {}
    for f in varied(variation.varied):
        if f.direction:
            out[f.name] = Interval(0.0, 1.0)
        else:
            low, high = getattr(variation, f.prior_range)
            if f.prior_scale is not None:  # a range of factors of a render-config value
                scale = getattr(render, f.prior_scale)
                low, high = low * scale, high * scale
            out[f.name] = Interval(low, high)
    return out


def draw(factor: Factor, rng: np.random.Generator, latents: dict[str, Interval]):
    """One image's or object's value of a factor of the look from the prior: a number, RGB
    (a tuple), or a unit direction (``(3,)`` float64)."""
    if factor.direction:
        height, azimuth = latents[factor.name].sample(rng), rng.uniform(-math.pi, math.pi)
        return light_direction(np.float64(height), np.float64(azimuth))
    if factor.channels == 1:
        return float(latents[factor.name].sample(rng))
    return tuple(float(v) for v in latents[factor.name].sample(rng, factor.channels))


def light_direction(height, azimuth):
    """Unit direction towards the light ``(..., 3)`` from the sine of its elevation and its
    azimuth (radians; 0 towards +X, pi/2 towards +Z); tensors or numpy arrays."""
    if torch.is_tensor(height):
        flat = torch.sqrt((1 - height * height).clamp_min(1e-12))
        return torch.stack([flat * torch.cos(azimuth), height, flat * torch.sin(azimuth)], -1)
    flat = np.sqrt(np.clip(1 - height * height, 0.0, None))
    return np.stack([flat * np.cos(azimuth), height, flat * np.sin(azimuth)], -1)


def sample_scene(rng: np.random.Generator, count: int, object_scale: float,
                 max_tries: int = 1000) -> Scene:
    """A scene of ``count`` objects of the fixed look (nothing varies; see the module
    docstring).

    Raises:
        SceneError: ``count`` objects of this scale could not be placed.
    """
    render = RenderConfig(object_scale=object_scale)
    return Scene(tuple(_sample_objects(rng, count, render, Variation.none(), {}, max_tries)))


def _sample_objects(rng, count: int, render: RenderConfig, variation: Variation,
                    latents: dict[str, Interval], max_tries: int = 1000, restarts: int = 50) -> list[ObjectSpec]:
    """``count`` objects placed without interpenetration: each position re-drawn up to
    ``max_tries`` times, the whole scene's objects drawn again up to ``restarts`` times.

    Raises:
        SceneError: no placement found.
    """
    for _ in range(restarts):
        objects = _try_objects(rng, count, render, variation, latents, max_tries)
        if objects is not None:
            return objects
    raise SceneError(f"could not place {count} objects without interpenetration ({restarts} attempts; "
                     f"at most {render.object_scale if not variation.size else latents['size'].high:g} in size)")


def _try_objects(rng, count: int, render: RenderConfig, variation: Variation,
                 latents: dict[str, Interval], max_tries: int) -> list[ObjectSpec] | None:
    """One attempt of :func:`_sample_objects`: None when an object finds no place."""
    objects: list[ObjectSpec] = []
    factors = varied(variation.varied, OBJECT)
    for _ in range(count):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        look = {f.scene[0]: draw(f, rng, latents) for f in factors if f.drawn == "before placement"}
        size = look.get("size")
        for _ in range(max_tries):
            x, z = rng.uniform(POSITION_MIN, POSITION_MAX, size=2)
            if size is None:
                fits = all(math.dist((x, z), o.position) >= min_distance(shape, o.shape, render.object_scale)
                           for o in objects)
            else:
                fits = all(math.dist((x, z), o.position) >= min_distance(shape, o.shape, size, o.size)
                           for o in objects)
            if fits:
                break
        else:
            return None
        yaw = float(rng.uniform(0.0, 360.0))
        look.update({f.scene[0]: draw(f, rng, latents) for f in factors if f.drawn == "after yaw"})
        objects.append(ObjectSpec(shape, (float(x), float(z)), yaw, **look))
    return objects


def sample_prior(counts: np.ndarray, rng: np.random.Generator, render: RenderConfig | float,
                 variation: Variation | None = None, max_objects: int | None = None) -> dict[str, np.ndarray]:
    """Scenes of ``counts (B,)`` objects from the prior, in a 3D dataset's ground-truth format.

    Args:
        counts: objects per scene.
        rng: the generator every draw comes from.
        render: the render config (the look of what does not vary; a number: the object scale
            of the default config).
        variation: what varies (None: nothing).
        max_objects: object slots ``K`` (default: the largest count).

    Returns:
        ``count (B,)``, ``shape (B, K)`` (-1 = empty slot), ``position (B, K, 2)``, ``yaw (B, K)``
        degrees; and the look's arrays of what varies, in the ground truth's order
        (:data:`~inverse_air.objects3d.look.TRUTH_ORDER`: ``size (B, K)``, ``color (B, K, 3)``,
        ``camera (B, 3)``, ``light_direction (B, 3)`` (unit), ``ambient (B,)``, ``diffuse (B,)``,
        ``ground_color (B, 3)``). Objects in the order drawn; empty slots hold the render
        config's size and colour.
    """
    if not isinstance(render, RenderConfig):
        render = RenderConfig(object_scale=float(render))
    variation = Variation.none() if variation is None else variation
    latents = intervals(variation, render)
    counts = np.asarray(counts, dtype=np.int64)
    B = len(counts)
    K = max_objects if max_objects is not None else int(counts.max(initial=0))
    out: dict[str, np.ndarray] = {"count": counts, "shape": np.full((B, K), -1, np.int64),
                                  "position": np.zeros((B, K, 2), np.float32), "yaw": np.zeros((B, K), np.float32)}
    default = defaults(render)
    for name, (per, factors) in arrays_of(variation.varied, truth=True).items():
        out[name] = np.zeros(((B, K) if per == OBJECT else (B,)) + array_shape(factors), np.float32)
        if per == OBJECT:  # empty slots hold the render config's value
            out[name][...] = np.asarray(default[name], np.float32).reshape(array_shape(factors))
    image_factors, object_factors = varied(variation.varied, IMAGE), varied(variation.varied, OBJECT)
    for i, n in enumerate(counts):
        for f in image_factors:
            out[f.array][(i,) if f.column is None else (i, f.column)] = draw(f, rng, latents)
        if n > K:
            raise ValueError(f"scene {i} has {n} objects, more than {K} slots")
        for k, obj in enumerate(_sample_objects(rng, int(n), render, variation, latents)):
            out["shape"][i, k], out["position"][i, k], out["yaw"][i, k] = obj.label, obj.position, obj.yaw_deg
            for f in object_factors:
                out[f.array][i, k] = getattr(obj, f.scene[0])
    return out
