"""Evaluation metrics, defined once (numpy only).

- **count accuracy**: inferred count == true count; with the confusion matrix
  (rows: true count, columns: inferred count).
- **matching**: on scenes whose count is right, inferred objects are matched to true ones by
  the assignment that minimizes the summed position distance (Hungarian assignment; scenes hold
  at most a handful of objects, so every permutation is tried).
- **identity accuracy** (3D): over matched objects.
- **position error**: Euclidean distance between matched positions (3D: world units on the
  ground plane; 2D: window centres in normalized canvas units, where the canvas spans 2).
- **scale error** (2D): ``|inferred scale - true scale|`` of matched windows (fraction of the
  canvas side; box convention in :mod:`inverse_air.render2d`).
- **yaw error** (3D), symmetry-aware: none for spheres and cylinders (yaw is not observable),
  modulo 90 degrees for cubes; measured on matched objects whose true shape is a cube.
"""

from __future__ import annotations

import itertools

import numpy as np

from .scene import SHAPES, YAW_SYMMETRY_DEG


def confusion_matrix(true_count: np.ndarray, pred_count: np.ndarray, max_count: int) -> np.ndarray:
    """``(max_count + 1, max_count + 1)`` int64 counts; row = true count, column = inferred
    count (inferred counts above ``max_count`` land in the last column)."""
    matrix = np.zeros((max_count + 1, max_count + 1), dtype=np.int64)
    np.add.at(matrix, (np.clip(true_count, 0, max_count), np.clip(pred_count, 0, max_count)), 1)
    return matrix


def match_by_position(true_pos: np.ndarray, pred_pos: np.ndarray) -> np.ndarray:
    """The permutation ``p`` minimizing ``sum_i |true_pos[i] - pred_pos[p[i]]|``.

    Args:
        true_pos, pred_pos: ``(n, D)`` positions of the same number of objects.

    Returns:
        ``(n,)`` int indices into ``pred_pos``.
    """
    n = len(true_pos)
    if n != len(pred_pos):
        raise ValueError(f"cannot match {n} true objects with {len(pred_pos)} inferred ones")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    cost = np.linalg.norm(true_pos[:, None, :] - pred_pos[None, :, :], axis=-1)  # (n, n)
    best = min(itertools.permutations(range(n)), key=lambda p: cost[np.arange(n), list(p)].sum())
    return np.asarray(best, dtype=np.int64)


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
    max_count = int(max(true_count.max(initial=0), pred_count.max(initial=0)))
    right = np.flatnonzero(true_count == pred_count)
    same_shape, position_errors, yaw_errors = [], [], []
    cube = SHAPES.index("cube")
    for i in right:
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
        "num_scenes": int(len(true_count)),
        "count_accuracy": float(np.mean(true_count == pred_count)) if len(true_count) else None,
        "confusion": confusion_matrix(true_count, pred_count, max_count).tolist(),
        "matched_objects": len(same_shape),
        "identity_accuracy": float(np.mean(same_shape)) if same_shape else None,
        "position_error": _summary(position_errors),
        "cube_yaw_error_deg": _summary(yaw_errors),
    }


def scene_metrics_2d(true: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict:
    """Count and window metrics for 2D (multi-MNIST) scenes.

    Args:
        true, pred: arrays as in a 2D dataset shard: ``count (n,)`` and ``box (n, K, 3)``
            (scale, x, y), the first ``count`` slots holding the objects. ``pred`` may have
            another ``K``.

    Returns:
        a JSON-ready dict: ``count_accuracy``, ``confusion`` (list of lists), ``num_scenes``,
        ``matched_objects``, ``position_error`` and ``scale_error`` (median, mean) over windows
        matched by centre on scenes whose count is right (``None`` when nothing matched).
    """
    true_count, pred_count = np.asarray(true["count"]), np.asarray(pred["count"])
    max_count = int(max(true_count.max(initial=0), pred_count.max(initial=0)))
    position_errors, scale_errors = [], []
    for i in np.flatnonzero(true_count == pred_count):
        n = int(true_count[i])
        t_box, p_box = true["box"][i][:n], pred["box"][i][:n]
        order = match_by_position(t_box[:, 1:], p_box[:, 1:])
        position_errors.extend(np.linalg.norm(t_box[:, 1:] - p_box[order, 1:], axis=-1))
        scale_errors.extend(np.abs(t_box[:, 0] - p_box[order, 0]))
    return {
        "num_scenes": int(len(true_count)),
        "count_accuracy": float(np.mean(true_count == pred_count)) if len(true_count) else None,
        "confusion": confusion_matrix(true_count, pred_count, max_count).tolist(),
        "matched_objects": len(position_errors),
        "position_error": _summary(position_errors),
        "scale_error": _summary(scale_errors),
    }


SCENE_METRICS = {"3d": scene_metrics_3d, "2d": scene_metrics_2d}
"""The metrics function of each model kind."""


def scene_metrics(kind: str, true: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict:
    """The metrics of model kind ``kind`` (:data:`SCENE_METRICS`)."""
    return SCENE_METRICS[kind](true, pred)


def _summary(values) -> dict | None:
    if len(values) == 0:
        return None
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "mean": float(np.mean(values))}
