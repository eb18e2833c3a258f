"""3D metrics (numpy only), on top of :mod:`inverse_air.metrics`:

- **identity accuracy**: over objects matched by position on correctly counted scenes;
- **position error**: Euclidean distance between matched positions on the ground plane
  (world units);
- **yaw error**, symmetry-aware: none for spheres and cylinders (yaw is not observable),
  modulo 90 degrees for cubes; measured on matched objects whose true shape is a cube;
- where the look varies (both the truth and the prediction hold it): on matched objects, the
  **size error** ``|inferred - true|`` and the **colour error**, the mean over R, G, B of
  ``|inferred - true|`` albedo; per image, the camera's **elevation and azimuth errors**
  (degrees) and **distance error** (world units), and the **ground colour error** (mean over
  R, G, B); per image holding at least one object (an empty scene shows no light), the angle
  between the inferred and the true **light direction** (degrees) and the **ambient** and
  **diffuse** intensity errors.

Note that an image cannot tell an object's albedo from the light's intensity apart (the same
image results if every albedo is scaled by ``k`` and ambient and diffuse by ``1 / k``): only
the prior's ranges bound ``k``, so colour and intensity errors stay far above what the pose
errors reach (README, "Scenes that vary").
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
    module docstring); objects matched as in :func:`scene_metrics_3d`."""
    has = lambda key: key in true and key in pred
    out = {}
    true_count, pred_count = np.asarray(true["count"]), np.asarray(pred["count"])
    if has("size") or has("color"):
        sizes, colors = [], []
        for i in np.flatnonzero(true_count == pred_count):
            n = int(true_count[i])
            t_slots = np.flatnonzero(true["shape"][i] >= 0)[:n]
            p_slots = np.flatnonzero(pred["shape"][i] >= 0)[:n]
            p_slots = p_slots[match_by_position(true["position"][i][t_slots], pred["position"][i][p_slots])]
            if has("size"):
                sizes.extend(np.abs(true["size"][i][t_slots] - pred["size"][i][p_slots]))
            if has("color"):
                colors.extend(np.abs(true["color"][i][t_slots] - pred["color"][i][p_slots]).mean(-1))
        if has("size"):
            out["size_error"] = summary(sizes)
        if has("color"):
            out["color_error"] = summary(colors)
    if has("camera"):
        d = np.abs(np.asarray(pred["camera"], np.float64) - true["camera"])
        out["camera_elevation_error_deg"] = summary(d[:, 0])
        out["camera_azimuth_error_deg"] = summary(d[:, 1])
        out["camera_distance_error"] = summary(d[:, 2])
    if has("light_direction"):
        lit = true_count > 0
        a, b = np.asarray(true["light_direction"], np.float64)[lit], np.asarray(pred["light_direction"], np.float64)[lit]
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)).clip(1e-12)
        out["light_direction_error_deg"] = summary(np.degrees(np.arccos(cos.clip(-1.0, 1.0))))
        for key in ("ambient", "diffuse"):
            if has(key):
                out[f"light_{key}_error"] = summary(np.abs(np.asarray(pred[key], np.float64) - true[key])[lit])
    if has("ground_color"):
        out["ground_color_error"] = summary(np.abs(np.asarray(pred["ground_color"], np.float64)
                                                   - true["ground_color"]).mean(-1))
    return out
