"""The 3D kind as one record (:class:`inverse_air.kinds.Kind`): presets, object model, datasets,
ground truth, metrics and how results read. Importing this module imports neither torch nor
PyTorch3D; the pieces that need them are imported when first used."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import AIRConfig, DatasetConfig, TrainConfig, to_dict
from ..errors import UserError
from ..kinds import Codec, Kind, Labels, lazy
from .config import Objects3DConfig, RenderConfig, Scenes3DConfig, Variation
from .look import FACTORS, IMAGE, OBJECT, TRUTH_ORDER, array_shape, arrays_of
from .metrics import scene_metrics_3d

RENDER_BATCH = 64
"""Scenes rendered at once while making a shard (bounds the renderer's transient memory)."""

MODELS = Path(__file__).resolve().parent / "models"
"""The shipped models of this kind (package data), each with its model card."""


def fit_to_data(air: AIRConfig, data: DatasetConfig) -> AIRConfig:
    """The model draws with the dataset's renderer and infers what the dataset varies (its
    prior is the dataset's), with the look switches that go with it
    (:meth:`~inverse_air.objects3d.config.Objects3DConfig.fitted`)."""
    return replace(air, objects=air.objects.fitted(data.scenes.render, data.scenes.variation))


def read_objects(objects: list, K: int, where: str) -> dict[str, np.ndarray]:
    """A ``labels.jsonl`` line's ``objects``, each a scene file's object (``{"shape": "cube",
    "position": [x, z], "yaw_deg": 30}``, checked as in a scene file), as one scene's ground
    truth with ``K`` slots: ``shape (K,)`` (-1 empty), ``position (K, 2)``, ``yaw (K,)``."""
    from .scene import _object_from_dict, scenes_to_arrays, Scene

    if not all(isinstance(item, dict) for item in objects):
        raise UserError(f"{where}: field 'objects' must list scene-file objects like "
                        f"{{\"shape\": \"cube\", \"position\": [0.3, -0.2]}}")
    scene = Scene(tuple(_object_from_dict(item, f"{where}: object {k}") for k, item in enumerate(objects)))
    return {name: array[0] for name, array in scenes_to_arrays([scene], K).items()}


class ShardMaker:
    """Makes 3D shards: scenes from the prior (:func:`~inverse_air.objects3d.prior.sample_prior`:
    what the dataset's ``variation`` varies, per scene), hard-rendered."""

    def __init__(self, config: DatasetConfig):
        from .render3d import SceneRenderer

        self.config = config
        self.renderer = SceneRenderer(config.scenes.render)

    def __call__(self, rng: np.random.Generator, counts: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from ..images import to_uint8
        from .prior import sample_prior
        from .render3d import LOOK

        scenes = self.config.scenes
        arrays = sample_prior(counts, rng, scenes.render, scenes.variation, self.config.max_count)
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "count"}
        images = []
        with torch.no_grad():
            for b in range(0, len(counts), RENDER_BATCH):
                part = {k: v[b:b + RENDER_BATCH] for k, v in tensors.items()}
                look = {k: v for k, v in part.items() if k in LOOK}
                images.append(to_uint8(self.renderer(part["shape"], part["position"], torch.deg2rad(part["yaw"]),
                                                     **look)))
        return {"images": np.concatenate(images), **arrays}


def shard_arrays(config: DatasetConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The pose arrays, and the look arrays of what the dataset's ``variation`` varies (the
    look table's, in the ground truth's order: :func:`~inverse_air.objects3d.prior.sample_prior`)."""
    S, K = config.scenes.image_size, config.max_count
    out = {"images": ("uint8", (S, S, 3)), "shape": ("int64", (K,)), "position": ("float32", (K, 2)),
           "yaw": ("float32", (K,))}
    for name, (per, factors) in arrays_of(config.scenes.variation.varied, truth=True).items():
        out[name] = ("float32", ((K,) if per == OBJECT else ()) + array_shape(factors))
    return out


def check_truth(arrays: dict[str, np.ndarray], config: DatasetConfig) -> str | None:
    """Shapes are -1 or a label, filled slots first and as many as ``count``; positions of
    objects inside the scene square; the look within its valid ranges (the look table's),
    directions of unit length."""
    from .scene import POSITION_MAX, POSITION_MIN, SHAPES

    shape, count = arrays["shape"], arrays["count"]
    if ((shape < -1) | (shape >= len(SHAPES))).any():
        return f"shape holds labels outside -1..{len(SHAPES) - 1}"
    present = shape >= 0
    if (present.sum(1) != count).any() or (present[:, 1:] & ~present[:, :-1]).any():
        return "shape's filled slots do not match count"
    position = arrays["position"][present]
    if ((position < POSITION_MIN) | (position > POSITION_MAX)).any():
        return f"position outside the scene square [{POSITION_MIN:g}, {POSITION_MAX:g}]"
    for f in TRUTH_ORDER:  # the look's ranges, in the arrays' float32
        if f.array not in arrays:
            continue
        values = f.take(arrays[f.array])
        if f.direction:
            if (np.abs(np.linalg.norm(values, axis=-1) - 1) > 1e-3).any():
                return f"{f.array} holds directions that are not unit vectors"
            continue
        low, high = np.asarray(f.valid, values.dtype)
        if not ((values >= low) & (values <= high)).all():  # NaN fails too
            name = f.array if f.field is None else f"{f.array}.{f.field}"
            return f"{name} outside [{f.valid[0]:g}, {f.valid[1]:g}]"
    return None


# Measured growth of the peak memory of one training step (or one inference batch) of the
# preset with the batch (64x64 images whose look varies, torch 2.11), per image: sleep
# 1.40 MB, ELBO 8.0 MB (soft rendering, 16 faces per pixel), predict 0.45 MB; as bytes per
# pixel below (the ELBO's per face per pixel), with half as much again to spare.
_BYTES_PER_PIXEL = {"sleep": 341, "supervised": 341, "predict": 111}
_ELBO_BYTES_PER_PIXEL_FACE = 123


def memory_per_image(air: AIRConfig, phase: str) -> float:
    pixels = air.image_size ** 2
    if phase == "elbo":
        per_pixel = _ELBO_BYTES_PER_PIXEL_FACE * air.objects.render.soft_faces_per_pixel
    else:
        per_pixel = _BYTES_PER_PIXEL[phase]
    return 1.5 * per_pixel * pixels * max(1.0, air.max_steps / 3)


def metric_lines(m: dict) -> list[str]:
    median = lambda key, fmt: "n/a" if m[key] is None else format(m[key]["median"], fmt)
    identity = "n/a" if m["identity_accuracy"] is None else format(m["identity_accuracy"], ".2%")
    lines = [f"identity accuracy  {identity}",
             f"position error     median {median('position_error', '.4f')} world units",
             f"cube yaw error     median {median('cube_yaw_error_deg', '.2f')} degrees"]
    return lines + [f"{f.label:<18s} median {median(f.metric, f.metric_format)}{f.unit}"
                    for f in TRUTH_ORDER if f.metric in m]


def _given(result: dict, factor):
    """A factor's value in a scene file's terms (``decompose``'s result), or None."""
    for key in factor.scene:
        result = result.get(key) if isinstance(result, dict) else None
    return result


def step_text(step: dict) -> str:
    probs = " ".join(f"{k} {v:.2f}" for k, v in step["shape_probs"].items())
    x, z = step["position"]
    look = "".join(f"  {f.describe(_given(step, f))}" for f in TRUTH_ORDER
                   if f.per == OBJECT and _given(step, f) is not None)
    return f"{step['shape']:<8s} position ({x:+.3f}, {z:+.3f})  yaw {step['yaw_deg']:+6.1f} deg{look}  [{probs}]"


def look_text(result: dict) -> list[str]:
    """The inferred look of a decompose result, for people (nothing when it does not vary):
    a line per group of the look."""
    lines: dict[str, list[str]] = {}
    for f in FACTORS:
        if f.per == IMAGE and _given(result, f) is not None:
            lines.setdefault(f.group, []).append(f.describe(_given(result, f)))
    return [f"  {group:<8s}" + "  ".join(parts) for group, parts in lines.items()]


def data_mismatch(air: AIRConfig, data: DatasetConfig) -> str | None:
    """The factors of the look that the dataset varies and the model was trained with fixed
    (the shipped ``air3d.pt`` saw the fixed look only; ``render-dataset`` varies every factor by
    default), or None."""
    trained, varied = air.objects.variation.varied, data.scenes.variation.varied
    new = [factor for factor in varied if factor not in trained]
    if not new:
        return None
    seen = f"with only {', '.join(trained)} varying" if trained else "on the fixed look"
    looks = MODELS / "air3d-looks.pt"
    return (f"its scenes' {', '.join(new)} vary, but the model was trained {seen}: expect low scores. Use a "
            f"model trained on looks that vary ({looks}; decompose --model air3d-looks), or data that hold the "
            f"look fixed (render-dataset --fixed-appearance)")


def render_scene(path: Path, image_size: int | None) -> tuple[np.ndarray, int]:
    """A scene file drawn by the render config's renderer (of side ``image_size``)."""
    from .render3d import SceneRenderer
    from .scene import load_scene

    config = RenderConfig() if image_size is None else RenderConfig(image_size=image_size)
    scene = load_scene(path, config.object_scale)
    return SceneRenderer(config).render_scenes([scene])[0], len(scene.objects)


def upgrade_v1(old: dict, which: str) -> dict:
    """Format 1 kept the 3D model's glimpse and renderer in ``AIRConfig`` and the renderer in
    ``DatasetConfig``; nothing of the look varied."""
    fixed = to_dict(Variation.none())
    if which == "air":
        return {**{k: old[k] for k in ("glimpse_size", "glimpse_channels", "glimpse_features", "render") if k in old},
                "variation": fixed}
    return {**({"render": old["render"]} if "render" in old else {}), "variation": fixed}


KIND = Kind(
    name="3d",
    summary="spheres, cubes and cylinders drawn by a fixed PyTorch3D renderer (identity and pose per object)",
    objects_config=Objects3DConfig,
    scenes_config=Scenes3DConfig,
    air=AIRConfig(objects=Objects3DConfig()),
    train=TrainConfig(steps=10000),  # looks that vary take longer than the fixed look's 5,000
    dataset=DatasetConfig(scenes=Scenes3DConfig(), counts=(0, 1, 2, 3)),
    build_objects=lazy("inverse_air.objects3d.model3d", "Objects3D"),
    fit_to_data=fit_to_data,
    shard_maker=ShardMaker,
    codec=Codec(targets=lazy("inverse_air.objects3d.codec", "targets_from_arrays"),
                to_arrays=lazy("inverse_air.objects3d.codec", "latents_to_arrays")),
    shard_arrays=shard_arrays,
    check_truth=check_truth,
    memory_per_image=memory_per_image,
    metrics=scene_metrics_3d,
    metric_lines=metric_lines,
    step_text=step_text,
    look_text=look_text,
    shipped_model=MODELS / "air3d.pt",
    render_scene=render_scene,
    upgrade_v1=upgrade_v1,
    labels=Labels(field="objects", read=read_objects),
    data_mismatch=data_mismatch,
)
