"""3D metrics (numpy only), on top of :mod:`inverse_air.metrics`:

- **identity accuracy**: over objects matched by position on correctly counted scenes;
- **position error**: Euclidean distance between matched positions on the ground plane
  (world units);
- **yaw error**, symmetry-aware: none for spheres and cylinders (yaw is not observable),
  modulo 90 degrees for cubes; measured on matched objects whose true shape is a cube;
- where the look varies (both the truth and the prediction hold it), each factor's metric of
  the look table (:mod:`inverse_air.objects3d.look`), ``{factor}_error``: ``|inferred - true|``
  (of RGB, the mean over R, G, B), on matched objects for the objects' size and colour, per
  image for the camera's elevation, azimuth (degrees) and distance (world units) and the
  ground's colour; per image holding at least one object (an empty scene shows no light), the
  angle between the inferred and the true **light direction** (degrees) and the **ambient**
  and **diffuse** intensity errors.

Note that an image cannot tell an object's albedo from the light's intensity apart (the same
image results if every albedo is scaled by ``k`` and ambient and diffuse by ``1 / k``): only
the prior's ranges bound ``k``, so colour and intensity errors stay far above what the pose
errors reach (docs/performance.md, "3D scenes whose look varies").
"""

from __future__ import annotations

import numpy as np

from ..metrics import count_metrics, match_by_position, summary
from .look import OBJECT, TRUTH_ORDER
from .scene import SHAPES, YAW_SYMMETRY_DEG


def yaw_error_deg(true_deg: np.ndarray, pred_deg: np.ndarray, period: float | None) -> np.ndarray:
    """Smallest angle between yaws modulo ``period`` degrees (NaN where ``period`` is None)."""
    if period is None:
        return np.full(np.shape(true_deg), np.nan)
    d = np.mod(np.asarray(pred_deg, dtype=np.float64) - true_deg, period)
    return np.minimum(d, period - d)


def scene_metrics_3d(true: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict:
    """Count, identity, position and yaw metrics for 3D scenes.

    Args:
        true, pred: arrays as in a dataset shard: ``count (n,)``, ``shape (n, K)`` (-1 empty),
            ``position (n, K, 2)``, ``yaw (n, K)`` in degrees. ``pred`` may have another ``K``.

    Returns:
        a JSON-ready dict: ``count_accuracy``, ``confusion`` (list of lists), ``num_scenes``,
        ``identity_accuracy``, ``position_error`` (median, mean), ``cube_yaw_error_deg``
        (median, mean), ``matched_objects``. Object metrics are ``None`` when nothing matched.
    """
    true_count, pred_count = np.asarray(true["count"]), np.asarray(pred["count"])
    same_shape, position_errors, yaw_errors = [], [], []
    cube = SHAPES.index("cube")
    for i in np.flatnonzero(true_count == pred_count):
        n = int(true_count[i])
        true_slots = np.flatnonzero(true["shape"][i] >= 0)[:n]
        pred_slots = np.flatnonzero(pred["shape"][i] >= 0)[:n]
        t_pos, p_pos = true["position"][i][true_slots], pred["position"][i][pred_slots]
        order = match_by_position(t_pos, p_pos)
        p_slots = pred_slots[order]
        t_shape, p_shape = true["shape"][i][true_slots], pred["shape"][i][p_slots]
        same_shape.extend(t_shape == p_shape)
        position_errors.extend(np.linalg.norm(t_pos - p_pos[order], axis=-1))
        cubes = t_shape == cube
        yaw_errors.extend(yaw_error_deg(true["yaw"][i][true_slots][cubes], pred["yaw"][i][p_slots][cubes],
                                        YAW_SYMMETRY_DEG["cube"]))
    out = {
        **count_metrics(true_count, pred_count),
        "matched_objects": len(same_shape),
        "identity_accuracy": float(np.mean(same_shape)) if same_shape else None,
        "position_error": summary(position_errors),
        "cube_yaw_error_deg": summary(yaw_errors),
    }
    out.update(look_metrics(true, pred))
    return out


def look_metrics(true: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict:
    """The errors of the inferred look, for what both ``true`` and ``pred`` hold (see the
    module docstring), in the ground truth's order; objects matched as in :func:`scene_metrics_3d`."""
    held = [f for f in TRUTH_ORDER if f.array in true and f.array in pred]
    true_count, pred_count = np.asarray(true["count"]), np.asarray(pred["count"])
    matched = {f.name: ([], []) for f in held if f.per == OBJECT}
    if matched:
        for i in np.flatnonzero(true_count == pred_count):
            n = int(true_count[i])
            t_slots = np.flatnonzero(true["shape"][i] >= 0)[:n]
            p_slots = np.flatnonzero(pred["shape"][i] >= 0)[:n]
            p_slots = p_slots[match_by_position(true["position"][i][t_slots], pred["position"][i][p_slots])]
            for f in held:
                if f.per == OBJECT:
                    matched[f.name][0].append(true[f.array][i][t_slots])
                    matched[f.name][1].append(pred[f.array][i][p_slots])
    lit = true_count > 0
    out = {}
    for f in held:
        if f.per == OBJECT:
            t, p = (np.concatenate(v) if v else np.zeros((0,) + np.shape(true[f.array])[2:]) for v in matched[f.name])
        else:
            t, p = f.take(np.asarray(true[f.array])), f.take(np.asarray(pred[f.array]))
            t, p = (t[lit], p[lit]) if f.lit_only else (t, p)
        out[f.metric] = summary(_error(f, np.asarray(t, np.float64), np.asarray(p, np.float64)))
    return out


def _error(factor, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Each value's error: the angle between directions (degrees), or ``|pred - true|`` (the
    mean over channels)."""
    if factor.direction:
        cos = (true * pred).sum(-1) / (np.linalg.norm(true, axis=-1) * np.linalg.norm(pred, axis=-1)).clip(1e-12)
        return np.degrees(np.arccos(cos.clip(-1.0, 1.0)))
    error = np.abs(pred - true)
    return error.mean(-1) if factor.channels > 1 else error
