"""Scene understanding from images: one amortized AIR pass per image, optionally refined.

``decompose`` reads images (files or directories), brings each to the model's input (size and
channels, with a notice), infers the objects in batches and returns one result per image:

- ``count`` and ``objects``, the present objects in the object model's terms (3D: a scene
  file's ``shape``, ``position``, ``yaw_deg``, so a result renders back with ``render-scene``);
- ``steps``: every step inference reached, with its presence probability and, where an
  object is present, the posterior details (3D: ``shape_probs``).

With ``refine=K``, each image's latents are then improved through the generative model
(:mod:`inverse_air.refine`): unsure identities tried in turn, and K gradient steps on every
continuous latent (3D: each object's pose and look, the image's camera, light and ground). The
count is kept, and an image's reconstruction error, reported before and after (with the
seconds per image it cost), never rises.

A bad input (missing, not an image, truncated, a decompression bomb) gives an error for that
image only; the others are still processed.

From Python::

    from inverse_air import Decomposer

    decomposer = Decomposer("3d")                    # the shipped 3D model ("2d": multi-MNIST)
    result = decomposer("scenes/two_objects.png")    # or a PIL image, an (H, W, C) array
    results = decomposer(batch)                      # (B, H, W, C) array or a list: one each
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from .errors import UserError
from .images import as_input, images_to_tensor, list_images, read_image, to_uint8
from .kinds import KINDS
from .limits import cpu_count
from .refine import check_steps, refine

T = TypeVar("T")
R = TypeVar("R")

SMALL_BATCH = 16
"""Batches smaller than this run on one CPU thread, in float32 under ``precision="auto"``
(see :meth:`Decomposer._infer`)."""

PRECISIONS = ("auto", "fp32", "bf16")
"""decompose's arithmetic: ``auto`` is bfloat16 for batches of at least :data:`SMALL_BATCH`
on a CPU with native bfloat16 arithmetic (:func:`native_bf16`) and float32 otherwise."""


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AVX-512 BF16 or AMX), where
    bfloat16 inference is about 1.6x faster; elsewhere it is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)

def shipped_model(kind: str) -> Path | None:
    """The shipped model of a kind (``Kind.shipped_model``: package data, with its model card
    beside it), or None if the kind ships none."""
    return KINDS[kind].shipped_model


@dataclass
class ImageResult:
    """What decompose reports for one input image."""

    path: str
    notices: list[str] = field(default_factory=list)
    error: str | None = None
    result: dict | None = None

    def to_json(self) -> dict:
        if self.error is not None:
            return {"image": self.path, "error": self.error}
        return {"image": self.path, **self.result, **({"notices": self.notices} if self.notices else {})}


def resolve_model(spec: str | os.PathLike | None) -> Path:
    """``None`` or a kind's name (``"3d"``, ``"2d"``) -> its shipped model; a shipped model's
    name (:func:`shipped_models`, e.g. ``"air3d-looks"``) -> that file; anything else is a
    checkpoint path; an empty name is refused (it is not the default).

    Raises:
        UserError: an empty name, a kind without a shipped model, or a name that is neither a
            file, a kind nor a shipped model.
    """
    if spec is None:
        spec = "3d"
    if isinstance(spec, str) and not spec.strip():
        raise UserError(f"--model {spec!r}: an empty name; give a checkpoint file, a kind ({', '.join(KINDS)}) or a "
                        f"shipped model ({', '.join(sorted(shipped_models()))}), or leave --model out for the "
                        f"shipped 3d model")
    if isinstance(spec, str) and spec in KINDS:
        path = shipped_model(spec)
        if path is None or not path.is_file():
            raise UserError(f"no shipped {spec} model at {path} (train one with "
                            f"`inverse-air train --model {spec}` and pass --model CHECKPOINT)")
        return path
    if not Path(spec).exists() and isinstance(spec, str) and os.sep not in spec and "." not in spec:
        named = shipped_models()
        if spec in named:
            return named[spec]
        raise UserError(f"--model {spec}: neither a checkpoint file, a kind ({', '.join(KINDS)}) nor a shipped "
                        f"model ({', '.join(sorted(named))})")
    return Path(spec)


def shipped_models() -> dict[str, Path]:
    """Every shipped model by its file's stem (``air3d``, ``air3d-looks``, ``air2d``): the
    ``.pt`` files beside each kind's shipped model, each with its model card."""
    out = {}
    for name in KINDS:
        path = shipped_model(name)
        if path is not None and path.parent.is_dir():
            out.update({p.stem: p for p in sorted(path.parent.glob("*.pt"))})
    return out


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given; directories replaced by their image files (:func:`~inverse_air.images.list_images`:
    sorted by name, hidden files skipped, as ``train`` reads a folder)."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += list_images(item)
        else:
            paths.append(item)
    return paths


class Decomposer:
    """A trained AIR model and what decompose does with it (see the module docstring).

    Args:
        model: a kind's name (``"3d"``, ``"2d"``: its shipped model) or a checkpoint path
            (``str`` or ``Path``).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA if available) or a ``torch.device``.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``: ``auto`` is bfloat16 for batches of
            :data:`SMALL_BATCH` or more on a CPU with native bfloat16, float32 otherwise.

    Calling it on images (:meth:`__call__`) is the one way to decompose from Python. (The
    command line's ``_run`` reads image files with an error record for each unreadable one
    and keeps the overlay's pictures; the other underscored methods are its steps.)

    Raises:
        UserError: an unknown precision or device, or a missing or broken checkpoint.
    """

    def __init__(self, model: str | os.PathLike = "3d", device: str | torch.device = "cpu",
                 precision: str = "auto"):
        from .checkpoint import load_model
        from .distributed import resolve_device

        if precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if isinstance(device, str):
            device = resolve_device(device)
        self.checkpoint = resolve_model(model)
        self.precision = precision
        self.model, payload = load_model(self.checkpoint, device=device)
        # channels-last convolutions on the CPU: the same values, faster (docs/design-notes.md)
        self.memory_format = torch.channels_last if self.model.prior_pres.device.type == "cpu" \
            else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.config = payload["config"]
        self.kind = self.config.air.kind
        self.size = self.config.air.image_size
        self.channels = self.model.channels
        self._bf16_pays = self.model.prior_pres.device.type == "cpu" and native_bf16()

    def dataset_warnings(self, inputs: list[str | os.PathLike]) -> list[str]:
        """What to warn of for each directory among ``inputs`` that is a dataset made by
        ``render-dataset``: decompose reads its image files only (its preview), not its scenes;
        and how its scenes differ from those the model was trained on
        (:func:`~inverse_air.evaluate.data_mismatch`)."""
        from .data import MANIFEST, PREVIEW, ShardDataset
        from .evaluate import data_mismatch

        lines = []
        for item in map(Path, inputs):
            if not (item / MANIFEST).is_file():
                continue
            lines.append(f"{item}: a dataset made by render-dataset; decompose reads its image files only ({PREVIEW}), "
                         f"not its scenes (`inverse-air evaluate CHECKPOINT --data {item}` scores them)")
            try:
                mismatch = data_mismatch(self.config.air, ShardDataset(item))
            except UserError:  # a manifest that cannot be read tells nothing
                continue
            if mismatch:
                lines.append(mismatch)
        return lines

    def _precision_for(self, batch: int) -> str:
        """The arithmetic (``fp32`` or ``bf16``) a batch of ``batch`` images runs in."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if self._bf16_pays and batch >= SMALL_BATCH else "fp32"

    def _infer(self, images: np.ndarray):
        """Deterministic inference on ``(B, S, S, C)`` uint8 images -> (input tensor, latents).

        Small batches run on one CPU thread: their operations are too small to split, and
        waking a second thread for each of them costs more than it saves (docs/design-notes.md).
        The arithmetic is :meth:`_precision_for` the batch.
        """
        x = images_to_tensor(images).to(self.model.prior_pres.device).contiguous(memory_format=self.memory_format)
        threads = torch.get_num_threads()
        small = x.device.type == "cpu" and len(images) < SMALL_BATCH
        if small:
            torch.set_num_threads(1)
        try:
            return x, self.model.predict(x, self._precision_for(len(images)))
        finally:
            if small:
                torch.set_num_threads(threads)

    def _map_batches(self, fn: Callable[[T], R], batches: list[T]) -> list[R]:
        """``[fn(batch) for batch in batches]``, in order. On the CPU, with several torch threads
        and several batches, batches run side by side, one per thread, each on a single
        thread: the many small operations of a step (the LSTM, the heads, the glimpse's
        sampling) split poorly across threads, whole batches do not (docs/design-notes.md)."""
        threads = torch.get_num_threads()
        workers = min(threads, len(batches))
        if workers <= 1 or self.model.prior_pres.device.type != "cpu":
            return [fn(batch) for batch in batches]
        try:
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                return list(pool.map(fn, batches))
        finally:
            torch.set_num_threads(threads)

    def __call__(self, images, batch_size: int = 256, refine: int = 0):
        """Decompose one image or a batch.

        Args:
            images: one image (a path as ``str`` or ``Path``, a PIL image, or an ``(H, W)`` /
                ``(H, W, C)`` array of uint8, uint16 or floats in [0, 1]), or a batch (a
                ``(B, H, W, C)`` array, or a list of single images). Images of another size or
                channel count are converted as ``decompose`` converts files (notices in the
                result's ``notices``).
            batch_size: images per inference batch.
            refine: gradient steps after inference (analysis by synthesis, see the module
                docstring); each result then reports ``reconstruction_error`` ``before`` and
                ``after``, and ``refine_seconds`` (its batch's time per image).

        Returns:
            for one image, its result dict (``count``, ``objects``, ``steps``, as one line of
            ``decompose --json``); for a batch, a list of them, in order.

        Raises:
            UserError: an unreadable image or an unusable array (naming it).
        """
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, np.ndarray) and images.ndim == 4)
        records, _ = self._run([images] if single else list(images), batch_size, refine)
        for record in records:
            if record.error is not None:
                raise UserError(record.error)
        results = [{**r.result, **({"notices": r.notices} if r.notices else {})} for r in records]
        return results[0] if single else results

    def _described(self, x: torch.Tensor, latents, refine: int) -> tuple[list[dict], object]:
        """One batch's results (refined first if ``refine``) and its (refined) latents."""
        errors = None
        if refine > 0:
            start = time.perf_counter()
            latents, *errors = self._refine(x, latents, refine)
            seconds = (time.perf_counter() - start) / len(x)
        results = self._describe(latents)
        if errors is not None:
            for j, result in enumerate(results):
                result["reconstruction_error"] = {"before": round(float(errors[0][j]), 6),
                                                  "after": round(float(errors[1][j]), 6)}
                result["refine_seconds"] = round(seconds, 4)
        return results, latents

    def _describe(self, latents) -> list[dict]:
        """Latents -> one result per image (``count``, ``objects``, ``steps``)."""
        z_pres = (latents.z_pres > 0.5).cpu().tolist()
        prob = np.round(latents.pres_prob.cpu().numpy().astype(np.float64), 4).tolist()
        details = self.model.objects.describe(latents.objects)
        looks = self.model.objects.describe_scene(latents.scene) if latents.scene else [{}] * len(details)
        fields = self.model.objects.scene_fields
        results = []
        for b, steps in enumerate(details):
            count = sum(z_pres[b])
            reached = min(count + 1, len(steps))
            results.append({
                "model": self.kind, "count": count, **looks[b],
                "objects": [{k: steps[i][k] for k in fields} for i in range(count)],
                "steps": [{"step": i + 1, "present": z_pres[b][i], "presence_prob": prob[b][i],
                           **(steps[i] if z_pres[b][i] else {})} for i in range(reached)],
            })
        return results

    def _refine(self, x: torch.Tensor, latents, steps: int):
        """Analysis by synthesis (:func:`inverse_air.refine.refine`): the refined latents and
        each image's reconstruction error (mean squared per pixel, hard render) before and
        after, as numpy arrays."""
        refined, before, after = refine(self.model, x, latents, steps)
        return refined, before.cpu().numpy(), after.cpu().numpy()

    def _run(self, items: list, batch_size: int = 256, refine: int = 0,
             keep: int = 0) -> tuple[list[ImageResult], dict[str, np.ndarray]]:
        """Decompose images (paths, or images in any form :meth:`__call__` takes); returns one
        :class:`ImageResult` per item (in order; an unreadable one holds its error) and, for
        the first ``keep`` readable images, :meth:`_pictures` (empty when there are none).

        Each batch of items is read, inferred (and refined) and described as one piece of
        work, so that batches can run side by side (:meth:`_map_batches`).

        Raises:
            UserError: a batch size below 1, too many refine steps, or batches that do not
                fit in memory (before any image is read).
        """
        check_request(self, batch_size, refine, len(items))
        is_path = [isinstance(item, (str, os.PathLike)) for item in items]
        results = [ImageResult(str(item) if path else f"image {i}") for i, (item, path) in enumerate(zip(items, is_path))]

        def work(start: int):
            good, arrays = [], []
            for i in range(start, min(start + batch_size, len(items))):
                r = results[i]
                try:
                    array, r.notices = (read_image(items[i], self.size, self.channels) if is_path[i]
                                        else as_input(items[i], self.size, self.channels, r.path))
                except UserError as e:
                    r.error = str(e)
                    continue
                good.append(r)
                arrays.append(array)
            if not arrays:
                return None
            x, latents = self._infer(np.stack(arrays))
            described, latents = self._described(x, latents, refine)
            for r, result in zip(good, described):
                r.result = result
            return (x[:keep], _first(latents, min(keep, len(x)))) if keep else None

        pictures: list[dict[str, np.ndarray]] = []
        shown = 0
        for kept in self._map_batches(work, list(range(0, len(items), batch_size))):
            if kept is not None and shown < keep:
                x, latents = kept
                take = min(keep - shown, len(x))
                pictures.append(self._pictures(x[:take], _first(latents, take)))
                shown += take
        return results, {k: np.concatenate([p[k] for p in pictures]) for k in (pictures[0] if pictures else {})}

    @torch.no_grad()
    def _pictures(self, x: torch.Tensor, latents) -> dict[str, np.ndarray]:
        """What an overlay figure shows (:func:`inverse_air.viz.overlay_figure`): ``inputs`` and
        ``recons`` ``(B, S, S, C)`` uint8, each step's ``masks`` ``(B, N, S, S)`` (3D: where its
        object's silhouette; 2D: its window) and ``present`` ``(B, N)``."""
        masks = self.model.objects.outline_masks(latents.z_pres, latents.objects, latents.scene or None)
        return {"inputs": to_uint8(x), "recons": to_uint8(self.model.reconstruct(latents)),
                "masks": masks.cpu().numpy(), "present": latents.z_pres.cpu().numpy() > 0.5}


def check_request(decomposer: Decomposer, batch_size: int, refine: int, images: int) -> None:
    """Refuse (``UserError``) a batch size below 1, a negative or huge ``refine``, or batches
    (side by side, one per core) that do not fit in memory."""
    from .evaluate import check_batch

    check_steps(refine)
    batch = min(batch_size, images) if isinstance(batch_size, int) and batch_size > 0 else batch_size
    on_cpu = decomposer.model.prior_pres.device.type == "cpu"  # batches run side by side there only
    at_once = min(cpu_count(), -(-images // batch)) if on_cpu and isinstance(batch, int) and batch > 0 and images else 1
    check_batch(decomposer.model, batch_size, max(1, images), at_once)


def _first(latents, n: int):
    """The first ``n`` images' latents."""
    return latents._replace(**{f: getattr(latents, f)[:n] for f in latents._fields
                               if isinstance(getattr(latents, f), torch.Tensor)},
                            objects={k: v[:n] for k, v in latents.objects.items()},
                            scene={k: v[:n] for k, v in latents.scene.items()})
