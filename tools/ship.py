"""Ship a trained model: export a small inference-only copy, evaluate that copy on a held-out
set and write its model card.

    python tools/ship.py RUN_DIR/checkpoint.pt --name air3d --test-data DIR \\
        --command "the exact command that trained it"

writes ``NAME.pt`` (float16 weights, no optimizer), ``NAME.md`` and ``NAME.json`` into the
``models/`` folder of the checkpoint's kind (``inverse_air/objects3d/models/`` for 3D,
``inverse_air/objects2d/models/`` for 2D: package data, installed with the package).
The figures in the card are measured here, on the exported file, by ``evaluate``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
from pathlib import Path

import torch

from inverse_air.checkpoint import export_model, load_checkpoint
from inverse_air.cli import format_metrics
from inverse_air.data import ShardDataset
from inverse_air.evaluate import evaluate
from inverse_air.kinds import KINDS



ROOT = Path(__file__).resolve().parent.parent


def models_dir(kind: str) -> Path:
    """Where a kind's shipped models lie (beside the one its record names, or its package's
    ``models/``)."""
    shipped = KINDS[kind].shipped_model
    if shipped is not None:
        return Path(shipped).parent
    return Path(importlib.import_module(type(KINDS[kind].air.objects).__module__).__file__).parent / "models"


def dataset_line(path: str) -> str:
    c = ShardDataset(path).config
    return f"`{path}`: {c.num:,} scenes, counts {list(c.counts)}, seed {c.seed}, split {c.split}"


def network_line(air) -> str:
    def encoder(channels, features):
        return (f"3x3 stride-2 convolutions {list(channels)} -> {features}" if channels
                else f"one linear layer -> {features}")
    g = air.objects
    return (f"image encoder {encoder(air.encoder_channels, air.encoder_features)}; "
            f"{g.glimpse_size}x{g.glimpse_size} glimpse encoder {encoder(g.glimpse_channels, g.glimpse_features)}; "
            f"LSTM {air.lstm_size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--name", required=True, help="file stem in the kind's models/ folder, e.g. air3d")
    parser.add_argument("--test-data", required=True, help="held-out labelled dataset to evaluate on")
    parser.add_argument("--command", required=True, help="the exact command that trained the checkpoint")
    parser.add_argument("--train-threads", type=int, default=None,
                        help="torch threads the training run used [default: this process's]")
    parser.add_argument("--note", default="", help="anything else a reader must know (e.g. about the timing)")
    args = parser.parse_args()

    source = load_checkpoint(args.checkpoint)
    config = source["config"]
    threads = args.train_threads or torch.get_num_threads()
    hardware = (f"{platform.machine()}, {os.cpu_count()} CPU cores, {threads} torch thread"
                f"{'s' if threads != 1 else ''}, no GPU")
    here = models_dir(config.air.kind)
    dst = here / f"{args.name}.pt"
    extra = export_model(args.checkpoint, dst, trained_with=args.command, hardware=hardware)
    metrics = evaluate(dst, args.test_data)
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    minutes = extra.get("time_s", 0.0) / 60
    card = [
        f"# Model card: `{dst.name}`", "",
        f"AIR, model kind `{config.air.kind}`{' (DAIR)' if config.air.dair else ''}, trained by this "
        f"project's own `train` without the dataset's labels"
        f"{' (SUPERVISED comparison)' if config.train.supervised else ''}.", "",
        "## Training", "",
        f"- Command: `{args.command}`",
        f"- Seed: {config.train.seed}; steps: {source['step']:,} "
        f"({config.train.sleep_steps:,} sleep, {source['step'] - config.train.sleep_steps:,} ELBO); "
        f"batch {config.train.batch_size} (ELBO batch {config.train.elbo_batch_size})",
        f"- Network: {network_line(config.air)}",
        f"- Training data: {dataset_line(config.data)}",
        f"- Training time: {minutes:.1f} minutes on {hardware}",
        *([f"- Note: {args.note}"] if args.note else []),
        "",
        "## Held-out evaluation (measured on this file)", "",
        f"`inverse-air evaluate {dst.relative_to(ROOT)} --data {args.test_data}`"
        f" with the test set {dataset_line(args.test_data)}:", "",
        "```", *format_metrics(metrics), "```", "",
        "## File", "",
        f"- {dst.stat().st_size / 1e6:.1f} MB, float16 weights (loaded as float32), no optimizer state; "
        f"loads with `torch.load(..., weights_only=True)`.",
        f"- sha256 `{digest}`",
        "- Full configuration: stored inside the file (`inverse_air.checkpoint.load_checkpoint`).",
        "",
    ]
    (here / f"{args.name}.md").write_text("\n".join(card))
    (here / f"{args.name}.json").write_text(json.dumps({"metrics": metrics, "extra": extra}, indent=2) + "\n")
    print("\n".join(card))


if __name__ == "__main__":
    main()
