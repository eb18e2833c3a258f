"""3D metrics (numpy only), on top of :mod:`inverse_air.metrics`:

- **identity accuracy**: over objects matched by position on correctly counted scenes;
- **position error**: Euclidean distance between matched positions on the ground plane
  (world units);
- **yaw error**, symmetry-aware: none for spheres and cylinders (yaw is not observable),
  modulo 90 degrees for cubes; measured on matched objects whose true shape is a cube.
"""

from __future__ import annotations

import numpy as np

from ..metrics import count_metrics, match_by_position, summary
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
    return {
        **count_metrics(true_count, pred_count),
        "matched_objects": len(same_shape),
        "identity_accuracy": float(np.mean(same_shape)) if same_shape else None,
        "position_error": summary(position_errors),
        "cube_yaw_error_deg": summary(yaw_errors),
    }
