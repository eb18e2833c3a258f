"""Checkpoints: one file holding the weights, the full run configuration and, for resuming,
the optimizer state and step. A run that averages its weights (``TrainConfig.weight_average``)
stores the average as ``weights`` (the model) and the weights as trained as ``trained_weights``
(what a resumed run trains on; None otherwise).

The file is ``torch.save`` of plain containers of tensors, numbers and strings; it is always
loaded with ``weights_only=True``, so loading never runs code. The configuration is stored as
JSON text, so the model can be rebuilt from the checkpoint alone (:func:`load_model`).
Writes go to a temporary name and are renamed, so a killed run keeps its last good checkpoint
(the file is serialized in memory first, so a full disk is an ``OSError`` the writer reports in
one line). Reading refuses with one line whatever is not a checkpoint of a known kind: any file
``torch.load`` cannot read, a configuration that does not validate (every field's type and
range, :mod:`inverse_air.config`) or does not match the recorded kind, a step outside the run,
weights that are not finite.

Format 2 stores the kind's settings in ``air.objects`` (``{"kind": ...}``); format-1 files
(every kind's fields side by side in ``air``) are read and converted.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from .air import AIR
from .config import AIRConfig, ConfigError, RunConfig, to_dict
from .errors import UserError
from .files import parse_json, write_bytes
from .kinds import KINDS, read_config, upgrade_v1
from .limits import check_memory

FORMAT = "inverse-air-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def build_model(config: AIRConfig) -> AIR:
    """A freshly initialized :class:`AIR` with the object model of ``config.objects``'s kind."""
    return AIR(config, KINDS[config.kind].build_objects(config))


def _payload(config: RunConfig, step: int, weights: dict, optimizer: dict | None, extra: dict,
             trained: dict | None = None) -> dict:
    """What a checkpoint file holds (see the module docstring)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model_kind": config.air.kind,
            "config": json.dumps(to_dict(config)), "step": int(step), "weights": weights,
            "optimizer": optimizer, "extra": json.dumps(extra), "trained_weights": trained}


def write_tensors(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (tensors, numbers, strings; what ``weights_only`` loading reads) atomically."""
    # Serialized in memory first: torch's file writer reports a full disk as a RuntimeError
    # mid-file, the byte writer as the OSError that files.atomic_path turns into one line.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())


def save_checkpoint(path: str | os.PathLike, model: AIR, config: RunConfig, step: int,
                    optimizer: torch.optim.Optimizer | None = None, trained: AIR | None = None, **extra) -> None:
    """Write a checkpoint atomically. ``extra`` holds JSON-ready values (e.g. metrics).
    ``trained``: where ``model`` holds averaged weights (``TrainConfig.weight_average``), the
    model being trained, whose weights (and ``optimizer``) resume the run."""
    def cpu(m: AIR) -> dict:
        return {k: v.detach().cpu() for k, v in m.state_dict().items()}

    write_tensors(path, _payload(config, step, cpu(model), optimizer.state_dict() if optimizer is not None else None,
                                 extra, cpu(trained) if trained is not None else None))


def load_checkpoint(path: str | os.PathLike, expect_kind: str | None = None) -> dict:
    """Read a checkpoint (never executing code) and check what it is.

    Returns:
        the payload with ``config`` parsed into a :class:`RunConfig` and ``extra`` into a dict.

    Raises:
        UserError: missing, unreadable or corrupted file, a file that is not an inverse-air
            checkpoint, another format version, a kind this version does not know, or a model
            of another kind than ``expect_kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file" if not path.exists()
                        else f"{path}: not a checkpoint file (a directory?)")
    check_memory(2 * path.stat().st_size, f"{path}: loading this {path.stat().st_size:,}-byte checkpoint")
    try:
        with warnings.catch_warnings():  # torch's warnings would come between our lines
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except OSError as e:
        if e.errno is None:  # torch's own errors about the content
            raise UserError(f"{path}: not a readable checkpoint (corrupted, truncated or not a checkpoint?): "
                            f"{_first_line(e)}") from None
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler refused the content
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise UserError(f"{path}: refused: it holds Python objects ({found.group(1)}) that only pickle loads, "
                            f"which can run code from the file; inverse-air loads checkpoints of tensors and "
                            f"plain values only") from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(e))
        raise UserError(f"{path}: not a readable checkpoint (corrupted, truncated or not a checkpoint?): "
                        f"{detail.group(1) if detail else _first_line(e)}") from None
    except Exception as e:  # zip and torch errors alike: whatever it is, it is not ours
        raise UserError(f"{path}: not a readable checkpoint (corrupted, truncated or not a checkpoint?): "
                        f"{_first_line(e)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an inverse-air checkpoint")
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        raise UserError(f"{path}: checkpoint format {version} is not one this version reads "
                        f"({', '.join(map(str, READABLE_VERSIONS))})")
    kind = payload.get("model_kind")
    if kind not in KINDS:
        raise UserError(f"{path}: a {kind!r} model, a kind this version of inverse-air does not know "
                        f"(known: {', '.join(KINDS)})")
    if expect_kind is not None and kind != expect_kind:
        raise UserError(f"{path}: this is a {kind} model checkpoint, expected a {expect_kind} model")
    try:
        if not isinstance(payload.get("config"), str) or not isinstance(payload.get("extra") or "{}", str):
            raise ValueError("configuration is not JSON text")
        config = parse_json(payload["config"], "configuration")
        if version == 1:
            config = {**config, "air": upgrade_v1(config["air"], "air")}
        payload["config"] = read_config(RunConfig, config)
        payload["extra"] = parse_json(payload.get("extra") or "{}", "extra")
        if not isinstance(payload["extra"], dict):
            raise ValueError("extra is not a JSON object")
    except ConfigError as e:
        raise UserError(f"{path}: checkpoint configuration: {e}") from None
    except (UserError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: checkpoint configuration unreadable ({e})") from None
    if payload["config"].air.kind != kind:
        raise UserError(f"{path}: says it is a {kind} model but its configuration is of a "
                        f"{payload['config'].air.kind} model")
    step = payload.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= payload["config"].train.steps:
        raise UserError(f"{path}: checkpoint step {step!r} is not a step of its run "
                        f"(0..{payload['config'].train.steps})")
    weights = payload.get("weights")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise UserError(f"{path}: checkpoint holds no weights")
    trained = payload.setdefault("trained_weights", None)
    if trained is not None and (not isinstance(trained, dict)
                                or not all(isinstance(v, torch.Tensor) for v in trained.values())):
        raise UserError(f"{path}: checkpoint's trained weights are not tensors")
    for name, value in [*weights.items(), *(trained or {}).items()]:
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UserError(f"{path}: weight {name} holds NaN or infinite values")
    return payload


def _first_line(error: Exception, limit: int = 200) -> str:
    """The first line of an error's message (without terminal escapes), of whole sentences
    within ``limit`` characters where it is longer, with its type where it says little."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > limit:
        end = first.rfind(". ", 0, limit)
        first = first[:end + 1] if end > 0 else first[:limit - 3] + "..."
    return first if len(first) > 20 else f"{type(error).__name__} {first}".strip()


def load_model(path: str | os.PathLike, expect_kind: str | None = None,
               device: str | torch.device = "cpu") -> tuple[AIR, dict]:
    """Rebuild the model a checkpoint holds, in eval mode on ``device``; returns it and the payload."""
    payload = load_checkpoint(path, expect_kind)
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
    atomically, in today's format. Returns the new payload's ``extra``."""
    payload = load_checkpoint(src)
    weights = {k: (v.half() if half and v.is_floating_point() else v) for k, v in payload["weights"].items()}
    merged = {k: v for k, v in payload["extra"].items() if k != "window"}
    merged.update(extra)
    write_tensors(dst, _payload(payload["config"], payload["step"], weights, None, merged))
    return merged
