"""The 3D kind as one record (:class:`inverse_air.kinds.Kind`): presets, object model, datasets,
ground truth, metrics and how results read. Importing this module imports neither torch nor
PyTorch3D; the pieces that need them are imported when first used."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import AIRConfig, DatasetConfig, TrainConfig
from ..kinds import Codec, Kind, lazy
from .config import Objects3DConfig, Scenes3DConfig
from .metrics import scene_metrics_3d

RENDER_BATCH = 64
"""Scenes rendered at once while making a shard (bounds the renderer's transient memory)."""

MODELS = Path(__file__).resolve().parent / "models"
"""The shipped models of this kind (package data), each with its model card."""


def fit_to_data(air: AIRConfig, data: DatasetConfig) -> AIRConfig:
    """The model draws with the dataset's renderer."""
    return replace(air, objects=replace(air.objects, render=data.scenes.render))


class ShardMaker:
    """Makes 3D shards: scenes from the prior (:func:`~inverse_air.objects3d.prior.sample_prior`),
    hard-rendered."""

    def __init__(self, config: DatasetConfig):
        from .render3d import SceneRenderer

        self.config = config
        self.renderer = SceneRenderer(config.scenes.render)

    def __call__(self, rng: np.random.Generator, counts: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from ..images import to_uint8
        from .prior import sample_prior

        arrays = sample_prior(counts, rng, self.config.scenes.render.object_scale, self.config.max_count)
        tensors = {k: torch.from_numpy(arrays[k]) for k in ("shape", "position", "yaw")}
        images = []
        with torch.no_grad():
            for b in range(0, len(counts), RENDER_BATCH):
                part = {k: v[b:b + RENDER_BATCH] for k, v in tensors.items()}
                images.append(to_uint8(self.renderer(part["shape"], part["position"], torch.deg2rad(part["yaw"]))))
        return {"images": np.concatenate(images), **arrays}


def shard_arrays(config: DatasetConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    S, K = config.scenes.image_size, config.max_count
    return {"images": ("uint8", (S, S, 3)), "shape": ("int64", (K,)), "position": ("float32", (K, 2)),
            "yaw": ("float32", (K,))}


def check_truth(arrays: dict[str, np.ndarray], config: DatasetConfig) -> str | None:
    """Shapes are -1 or a label, filled slots first and as many as ``count``; positions of
    objects inside the scene square."""
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
    return None


# Measured peak memory of one step of the preset (64x64 images, 2 cores, torch 2.11), per
# image: sleep 1.38 MB, ELBO 5.75 MB (soft rendering, 16 faces per pixel), predict 0.22 MB; as
# bytes per pixel below (the ELBO's per face per pixel), with half as much again to spare.
_BYTES_PER_PIXEL = {"sleep": 337, "supervised": 337, "predict": 53}
_ELBO_BYTES_PER_PIXEL_FACE = 88


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
    return [f"identity accuracy  {identity}",
            f"position error     median {median('position_error', '.4f')} world units",
            f"cube yaw error     median {median('cube_yaw_error_deg', '.2f')} degrees"]


def step_text(step: dict) -> str:
    probs = " ".join(f"{k} {v:.2f}" for k, v in step["shape_probs"].items())
    x, z = step["position"]
    return f"{step['shape']:<8s} position ({x:+.3f}, {z:+.3f})  yaw {step['yaw_deg']:+6.1f} deg  [{probs}]"


def upgrade_v1(old: dict, which: str) -> dict:
    """Format 1 kept the 3D model's glimpse and renderer in ``AIRConfig`` and the renderer in
    ``DatasetConfig``."""
    if which == "air":
        return {k: old[k] for k in ("glimpse_size", "glimpse_channels", "glimpse_features", "render") if k in old}
    return {"render": old["render"]} if "render" in old else {}


KIND = Kind(
    name="3d",
    summary="spheres, cubes and cylinders drawn by a fixed PyTorch3D renderer (identity and pose per object)",
    objects_config=Objects3DConfig,
    scenes_config=Scenes3DConfig,
    air=AIRConfig(objects=Objects3DConfig()),
    train=TrainConfig(),
    dataset=DatasetConfig(scenes=Scenes3DConfig(), counts=(0, 1, 2, 3)),
    build_objects=lazy("inverse_air.objects3d.model3d", "Objects3D"),
    fit_to_data=fit_to_data,
    shard_maker=ShardMaker,
    codec=Codec(targets=lazy("inverse_air.objects3d.model3d", "targets_from_arrays"),
                to_arrays=lazy("inverse_air.objects3d.model3d", "latents_to_arrays")),
    shard_arrays=shard_arrays,
    check_truth=check_truth,
    memory_per_image=memory_per_image,
    metrics=scene_metrics_3d,
    metric_lines=metric_lines,
    step_text=step_text,
    shipped_model=MODELS / "air3d.pt",
    upgrade_v1=upgrade_v1,
)
