"""The 3D codec: ground truth (a dataset's arrays) <-> the model's latents, and latents -> a
scene file's terms (``decompose``'s descriptions). Which look arrays exist, per image or per
object, and where a scene file puts each, is the look table's (:mod:`inverse_air.objects3d.look`).

**Object order.** Scenes are sets; for teacher forcing (sleep and supervised phases) the
objects are put in a canonical order, nearest to the camera (largest ``z``) first.
"""

from __future__ import annotations

import numpy as np
import torch

from .look import FACTORS, GROUPS, IMAGE, OBJECT, arrays_of
from .scene import SHAPES, YAW_SYMMETRY_DEG

_LOOK = arrays_of(GROUPS)  # every look array: name -> (per, factors)


def targets_from_arrays(arrays: dict[str, np.ndarray], max_steps: int) -> dict[str, torch.Tensor]:
    """Ground truth in a dataset's format -> teacher-forcing targets in canonical order.

    Args:
        arrays: ``shape (B, K)`` (-1 empty), ``position (B, K, 2)``, ``yaw (B, K)`` degrees, and
            any of the look's arrays, per object ``(B, K, ...)`` and per image ``(B, ...)``.

    Returns:
        ``z_pres (B, N)`` float, ``identity (B, N)`` long (0 where absent), ``position
        (B, N, 2)``, ``yaw (B, N)`` radians, the per-object looks ``(B, N, ...)``; objects sorted
        nearest-first (largest ``z``); and the per-image looks ``(B, ...)`` as they are.

    Raises:
        ValueError: a scene holds more than ``max_steps`` objects.
    """
    shape = np.asarray(arrays["shape"])
    present = shape >= 0
    if present.sum(1).max(initial=0) > max_steps:
        raise ValueError(f"a scene holds {present.sum(1).max()} objects; the model infers at "
                         f"most {max_steps}")
    z = np.where(present, arrays["position"][..., 1], -np.inf)
    order = np.argsort(-z, axis=1, kind="stable")[:, :max_steps]  # present first, nearest first
    take = lambda a: np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)
    B, K = shape.shape
    pad = max(0, max_steps - K)
    padded = lambda a: np.pad(take(np.asarray(a, np.float32)), ((0, 0), (0, pad)) + ((0, 0),) * (a.ndim - 2))
    sorted_shape = np.pad(take(shape), ((0, 0), (0, pad)), constant_values=-1)
    position = np.pad(take(np.asarray(arrays["position"], np.float32)), ((0, 0), (0, pad), (0, 0)))
    yaw = np.pad(take(np.asarray(arrays["yaw"], np.float32)), ((0, 0), (0, pad)))
    out = {"z_pres": torch.from_numpy((sorted_shape >= 0).astype(np.float32)),
           "identity": torch.from_numpy(np.maximum(sorted_shape, 0).astype(np.int64)),
           "position": torch.from_numpy(position.astype(np.float32)),
           "yaw": torch.deg2rad(torch.from_numpy(yaw.astype(np.float32)))}
    for key, (per, _) in _LOOK.items():
        if key in arrays:
            out[key] = torch.from_numpy(np.ascontiguousarray(padded(arrays[key])) if per == OBJECT
                                        else np.asarray(arrays[key], np.float32))
    return out


def latents_to_arrays(latents) -> dict[str, np.ndarray]:
    """Inferred latents -> a dataset's ground-truth format (for metrics and decompose)."""
    z_pres = latents.z_pres.detach().cpu().numpy() > 0.5
    shape = np.where(z_pres, latents.objects["identity"].cpu().numpy(), -1)
    out = {"count": z_pres.sum(1).astype(np.int64), "shape": shape.astype(np.int64),
           "position": latents.objects["position"].detach().cpu().numpy().astype(np.float32),
           "yaw": np.mod(np.rad2deg(latents.objects["yaw"].detach().cpu().numpy()), 360.0).astype(np.float32)}
    for key, (per, _) in _LOOK.items():
        held = latents.objects if per == OBJECT else latents.scene
        if key in held:
            out[key] = held[key].detach().cpu().numpy().astype(np.float32)
    return out


def _rounded(values: torch.Tensor, digits: int) -> list:
    """Rounded as arrays, then made Python numbers at once (``tolist``): the loops that build
    descriptions only make dictionaries (about 10x faster than rounding number by number)."""
    return np.round(values.detach().cpu().numpy().astype(np.float64), digits).tolist()


def describe_objects(objects: dict[str, torch.Tensor]) -> list[list[dict]]:
    """Each image's steps ``(B, N, ...)`` in a scene file's terms: ``shape``, ``position``
    ``[x, z]`` (world units), ``yaw_deg`` (cubes: in [-45, 45), 0 for the yaw-less sphere and
    cylinder), the per-object looks that ``objects`` holds (``color``, ``size``), and
    ``shape_probs`` (the posterior over shapes)."""
    identity = objects["identity"].cpu().tolist()
    position = _rounded(objects["position"], 4)
    yaw = np.mod(np.rad2deg(objects["yaw"].detach().cpu().numpy().astype(np.float64)) + 45.0, 90.0) - 45.0
    yaw = np.round(yaw, 2).tolist()
    probs = _rounded(objects["identity_probs"], 4)
    look = {f.scene[0]: _rounded(objects[f.array], f.digits) for f in FACTORS if f.per == OBJECT and f.array in objects}
    shows_yaw = [YAW_SYMMETRY_DEG[name] is not None for name in SHAPES]
    return [[{"shape": SHAPES[k], "position": position[b][i],
              "yaw_deg": yaw[b][i] if shows_yaw[k] else 0.0,
              **{key: values[b][i] for key, values in look.items()},
              "shape_probs": dict(zip(SHAPES, probs[b][i]))}
             for i, k in enumerate(identity[b])] for b in range(len(identity))]


def describe_look(scene: dict[str, torch.Tensor]) -> list[dict]:
    """Each image's look ``(B, ...)`` in a scene file's terms (what ``scene`` holds of
    ``camera``, ``light``, ``ground_color``)."""
    factors = [f for f in FACTORS if f.per == IMAGE and f.array in scene]
    values = {f.array: _rounded(scene[f.array], f.digits) for f in factors}
    B = len(next(iter(values.values()))) if values else 0
    out = [{} for _ in range(B)]
    for b, d in enumerate(out):
        for f in factors:
            *section, key = f.scene
            value = values[f.array][b] if f.column is None else values[f.array][b][f.column]
            (d.setdefault(section[0], {}) if section else d)[key] = value
    return out
