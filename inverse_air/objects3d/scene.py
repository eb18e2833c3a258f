"""Scene descriptions for the 3D model: objects, the scene's look, JSON I/O and validation.

A scene is a list of objects resting on the ground plane. Each object has

- ``shape``: one of :data:`SHAPES` (its categorical identity),
- ``position``: ``[x, z]`` on the ground plane, in world units,
- ``yaw_deg``: the rotation about the vertical (+Y) axis in degrees, counter-clockwise seen
  from above (default 0; any finite angle, reduced by whole turns: :func:`reduce_degrees`),
- optionally ``color`` (RGB albedo in [0, 1]) and ``size`` (the scale of its unit mesh: cube
  side, sphere and cylinder diameter).

A scene may also say how it looks (each optional): ``camera`` (``elevation_deg`` above the
ground, ``azimuth_deg`` about +Y, ``distance`` from the point the camera looks at), ``light``
(``direction`` towards the light, ``ambient`` and ``diffuse`` intensities) and
``ground_color`` (RGB). What a scene leaves out takes the render config's value
(:class:`inverse_air.objects3d.config.RenderConfig`).

**Convention.** PyTorch3D's world frame: +Y up, the ground is ``y = 0``. The default camera
looks at the origin from above and in front (from +Z). Object centres must lie in the square
``[POSITION_MIN, POSITION_MAX]^2``; objects must not interpenetrate, which is checked
conservatively on their footprint circles (:data:`FOOTPRINT_RADIUS` times each object's size).
Occlusion is allowed. Scenes are drawn at random by the prior (:mod:`inverse_air.objects3d.prior`).
Every valid range is defined here (:data:`RANGES`).

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

RANGES: dict[str, tuple[float, float]] = {
    "size": (0.05, 1.5),
    "color": (0.0, 1.0),
    "elevation_deg": (1.0, 89.0),
    "distance": (2.5, 20.0),
    "ambient": (0.0, 1.0),
    "diffuse": (0.0, 1.0),
    "ground_color": (0.0, 1.0),
}
"""Valid values (inclusive) of a scene file's numeric fields other than positions and angles
(``azimuth_deg`` and ``yaw_deg`` are any finite angle)."""

FOOTPRINT_RADIUS: dict[str, float] = {"sphere": 0.5, "cube": math.sqrt(0.5), "cylinder": 0.5}
"""Radius of the circle on the ground that holds the unit-size mesh at any yaw.

Multiplied by the object's size, two objects interpenetrate when the distance between their
centres is below the sum of their radii (conservative for cubes)."""

YAW_SYMMETRY_DEG: dict[str, float | None] = {"sphere": None, "cube": 90.0, "cylinder": None}
"""Period of each shape's visible yaw: ``None`` means yaw is not observable."""


class SceneError(UserError, ValueError):
    """A scene file or scene description is invalid. The message is one line for the user."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene (see the module docstring for units and frame). ``color`` and
    ``size`` are None where the render config's value applies."""

    shape: str
    position: tuple[float, float]
    yaw_deg: float = 0.0
    color: tuple[float, float, float] | None = None
    size: float | None = None

    @property
    def label(self) -> int:
        """The integer identity of the shape (index into :data:`SHAPES`)."""
        return SHAPES.index(self.shape)


@dataclass(frozen=True)
class Camera:
    """Where the camera is: ``elevation_deg`` above the ground, ``azimuth_deg`` about +Y (0 on
    the +Z side), ``distance`` from the point it looks at (the render config's target)."""

    elevation_deg: float
    azimuth_deg: float
    distance: float


@dataclass(frozen=True)
class Light:
    """A distant light: ``direction`` towards it (any length but 0), and its ``ambient`` and
    ``diffuse`` intensities (a face shows ``albedo * (ambient + diffuse * max(0, n . l))``)."""

    direction: tuple[float, float, float]
    ambient: float
    diffuse: float


@dataclass(frozen=True)
class Scene:
    """A scene: zero or more objects and, optionally, how it looks."""

    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)
    camera: Camera | None = None
    light: Light | None = None
    ground_color: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        """The scene file's JSON (fields left None are left out)."""
        out: dict = {}
        if self.camera is not None:
            c = self.camera
            out["camera"] = {"elevation_deg": float(c.elevation_deg), "azimuth_deg": float(c.azimuth_deg),
                             "distance": float(c.distance)}
        if self.light is not None:
            out["light"] = {"direction": [float(v) for v in self.light.direction],
                            "ambient": float(self.light.ambient), "diffuse": float(self.light.diffuse)}
        if self.ground_color is not None:
            out["ground_color"] = [float(v) for v in self.ground_color]
        out["objects"] = []
        for o in self.objects:
            item = {"shape": o.shape, "position": [float(o.position[0]), float(o.position[1])],
                    "yaw_deg": float(o.yaw_deg)}
            if o.color is not None:
                item["color"] = [float(v) for v in o.color]
            if o.size is not None:
                item["size"] = float(o.size)
            out["objects"].append(item)
        return out


def min_distance(shape_a: str, shape_b: str, size_a: float, size_b: float | None = None) -> float:
    """Smallest centre distance at which two objects of these shapes and sizes (``size_b``
    defaults to ``size_a``) do not interpenetrate."""
    if size_b is None:
        return size_a * (FOOTPRINT_RADIUS[shape_a] + FOOTPRINT_RADIUS[shape_b])
    return FOOTPRINT_RADIUS[shape_a] * size_a + FOOTPRINT_RADIUS[shape_b] * size_b


def _show(value, limit: int = 60) -> str:
    """A JSON value for a one-line message, cut to ``limit`` characters."""
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def reduce_degrees(angle: float) -> float:
    """``angle`` brought into [-360, 360] by whole turns (exactly: ``math.fmod``), so that a
    huge but finite angle names the angle it means instead of overflowing the renderer's
    float32; angles already in that range are kept as they are."""
    return angle if -360.0 <= angle <= 360.0 else math.fmod(angle, 360.0)


def _number(value, where: str, valid: tuple[float, float] | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SceneError(f"{where}: expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise SceneError(f"{where}: expected a finite number, got {value}")
    if valid is not None and not valid[0] <= value <= valid[1]:
        raise SceneError(f"{where}: {value:g} is outside [{valid[0]:g}, {valid[1]:g}]")
    return float(value)


def _numbers(value, where: str, n: int, valid: tuple[float, float] | None = None) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise SceneError(f"{where}: expected a list of {n} numbers, got {_show(value)}")
    return tuple(_number(v, where, valid) for v in value)


def _fields(item, where: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(item, dict):
        raise SceneError(f"{where}: expected a JSON object")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise SceneError(f"{where}: unknown field '{unknown[0]}'")
    for name in required:
        if name not in item:
            raise SceneError(f"{where}: field '{name}' is missing")
    return item


def _object_from_dict(item, where: str) -> ObjectSpec:
    item = _fields(item, where, {"shape", "position", "yaw_deg", "color", "size"}, ("shape",))
    shape = item["shape"]
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
    color = _numbers(item["color"], f"{where}: field 'color'", 3, RANGES["color"]) if "color" in item else None
    size = _number(item["size"], f"{where}: field 'size'", RANGES["size"]) if "size" in item else None
    return ObjectSpec(shape, (x, z), yaw, color, size)


def scene_from_dict(data, object_scale: float, source: str = "scene") -> Scene:
    """Build and validate a :class:`Scene` from parsed JSON.

    Args:
        data: the parsed JSON document, ``{"objects": [...], "camera": ..., ...}`` (other
            top-level fields, e.g. those of a ``decompose --json`` line, are ignored).
        object_scale: the render config's object scale: the size of objects that give none,
            for the interpenetration check.
        source: a name for the input (usually the file path), used in error messages.

    Raises:
        SceneError: with one line naming ``source``, the object index (or field) and the problem.
    """
    if not isinstance(data, dict) or "objects" not in data:
        raise SceneError(f"{source}: expected a JSON object with an 'objects' list")
    items = data["objects"]
    if not isinstance(items, list):
        raise SceneError(f"{source}: field 'objects': expected a list")
    objects = tuple(_object_from_dict(item, f"{source}: object {i}") for i, item in enumerate(items))
    camera = light = ground = None
    if "camera" in data:
        where = f"{source}: field 'camera'"
        c = _fields(data["camera"], where, {"elevation_deg", "azimuth_deg", "distance"},
                    ("elevation_deg", "azimuth_deg", "distance"))
        camera = Camera(_number(c["elevation_deg"], f"{where}: elevation_deg", RANGES["elevation_deg"]),
                        reduce_degrees(_number(c["azimuth_deg"], f"{where}: azimuth_deg")),
                        _number(c["distance"], f"{where}: distance", RANGES["distance"]))
    if "light" in data:
        where = f"{source}: field 'light'"
        l = _fields(data["light"], where, {"direction", "ambient", "diffuse"}, ("direction", "ambient", "diffuse"))
        direction = _numbers(l["direction"], f"{where}: direction", 3)
        if not any(direction):
            raise SceneError(f"{where}: direction: must not be [0, 0, 0]")
        light = Light(direction, _number(l["ambient"], f"{where}: ambient", RANGES["ambient"]),
                      _number(l["diffuse"], f"{where}: diffuse", RANGES["diffuse"]))
    if "ground_color" in data:
        ground = _numbers(data["ground_color"], f"{source}: field 'ground_color'", 3, RANGES["ground_color"])
    scene = Scene(objects, camera, light, ground)
    check_overlaps(scene, object_scale, source)
    return scene


def check_overlaps(scene: Scene, object_scale: float, source: str = "scene") -> None:
    """Raise :class:`SceneError` if two objects of ``scene`` interpenetrate (each with its own
    size, ``object_scale`` where it gives none)."""
    objs = scene.objects
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            a, b = objs[i], objs[j]
            d = math.dist(a.position, b.position)
            need = min_distance(a.shape, b.shape, a.size or object_scale, b.size or object_scale)
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
        The look (colours, sizes, camera, light, ground) is not included: see
        :func:`inverse_air.objects3d.render3d.scenes_to_tensors`.

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
