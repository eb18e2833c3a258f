"""The 3D kind as one record (:class:`inverse_air.kinds.Kind`): presets, object model, datasets,
ground truth, metrics and how results read. Importing this module imports neither torch nor
PyTorch3D; the pieces that need them are imported when first used."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..config import AIRConfig, DatasetConfig, TrainConfig
from ..kinds import Codec, Kind, lazy
from .config import Objects3DConfig, Scenes3DConfig
from .metrics import scene_metrics_3d

RENDER_BATCH = 64
"""Scenes rendered at once while making a shard (bounds the renderer's transient memory)."""


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
    metrics=scene_metrics_3d,
    metric_lines=metric_lines,
    step_text=step_text,
    shipped_model="air3d.pt",
    upgrade_v1=upgrade_v1,
)
