"""Checkpoints: one file holding the weights, the full run configuration and, for resuming,
the optimizer state and step.

The file is ``torch.save`` of plain containers of tensors, numbers and strings; it is always
loaded with ``weights_only=True``, so loading never runs code. The configuration is stored as
JSON text, so the model can be rebuilt from the checkpoint alone (:func:`load_model`).
Writes go to a temporary name and are renamed, so a killed run keeps its last good checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

from .air import AIR
from .config import RunConfig, from_dict, to_dict
from .errors import UserError
from .models import MODEL_KINDS, build_model

FORMAT = "inverse-air-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: AIR, config: RunConfig, step: int,
                    optimizer: torch.optim.Optimizer | None = None, **extra) -> None:
    """Write a checkpoint atomically. ``extra`` holds JSON-ready values (e.g. metrics)."""
    path = Path(path)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_kind": config.air.model,
        "config": json.dumps(to_dict(config)), "step": int(step),
        "weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": json.dumps(extra),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, expect_kind: str | None = None) -> dict:
    """Read a checkpoint (never executing code) and check what it is.

    Returns:
        the payload with ``config`` parsed into a :class:`RunConfig` and ``extra`` into a dict.

    Raises:
        UserError: missing, unreadable or corrupted file, a file that is not an inverse-air
            checkpoint, another format version, or a model of another kind than ``expect_kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable checkpoint (corrupted or truncated?): {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an inverse-air checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format {payload.get('format_version')} is not {FORMAT_VERSION}")
    kind = payload.get("model_kind")
    if expect_kind is not None and kind != expect_kind:
        raise UserError(f"{path}: this is a {kind} model checkpoint, expected a {expect_kind} model")
    try:
        payload["config"] = from_dict(RunConfig, json.loads(payload["config"]))
        payload["extra"] = json.loads(payload.get("extra") or "{}")
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: checkpoint configuration unreadable ({e})") from None
    return payload


def load_model(path: str | os.PathLike, expect_kind: str | None = None,
               device: str | torch.device = "cpu") -> tuple[AIR, dict]:
    """Rebuild the model a checkpoint holds, in eval mode on ``device``; returns it and the payload."""
    payload = load_checkpoint(path, expect_kind)
    if payload["config"].air.model not in MODEL_KINDS:
        raise UserError(f"{path}: a {payload['config'].air.model!r} model, a kind this version of "
                        f"inverse-air does not know (known: {', '.join(MODEL_KINDS)})")
    model = build_model(payload["config"].air)
    try:
        model.load_state_dict(payload["weights"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the model its configuration describes "
                        f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), payload


def export_model(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True, **extra) -> dict:
    """A small inference-only copy of a checkpoint: no optimizer state, floating-point weights
    stored as float16 when ``half`` (loading casts them back to the model's float32), the
    configuration and ``extra`` (e.g. provenance; merged over the source's) kept. Written
    atomically. Returns the new payload's ``extra``."""
    payload = load_checkpoint(src)
    weights = {k: (v.half() if half and v.is_floating_point() else v) for k, v in payload["weights"].items()}
    merged = {k: v for k, v in payload["extra"].items() if k != "window"}
    merged.update(extra)
    out = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_kind": payload["model_kind"],
           "config": json.dumps(to_dict(payload["config"])), "step": payload["step"],
           "weights": weights, "optimizer": None, "extra": json.dumps(merged)}
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(out, tmp)
    os.replace(tmp, dst)
    return merged
