"""Scene descriptions for the 3D model: objects, the scene's look, JSON I/O and validation.

A scene is a list of objects resting on the ground plane. Each object has

- ``shape``: one of :data:`SHAPES` (its categorical identity),
- ``position``: ``[x, z]`` on the ground plane, in world units,
- ``yaw_deg``: the rotation about the vertical (+Y) axis in degrees, counter-clockwise seen
  from above (default 0; any finite angle, reduced by whole turns: :func:`reduce_degrees`),
- optionally ``color`` (RGB albedo in [0, 1]) and ``size`` (the scale of its unit mesh: cube
  side, sphere and cylinder diameter).

A scene may also say how it looks (each field optional): ``camera`` (``elevation_deg`` above
the ground, ``azimuth_deg`` about +Y, ``distance`` from the point the camera looks at),
``light`` (``direction`` towards the light, ``ambient`` and ``diffuse`` intensities) and
``ground_color`` (RGB). What a scene leaves out takes the render config's value
(:class:`inverse_air.objects3d.config.RenderConfig`). Where each factor of the look sits in a
scene file, and its valid range, is the look table's (:mod:`inverse_air.objects3d.look`).

**Convention.** PyTorch3D's world frame: +Y up, the ground is ``y = 0``. The default camera
looks at the origin from above and in front (from +Z). Object centres must lie in the square
``[POSITION_MIN, POSITION_MAX]^2``; objects must not interpenetrate, which is checked
conservatively on their footprint circles (:data:`FOOTPRINT_RADIUS` times each object's size).
Occlusion is allowed. Scenes are drawn at random by the prior (:mod:`inverse_air.objects3d.prior`).

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
from .look import FACTORS, GROUPS, IMAGE, OBJECT, array_shape, arrays_of, defaults, unit_direction

SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder")
"""Object identities, in the order of their integer labels (0, 1, 2)."""

POSITION_MIN: float = -1.0
"""Smallest valid x or z coordinate of an object centre (world units)."""
POSITION_MAX: float = 1.0
"""Largest valid x or z coordinate of an object centre (world units)."""

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
    the +Z side), ``distance`` from the point it looks at (the render config's target); each
    None where the render config's value applies."""

    elevation_deg: float | None = None
    azimuth_deg: float | None = None
    distance: float | None = None


@dataclass(frozen=True)
class Light:
    """A distant light: ``direction`` towards it (any vector of normal, finite length), and its
    ``ambient`` and ``diffuse`` intensities (a face shows ``albedo * (ambient + diffuse *
    max(0, n . l))``); each None where the render config's value applies."""

    direction: tuple[float, float, float] | None = None
    ambient: float | None = None
    diffuse: float | None = None


SECTIONS: dict[str, type] = {"camera": Camera, "light": Light}
"""The scene file's objects that hold several factors of the look, by key (the look table's
``scene`` paths name their fields)."""


@dataclass(frozen=True)
class Scene:
    """A scene: zero or more objects and, optionally, how it looks."""

    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)
    camera: Camera | None = None
    light: Light | None = None
    ground_color: tuple[float, float, float] | None = None

    def look(self, factor):
        """The value a per-image ``factor`` of the look table has in this scene (None: not given)."""
        value = getattr(self, factor.scene[0])
        return value if len(factor.scene) == 1 or value is None else getattr(value, factor.scene[1])

    def to_dict(self) -> dict:
        """The scene file's JSON (fields left None are left out)."""
        out: dict = {}
        for f in FACTORS:
            value = self.look(f) if f.per == IMAGE else None
            if value is not None:
                *section, key = f.scene
                (out.setdefault(section[0], {}) if section else out)[key] = _plain(value)
        out["objects"] = []
        for o in self.objects:
            item = {"shape": o.shape, "position": [float(o.position[0]), float(o.position[1])],
                    "yaw_deg": float(o.yaw_deg)}
            for f in FACTORS:
                if f.per == OBJECT and getattr(o, f.scene[0]) is not None:
                    item[f.scene[0]] = _plain(getattr(o, f.scene[0]))
            out["objects"].append(item)
        return out


def _plain(value):
    """A value of the look as JSON: a float, or a list of floats."""
    return [float(v) for v in value] if isinstance(value, (tuple, list)) else float(value)


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


def _look_value(factor, value, where: str):
    """A scene file's value of a factor of the look, checked against the look table."""
    if factor.direction:
        vector = _numbers(value, where, factor.channels)
        if unit_direction(vector) is None:
            raise SceneError(f"{where}: {_show(value)} has no direction (its length is 0, subnormal or not finite)")
        return vector
    if factor.channels > 1:
        return _numbers(value, where, factor.channels, factor.valid)
    if factor.angle:
        return reduce_degrees(_number(value, where))
    return _number(value, where, factor.valid)


_OBJECT_LOOK = {f.scene[0]: f for f in FACTORS if f.per == OBJECT}


def _object_from_dict(item, where: str) -> ObjectSpec:
    item = _fields(item, where, {"shape", "position", "yaw_deg", *_OBJECT_LOOK}, ("shape",))
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
    look = {key: _look_value(f, item[key], f"{where}: field '{key}'") for key, f in _OBJECT_LOOK.items() if key in item}
    return ObjectSpec(shape, (x, z), yaw, **look)


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
    look: dict = {}
    for f in FACTORS:
        if f.per != IMAGE or f.scene[0] not in data:
            continue
        where = f"{source}: field '{f.scene[0]}'"
        if len(f.scene) == 1:
            look[f.scene[0]] = _look_value(f, data[f.scene[0]], where)
            continue
        section, key = f.scene
        given = _fields(data[section], where, set(SECTIONS[section].__dataclass_fields__))
        look.setdefault(section, {})
        if key in given:
            look[section][key] = _look_value(f, given[key], f"{where}: {key}")
    sections = {k: SECTIONS[k](**v) for k, v in look.items() if k in SECTIONS and v}  # {}: nothing given
    scene = Scene(objects, **sections, **{k: v for k, v in look.items() if k not in SECTIONS})
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


def scenes_to_arrays(scenes: list[Scene], max_objects: int | None = None, render=None) -> dict[str, np.ndarray]:
    """Pad scenes into the dataset's ground-truth arrays.

    Args:
        scenes: the scenes.
        max_objects: object slots ``K`` (default: the largest count).
        render: a :class:`~inverse_air.objects3d.config.RenderConfig`: also the look's arrays
            that some scene gives (each a float32 array of the look table: a factor left out
            takes ``render``'s value; light directions normalized in float64). None: no look.

    Returns:
        ``shape (n, K)`` int64 (-1 = empty slot), ``position (n, K, 2)`` float32,
        ``yaw (n, K)`` float32 in degrees, with ``K = max_objects`` or the largest count; with
        ``render``, the look's arrays (``camera (n, 3)``, ``color (n, K, 3)``, ...).

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
    out = {"shape": shape, "position": position, "yaw": yaw}
    return out if render is None else {**out, **_look_arrays(scenes, K, render)}


def _look_arrays(scenes: list[Scene], K: int, render) -> dict[str, np.ndarray]:
    """The look's arrays some scene gives (see :func:`scenes_to_arrays`), in the ground truth's order."""
    default = defaults(render)
    out = {}
    for name, (per, factors) in arrays_of(GROUPS, truth=True).items():
        array = None
        for i, scene in enumerate(scenes):
            for k, item in enumerate([scene] if per == IMAGE else scene.objects):
                for f in factors:
                    value = item.look(f) if per == IMAGE else getattr(item, f.scene[0])
                    if value is None:
                        continue
                    if array is None:  # filled with the render config's value
                        slots = (len(scenes),) + ((K,) if per == OBJECT else ())
                        array = np.empty(slots + array_shape(factors), np.float32)
                        array[...] = np.asarray(default[name], np.float32).reshape(array_shape(factors))
                    index = (i,) if per == IMAGE else (i, k)
                    array[index + (() if f.column is None else (f.column,))] = (
                        unit_direction(value) if f.direction else value)
        if array is not None:
            out[name] = array
    return out
