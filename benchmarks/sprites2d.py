"""2D AIR on a folder of images nobody labelled: multi-sprites, through ``train``'s folder path.

    python benchmarks/sprites2d.py [--seeds 0,1,2] [--minutes 20] [--steps 4000]
                                   [--eval-every 250] [--train-images 20000]
                                   [--work out/bench-sprites2d] [--out benchmarks/results/sprites2d.json]
                                   [--threads 1]

Data (composed once into ``--work`` by the composer below; reused by later runs):
- ``train/``: ``--train-images`` PNGs, 64x64 RGB, 0-4 coloured shapes each (seed 0), and no
  labels: their ground truth is kept aside in ``train-labels.jsonl`` beside the folder, which
  nothing reads;
- ``test/``: 1,000 held-out PNGs (seed 1000) with their ``labels.jsonl`` (count and boxes).

Each seed trains a new 2D model on ``train/`` exactly as ``inverse-air train --model 2d --data
train/ --max-objects 4 --steps N --seed S`` does (:func:`inverse_air.plan.prepare_run`: every
other setting the defaults derive from the images: 64x64 RGB, object size 16 px, window 16),
is scored every ``--eval-every`` steps with :func:`inverse_air.evaluate.evaluate` on ``test/``
(the scoring time is taken out of the training clock), and stops at ``--minutes`` of training
or ``--steps``. The result of a seed is its last score within the budget.

Multi-sprites: coloured shapes on a black canvas, composed with numpy (no torch). Each image
is ``size x size`` RGB with 0..``max_count`` shapes (the count uniform): squares, circles and
upward triangles, each of a random side in ``[min_side, max_side]`` pixels and a random
saturated colour (hue uniform, saturation 0.6-1, value 0.7-1), at a uniformly random position
inside the canvas. Shapes do not overlap: their bounding squares keep at least one pixel
between them (no occlusion). Edges are anti-aliased (4x4 supersampling). A shape's label is
its bounding square as a 2D box ``(scale, x, y)`` (the box convention of
:mod:`inverse_air.objects2d.render2d`: side over canvas side, centre with the canvas from -1
to 1).
"""

from __future__ import annotations

import argparse
import colorsys
import json
from pathlib import Path

import numpy as np
import torch

from common import Results, folder_scores, settings, train_scored
from inverse_air.files import write_image, write_text
from inverse_air.plan import prepare_run
from inverse_air.train import CHECKPOINT

RESULTS = Path("benchmarks/results")
TEST_IMAGES = 1000

SHAPES = ("square", "circle", "triangle")
SUPERSAMPLE = 4


def shape_mask(shape: str, side: int) -> np.ndarray:
    """``(side, side)`` float32 coverage in [0, 1] of a shape filling its bounding square."""
    n = side * SUPERSAMPLE
    u = (np.arange(n) + 0.5) / n  # sample centres in [0, 1]
    x, y = np.meshgrid(u, u, indexing="xy")
    if shape == "square":
        inside = np.ones((n, n), bool)
    elif shape == "circle":
        inside = (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25
    else:  # apex at the top centre, base along the bottom
        inside = np.abs(x - 0.5) <= 0.5 * y
    return inside.reshape(side, SUPERSAMPLE, side, SUPERSAMPLE).mean(axis=(1, 3)).astype(np.float32)


class Sprites:
    """Composes multi-sprites images (see the module docstring)."""

    def __init__(self, size: int = 64, max_count: int = 4, min_side: int = 10, max_side: int = 18):
        self.size, self.max_count, self.min_side, self.max_side = size, max_count, min_side, max_side
        self._masks = {(s, side): shape_mask(s, side) for s in SHAPES for side in range(min_side, max_side + 1)}

    def compose(self, rng: np.random.Generator, count: int):
        """One image ``(S, S, 3)`` uint8, its boxes ``(count, 3)`` and shape names."""
        S = self.size
        for _ in range(100):  # start over when the shapes placed so far leave no room
            canvas = np.zeros((S, S, 3), np.float32)
            taken, boxes, names = [], [], []
            for _ in range(count):
                for _ in range(200):
                    side = int(rng.integers(self.min_side, self.max_side + 1))
                    left, top = (int(v) for v in rng.integers(0, S - side + 1, size=2))
                    if all(left + side + 1 <= l or l + s + 1 <= left or top + side + 1 <= t or t + s + 1 <= top
                           for l, t, s in taken):
                        break
                else:
                    break
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
                mask = self._masks[(shape, side)]
                canvas[top:top + side, left:left + side] += mask[..., None] * np.asarray(rgb, np.float32)
                taken.append((left, top, side))
                boxes.append((side / S, 2 * (left + side / 2) / S - 1, 2 * (top + side / 2) / S - 1))
                names.append(shape)
            if len(taken) == count:
                image = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
                return image, np.asarray(boxes, np.float32).reshape(count, 3), names
        raise RuntimeError(f"could not place {count} shapes on a {S}x{S} canvas")

    def batch(self, rng: np.random.Generator, n: int):
        """``n`` images ``(n, S, S, 3)`` uint8 with their counts ``(n,)`` and boxes ``(n, K, 3)``."""
        counts = rng.integers(0, self.max_count + 1, size=n)
        images = np.zeros((n, self.size, self.size, 3), np.uint8)
        boxes = np.zeros((n, self.max_count, 3), np.float32)
        for i, c in enumerate(counts):
            images[i], b, _ = self.compose(rng, int(c))
            boxes[i, :c] = b
        return images, counts.astype(np.int64), boxes


# ---------------------------------------------------------------------------- the folders
def labels_line(name: str, count: int, boxes: np.ndarray) -> str:
    return json.dumps({"image": name, "count": int(count),
                       "boxes": [[round(float(v), 5) for v in box] for box in boxes[:count]]})


def make_folder(folder: Path, labels: Path, n: int, seed: int) -> Path:
    """``n`` sprites images as PNGs in ``folder`` and their labels in ``labels`` (once: a folder
    whose labels file exists is complete, since that is written last)."""
    if labels.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sprites, rng = Sprites(), np.random.default_rng(seed)
    lines = []
    for start in range(0, n, 500):
        images, counts, boxes = sprites.batch(rng, min(500, n - start))
        for i, (image, count, box) in enumerate(zip(images, counts, boxes)):
            name = f"sprite-{start + i:06d}.png"
            write_image(folder / name, image)
            lines.append(labels_line(name, count, box))
    write_text(labels, "\n".join(lines) + "\n")
    return folder


def folders(work: Path, train_images: int) -> tuple[Path, Path]:
    train = make_folder(work / "train", work / "train-labels.jsonl", train_images, seed=0)  # labels aside
    test = make_folder(work / "test", work / "test" / "labels.jsonl", TEST_IMAGES, seed=1000)
    return train, test


# ---------------------------------------------------------------------------- training
def train_seed(work: Path, results: Results, train: Path, test: Path, seed: int, steps: int,
               eval_every: int, budget_s: float, air_overrides: dict | None = None, tag: str = "") -> dict:
    name = f"{tag}seed{seed}"
    out = work / "runs" / name
    if out.exists():  # a fresh run each time: the clock of a resumed one would not be comparable
        import shutil

        shutil.rmtree(out)
    config, dataset = prepare_run(train, "2d", {"steps": steps, "seed": seed, "checkpoint_every": eval_every},
                                  {"max_steps": 4, **(air_overrides or {})})
    air, tc = config.air, config.train
    curve: list[dict] = []
    entry = {"seed": seed, "threads": torch.get_num_threads(), "train_images": len(dataset), "budget_s": budget_s,
             "curve": curve, "overrides": air_overrides or {},
             "model": {"image_size": air.image_size, "channels": air.channels, "max_objects": air.max_steps,
                       "window_size": air.objects.window_size, "pixel_sigma": air.pixel_sigma, "dair": air.dair,
                       "object_size_px": round(air.objects.scale_prior_mean * air.image_size, 2),
                       "count_prior": list(air.count_prior), "composite": air.objects.composite},
             "train": {k: getattr(tc, k) for k in ("steps", "elbo_batch_size", "elbo_lr", "baseline_lr", "seed",
                                                   "presence_anneal_steps", "presence_anneal_start")}}

    def score(trainer) -> dict:
        return {**folder_scores(trainer.out / CHECKPOINT, test), "monitor_elbo": round(trainer.monitor()["monitor_elbo"], 2)}

    train_scored(config, out, progress=False, dataset=dataset, score=score, curve=curve,
                 on_point=lambda: results.set("runs", name, entry), stop=lambda step, train_s: train_s >= budget_s)
    within = [p for p in curve if p["train_s"] <= budget_s + 1e-6] or curve[:1]
    reached = [p for p in curve if p["count_accuracy"] >= 0.97]
    entry["final"] = within[-1]
    entry["best_within_budget"] = max(p["count_accuracy"] for p in within)
    entry["first_97_s"] = reached[0]["train_s"] if reached else None
    results.set("runs", name, entry)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time budget per seed")
    parser.add_argument("--steps", type=int, default=4000, help="the run's steps (its learning-rate schedule)")
    parser.add_argument("--eval-every", type=int, default=250, help="steps between held-out scores")
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--work", type=Path, default=Path("out/bench-sprites2d"))
    parser.add_argument("--out", type=Path, default=RESULTS / "sprites2d.json")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a model setting other than the defaults (AIRConfig or Objects2DConfig field; "
                             "the runs are named FIELD=VALUE,...-seedS), for experiments")
    args = parser.parse_args()
    overrides = settings(args.set)
    tag = ",".join(args.set) + "-" if args.set else ""
    if args.threads:
        torch.set_num_threads(args.threads)
    results = Results(args.out)
    train, test = folders(args.work, args.train_images)
    results.set("setup", "data", {"train_images": args.train_images, "test_images": TEST_IMAGES, "size": 64,
                                  "counts": "0-4, uniform", "target": ">= 97% held-out count accuracy "
                                  f"within {args.minutes:g} min, every seed"})
    for seed in (int(s) for s in args.seeds.split(",")):
        entry = train_seed(args.work, results, train, test, seed, args.steps, args.eval_every, args.minutes * 60,
                           overrides, tag)
        print(json.dumps({"seed": seed, "final": {k: entry["final"][k] for k in ("step", "train_s", "count_accuracy")},
                          "first_97_s": entry["first_97_s"]}), flush=True)


if __name__ == "__main__":
    main()
