"""Scene descriptions for the 3D model: objects, JSON I/O and validation.

A scene is a list of objects resting on the ground plane. Each object has

- ``shape``: one of :data:`SHAPES` (its categorical identity),
- ``position``: ``[x, z]`` on the ground plane, in world units,
- ``yaw_deg``: the rotation about the vertical (+Y) axis in degrees, counter-clockwise seen
  from above (default 0); any finite number (reduced by whole turns, :func:`reduce_degrees`).

**Convention.** PyTorch3D's world frame: +Y up, the ground is ``y = 0``. The fixed camera
(see :class:`inverse_air.objects3d.config.RenderConfig`) looks at the origin from above and in front
(from +Z). Object centres must lie in the square ``[POSITION_MIN, POSITION_MAX]^2``; objects
must not interpenetrate, which is checked conservatively on their footprint circles
(:data:`FOOTPRINT_RADIUS` times the render config's ``object_scale``). Occlusion is allowed.
Scenes are drawn at random by the prior (:mod:`inverse_air.objects3d.prior`).

This module does not import torch, so scene files can be read and checked cheaply.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import read_json, write_text

SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder")
"""Object identities, in the order of their integer labels (0, 1, 2)."""

POSITION_MIN: float = -1.0
"""Smallest valid x or z coordinate of an object centre (world units)."""
POSITION_MAX: float = 1.0
"""Largest valid x or z coordinate of an object centre (world units)."""

FOOTPRINT_RADIUS: dict[str, float] = {"sphere": 0.5, "cube": math.sqrt(0.5), "cylinder": 0.5}
"""Radius of the circle on the ground that holds the unit-size mesh at any yaw.

Multiplied by the object scale, two objects interpenetrate when the distance between their
centres is below the sum of their radii (conservative for cubes)."""

YAW_SYMMETRY_DEG: dict[str, float | None] = {"sphere": None, "cube": 90.0, "cylinder": None}
"""Period of each shape's visible yaw: ``None`` means yaw is not observable."""


class SceneError(UserError, ValueError):
    """A scene file or scene description is invalid. The message is one line for the user."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene (see the module docstring for units and frame)."""

    shape: str
    position: tuple[float, float]
    yaw_deg: float = 0.0

    @property
    def label(self) -> int:
        """The integer identity of the shape (index into :data:`SHAPES`)."""
        return SHAPES.index(self.shape)


@dataclass(frozen=True)
class Scene:
    """A scene: zero or more objects."""

    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "objects": [
                {"shape": o.shape, "position": [float(o.position[0]), float(o.position[1])],
                 "yaw_deg": float(o.yaw_deg)}
                for o in self.objects
            ]
        }


def min_distance(shape_a: str, shape_b: str, object_scale: float) -> float:
    """Smallest centre distance at which two objects do not interpenetrate."""
    return object_scale * (FOOTPRINT_RADIUS[shape_a] + FOOTPRINT_RADIUS[shape_b])


def _show(value, limit: int = 60) -> str:
    """A JSON value for a one-line message, cut to ``limit`` characters."""
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SceneError(f"{where}: expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise SceneError(f"{where}: expected a finite number, got {value}")
    return float(value)


def reduce_degrees(angle: float) -> float:
    """``angle`` brought into [-360, 360] by whole turns (exactly: ``math.fmod``), so that a
    huge but finite yaw names the angle it means instead of overflowing the renderer's
    float32; angles already in that range are kept as they are."""
    return angle if -360.0 <= angle <= 360.0 else math.fmod(angle, 360.0)


def scene_from_dict(data, object_scale: float, source: str = "scene") -> Scene:
    """Build and validate a :class:`Scene` from parsed JSON.

    Args:
        data: the parsed JSON document, ``{"objects": [...]}``.
        object_scale: the render config's object scale, for the interpenetration check.
        source: a name for the input (usually the file path), used in error messages.

    Raises:
        SceneError: with one line naming ``source``, the object index and the field.
    """
    if not isinstance(data, dict) or "objects" not in data:
        raise SceneError(f"{source}: expected a JSON object with an 'objects' list")
    items = data["objects"]
    if not isinstance(items, list):
        raise SceneError(f"{source}: field 'objects': expected a list")
    objects = []
    for i, item in enumerate(items):
        where = f"{source}: object {i}"
        if not isinstance(item, dict):
            raise SceneError(f"{where}: expected a JSON object")
        unknown = sorted(set(item) - {"shape", "position", "yaw_deg"})
        if unknown:
            raise SceneError(f"{where}: unknown field '{unknown[0]}'")
        shape = item.get("shape")
        if shape is None:
            raise SceneError(f"{where}: field 'shape' is missing")
        if shape not in SHAPES:
            raise SceneError(f"{where}: field 'shape': unknown shape {_show(shape)} "
                             f"(expected one of {', '.join(SHAPES)})")
        if "position" not in item:
            raise SceneError(f"{where}: field 'position' is missing")
        position = item["position"]
        if not isinstance(position, list) or len(position) != 2:
            raise SceneError(f"{where}: field 'position': expected [x, z], got {_show(position)}")
        x = _number(position[0], f"{where}: field 'position'")
        z = _number(position[1], f"{where}: field 'position'")
        for name, v in (("x", x), ("z", z)):
            if not POSITION_MIN <= v <= POSITION_MAX:
                raise SceneError(f"{where}: field 'position': {name} = {v:g} is outside the valid "
                                 f"region [{POSITION_MIN:g}, {POSITION_MAX:g}]")
        yaw = reduce_degrees(_number(item.get("yaw_deg", 0.0), f"{where}: field 'yaw_deg'"))
        objects.append(ObjectSpec(shape, (x, z), yaw))
    scene = Scene(tuple(objects))
    check_overlaps(scene, object_scale, source)
    return scene


def check_overlaps(scene: Scene, object_scale: float, source: str = "scene") -> None:
    """Raise :class:`SceneError` if two objects of ``scene`` interpenetrate."""
    objs = scene.objects
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            a, b = objs[i], objs[j]
            d = math.dist(a.position, b.position)
            need = min_distance(a.shape, b.shape, object_scale)
            if d < need:
                raise SceneError(f"{source}: object {j}: field 'position': overlaps object {i} "
                                 f"(centres {d:.3f} apart, at least {need:.3f} needed)")


def load_scene(path: str | os.PathLike, object_scale: float) -> Scene:
    """Read and validate a scene file.

    Raises:
        SceneError: the file is missing, not JSON, or not a valid scene (one line for the user).
    """
    path = Path(path)
    try:
        data = read_json(path, "scene file")
    except UserError as e:
        raise SceneError(str(e)) from None
    return scene_from_dict(data, object_scale, str(path))


def save_scene(scene: Scene, path: str | os.PathLike) -> None:
    """Write a scene file (atomically: a temporary name, then a rename)."""
    write_text(path, json.dumps(scene.to_dict(), indent=2) + "\n")


def scenes_to_arrays(scenes: list[Scene], max_objects: int | None = None) -> dict[str, np.ndarray]:
    """Pad scenes into the dataset's ground-truth arrays.

    Returns:
        ``shape (n, K)`` int64 (-1 = empty slot), ``position (n, K, 2)`` float32,
        ``yaw (n, K)`` float32 in degrees, with ``K = max_objects`` or the largest count.

    Raises:
        ValueError: a scene holds more than ``max_objects`` objects.
    """
    K = max_objects if max_objects is not None else max([len(s.objects) for s in scenes] + [0])
    n = len(scenes)
    shape = np.full((n, K), -1, dtype=np.int64)
    position = np.zeros((n, K, 2), dtype=np.float32)
    yaw = np.zeros((n, K), dtype=np.float32)
    for i, scene in enumerate(scenes):
        if len(scene.objects) > K:
            raise ValueError(f"scene {i} has {len(scene.objects)} objects, more than {K} slots")
        for k, obj in enumerate(scene.objects):
            shape[i, k], position[i, k], yaw[i, k] = obj.label, obj.position, obj.yaw_deg
    return {"shape": shape, "position": position, "yaw": yaw}
