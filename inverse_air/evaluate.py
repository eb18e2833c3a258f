"""Evaluate a checkpoint on a labelled dataset: the metrics of the model's kind
(``Kind.metrics``, on top of :mod:`inverse_air.metrics`) and the speed of batched inference.

The dataset is read shard by shard: only one shard's images are in memory at a time (the
ground truth and the predictions of every scene are small). A folder of images
(:mod:`inverse_air.folders`) is scored on the images its ``labels.jsonl`` names: count
accuracy and confusion always, the kind's metrics where the labels give the objects. A folder
without labels gets what can be said without them: the histogram of inferred counts and the
ELBO (one-sample estimate, :func:`inverse_air.elbo.image_terms`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import load_model
from .config import AIRConfig
from .data import Dataset, open_dataset
from .errors import UserError, warning
from .folders import LABELS
from .images import images_to_tensor
from .kinds import KINDS
from .limits import check_memory
from .metrics import count_metrics
from .refine import check_steps, refine as refine_latents


def check_batch_size(batch_size: int) -> None:
    """Refuse (``UserError``) a batch size that is not a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size!r}")


def check_batch(model, batch_size: int, images: int | None = None, at_once: int = 1) -> None:
    """Refuse (``UserError``) an inference batch size that is not a positive integer or whose
    batches (``at_once`` side by side; at most ``images`` images each) do not fit in memory."""
    check_batch_size(batch_size)
    batch = min(batch_size, images) if images is not None else batch_size
    per_image = KINDS[model.config.kind].memory_per_image(model.config, "predict")
    side = f", {at_once} batches side by side" if at_once > 1 else ""
    check_memory(per_image * batch * at_once, f"--batch-size {batch_size:,} ({batch:,} images a batch{side})",
                 "use a smaller --batch-size", device=model.prior_pres.device)


@torch.no_grad()
def infer_arrays(model, images: np.ndarray, batch_size: int = 256,
                 precision: str = "fp32", refine: int = 0) -> tuple[dict[str, np.ndarray], float]:
    """Deterministic inference (most likely presence and identity, posterior-mean pose) on
    ``(n, H, W, C)`` uint8 images, refined through the generative model where ``refine`` > 0
    (:func:`inverse_air.refine.refine` with that many gradient steps, as ``decompose
    --refine``); returns predictions in the dataset's format (the kind's ``codec.to_arrays``)
    and the seconds spent in the model (conversion from uint8 and refinement included, file
    reading not).

    Raises:
        UserError: a batch size below 1 or too large for this machine's memory.
    """
    check_batch(model, batch_size, len(images))
    to_arrays = KINDS[model.config.kind].codec.to_arrays
    parts, seconds = [], 0.0
    for start in range(0, len(images), batch_size):
        t0 = time.perf_counter()
        x = images_to_tensor(images[start:start + batch_size]).to(model.prior_pres.device)
        latents = model.predict(x, precision)
        if refine > 0:
            latents = refine_latents(model, x, latents, refine)[0]
        parts.append(to_arrays(latents))
        seconds += time.perf_counter() - t0
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, seconds


def batches(dataset: Dataset, batch_size: int, truths: list[dict[str, np.ndarray]]):
    """A dataset's images in batches of ``batch_size`` (the last one shorter) whatever the shard
    boundaries, read shard by shard (one shard and one batch in memory); each shard's other
    arrays are appended to ``truths``. The batches are those of the whole dataset at once, so
    results do not depend on the shard size."""
    pending: list[np.ndarray] = []  # the start of the next batch, from earlier shards
    held = 0
    for shard in dataset.shards():
        images = shard.pop("images")
        truths.append(shard)
        at = 0
        if pending and held + len(images) >= batch_size:  # a batch across shards
            at = batch_size - held
            yield np.concatenate([*pending, images[:at]])
            pending, held = [], 0
        while not pending and len(images) - at >= batch_size:
            yield images[at:at + batch_size]
            at += batch_size
        if at < len(images):
            pending.append(images[at:])
            held += len(images) - at
    if held:
        yield np.concatenate(pending)


def data_mismatch(air: AIRConfig, dataset: Dataset) -> str | None:
    """One line naming the dataset and how its scenes differ from those a model of configuration
    ``air`` was trained on (``Kind.data_mismatch``: 3D, a look that varies where the model saw
    it fixed), or None (no difference the kind knows of; a folder of images says nothing)."""
    check = KINDS[air.kind].data_mismatch
    text = check(air, dataset.config) if check is not None and dataset.config is not None else None
    return f"{dataset.directory}: {text}" if text else None


def evaluate(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, batch_size: int = 256,
             device: str = "cpu", precision: str = "fp32", warn: Callable[[str], None] = warning,
             refine: int = 0) -> dict:
    """The metrics of a checkpoint's kind (``Kind.metrics``: count accuracy and confusion
    matrix; 3D identity and pose, 2D window position and scale) on a dataset, and
    images/s of inference on ``device`` (``auto``, ``cpu`` or ``cuda``) in ``precision`` (see
    :meth:`AIR.predict`), refined with ``refine`` gradient steps where above 0 (see
    :func:`infer_arrays`; labelled data only). ``warn`` is called with :func:`data_mismatch`'s
    line, if any."""
    from .distributed import resolve_device

    check_batch_size(batch_size)
    check_steps(refine)
    model, payload = load_model(checkpoint, device=resolve_device(device))
    config = payload["config"]
    air = config.air
    dataset = open_dataset(data_dir, air.kind, air.image_size, air.channels,
                           labelled_only=(Path(data_dir) / LABELS).exists())
    dataset.check_fits(air, str(checkpoint))
    mismatch = data_mismatch(air, dataset)
    if mismatch:
        warn(mismatch)
    check_batch(model, batch_size, len(dataset))
    if dataset.counts is None:
        metrics, seconds = unlabelled_metrics(model, dataset, batch_size)
    else:
        truths, preds, seconds = [], [], 0.0
        for images in batches(dataset, batch_size, truths):
            pred, spent = infer_arrays(model, images, batch_size, precision, refine)
            preds.append(pred)
            seconds += spent
        join = lambda parts: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        truth, pred = join(truths), join(preds)
        metrics = KINDS[air.kind].metrics(truth, pred) if set(truth) != {"count"} else \
            count_metrics(truth["count"], pred["count"])  # labels that give counts only
    metrics.update({
        "model": config.air.kind, "checkpoint": str(checkpoint), "data": str(data_dir), "step": payload["step"],
        "images_per_s": len(dataset) / seconds if seconds > 0 else None,
        "batch_size": batch_size, "threads": torch.get_num_threads(), "device": str(model.prior_pres.device),
        "precision": precision, "refine": refine,
    })
    return metrics


def unlabelled_metrics(model, dataset: Dataset, batch_size: int) -> tuple[dict, float]:
    """What evaluate reports on images without labels: ``num_scenes``, ``labelled`` (False),
    ``count_hist`` (the fraction of images with each inferred count 0..N) and the means of the
    one-sample ELBO terms per image (``elbo``, ``log_likelihood``, ``kl``, nats); and 0.0
    seconds of inference (the ELBO's sampling pass would distort the speed: none is reported)."""
    from .elbo import image_terms

    parts = []
    for images in batches(dataset, batch_size, []):
        terms = image_terms(model, images_to_tensor(images).to(model.prior_pres.device))
        parts.append({k: v.cpu().numpy() for k, v in terms.items()})
    terms = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    hist = np.bincount(terms.pop("count"), minlength=model.config.max_steps + 1) / len(dataset)
    return {"num_scenes": len(dataset), "labelled": False, "count_hist": [round(float(v), 4) for v in hist],
            **{k: float(v.mean()) for k, v in terms.items()}}, 0.0
