"""2D metrics (numpy only), on top of :mod:`inverse_air.metrics`: for windows matched by centre
on correctly counted scenes, the **position error** (window centres in normalized canvas units,
where the canvas spans 2) and the **scale error** ``|inferred scale - true scale|`` (fraction of
the canvas side; box convention in :mod:`inverse_air.objects2d.render2d`)."""

from __future__ import annotations

import numpy as np

from ..metrics import count_metrics, match_by_position, summary


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
    position_errors, scale_errors = [], []
    for i in np.flatnonzero(true_count == pred_count):
        n = int(true_count[i])
        t_box, p_box = true["box"][i][:n], pred["box"][i][:n]
        order = match_by_position(t_box[:, 1:], p_box[:, 1:])
        position_errors.extend(np.linalg.norm(t_box[:, 1:] - p_box[order, 1:], axis=-1))
        scale_errors.extend(np.abs(t_box[:, 0] - p_box[order, 0]))
    return {
        **count_metrics(true_count, pred_count),
        "matched_objects": len(position_errors),
        "position_error": summary(position_errors),
        "scale_error": summary(scale_errors),
    }
