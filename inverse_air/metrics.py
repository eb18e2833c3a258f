"""Evaluation metrics that every kind shares, defined once (numpy only); each kind's own
(identity, pose, windows) are in its package and use these.

- **count accuracy**: inferred count == true count; with the confusion matrix
  (rows: true count, columns: inferred count).
- **matching**: on scenes whose count is right, inferred objects are matched to true ones by
  the assignment that minimizes the summed position distance (Hungarian assignment:
  ``scipy.optimize.linear_sum_assignment``, cubic in the number of objects, not factorial).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(true_count: np.ndarray, pred_count: np.ndarray, max_count: int) -> np.ndarray:
    """``(max_count + 1, max_count + 1)`` int64 counts; row = true count, column = inferred
    count (inferred counts above ``max_count`` land in the last column)."""
    matrix = np.zeros((max_count + 1, max_count + 1), dtype=np.int64)
    np.add.at(matrix, (np.clip(true_count, 0, max_count), np.clip(pred_count, 0, max_count)), 1)
    return matrix


def count_metrics(true_count: np.ndarray, pred_count: np.ndarray) -> dict:
    """``num_scenes``, ``count_accuracy`` (None for no scenes) and ``confusion`` (list of lists)."""
    true_count, pred_count = np.asarray(true_count), np.asarray(pred_count)
    max_count = int(max(true_count.max(initial=0), pred_count.max(initial=0)))
    return {
        "num_scenes": int(len(true_count)),
        "count_accuracy": float(np.mean(true_count == pred_count)) if len(true_count) else None,
        "confusion": confusion_matrix(true_count, pred_count, max_count).tolist(),
    }


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
    from scipy.optimize import linear_sum_assignment  # imported here: scipy takes 0.2 s to import

    cost = np.linalg.norm(true_pos[:, None, :] - pred_pos[None, :, :], axis=-1)  # (n, n)
    rows, cols = linear_sum_assignment(cost)  # rows are 0..n-1 in order
    return cols.astype(np.int64)


def summary(values) -> dict | None:
    """``{"median", "mean"}`` of a list of errors, None when it is empty."""
    if len(values) == 0:
        return None
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "mean": float(np.mean(values))}
