"""2D AIR on folders of unlabelled multi-sprite images from two generators of our own.

    python benchmarks/spritesets.py --generator filled|outlined [--seeds 0] [--minutes 20]
                                    [--steps 4000] [--eval-every 250] [--train-images 20000]
                                    [--work out/bench-spritesets] [--threads 1]
                                    [--train FIELD=VALUE ...] [--set FIELD=VALUE ...]

Two generators (64x64 RGB, 0-4 shapes each, the count uniform, no two shapes' bounding squares
closer than one pixel, so nothing is hidden):

- ``filled``: filled squares, circles, triangles, diamonds and plus signs of 8-16 px on black,
  each in a saturated colour;
- ``outlined``: rings, square frames, diamond frames (2 px lines) and thin crosses of 10-18 px
  in light colours on a dark blue ground.

Both are integer code seeded by ``(generator, seed)``: coverage is counted on a 4x4 grid of
sample points per pixel with integer geometry, and colours are blended in integers, so the
bytes of every image are the same on every machine. A shape's label is its bounding square as
a 2D box ``[scale, x, y]`` (side over the image side; centre with the image from -1 to 1), in
the folder label format that ``evaluate`` reads (``labels.jsonl``: ``{"image", "count",
"boxes"}``; README, "Training on a folder of your own images").

Per generator, composed once into ``--work/GENERATOR``: ``train/`` (``--train-images`` PNGs,
seed 0; their labels kept aside in ``train-labels.jsonl`` beside the folder, which nothing
reads) and ``test/`` (1,000 PNGs, seed 1000, with ``labels.jsonl``).

Each seed trains a new model on ``train/`` as ``inverse-air train --model 2d --data train/
--max-objects 4 --steps N --seed S`` does (the folder presets; every other setting derived from
the images), scores it with ``evaluate`` on ``test/`` every ``--eval-every`` steps (scoring time
is taken out of the training clock) and stops at ``--minutes`` of training or ``--steps``. Each
score also records the monitoring ELBO (held-out training images, no labels), so the
label-free choice of a checkpoint (the best monitoring ELBO, what ``best.pt`` keeps) can be
compared with the last one. Results: ``benchmarks/results/spritesets-GENERATOR.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from common import Results, folder_scores, settings, train_scored
from inverse_air.files import write_image, write_text
from inverse_air.plan import prepare_run
from inverse_air.train import CHECKPOINT

RESULTS = Path("benchmarks/results")
SIZE, MAX_COUNT, TEST_IMAGES = 64, 4, 1000
SUB = 4
"""Sample points per pixel side (coverage in 1/16ths)."""
LINE = 2
"""Line width of the outlined shapes, pixels."""


# ---------------------------------------------------------------------------- shapes
def coverage(shape: str, side: int) -> np.ndarray:
    """``(side, side)`` int64 coverage of ``shape`` filling a ``side``-pixel square, in
    ``0..SUB**2`` (sample points inside). Integer geometry: sample ``i`` of the ``2n``-unit
    square (``n = side * SUB``) sits at ``2i + 1``, the centre at ``n``; one pixel is
    ``2 * SUB`` units."""
    n = side * SUB
    u = 2 * np.arange(n, dtype=np.int64) + 1 - n  # sample offsets from the centre, -n < u < n
    dx, dy = np.abs(u)[None, :], np.abs(u)[:, None]
    y = (u + n)[:, None]  # from the top, 0..2n
    line = 2 * SUB * LINE
    if shape == "square":
        inside = np.ones((n, n), bool)
    elif shape == "circle":
        inside = dx ** 2 + dy ** 2 <= n ** 2
    elif shape == "triangle":  # apex at the top centre, base along the bottom
        inside = 2 * dx <= y
    elif shape == "diamond":
        inside = dx + dy <= n
    elif shape == "plus":
        inside = (3 * dx <= n) | (3 * dy <= n)
    elif shape == "ring":
        d2 = dx ** 2 + dy ** 2
        inside = (d2 <= n ** 2) & (d2 > (n - line) ** 2)
    elif shape == "frame":
        inside = np.maximum(dx, dy) > n - line
    elif shape == "diamond_frame":  # a line of width LINE measured across it: LINE * sqrt(2) along an axis
        inside = (dx + dy <= n) & (dx + dy > n - (line * 1414) // 1000)
    elif shape == "cross":  # thin diagonal arms
        inside = (np.abs(dx - dy) * 1000 <= line * 707) & (dx + dy <= (n * 1414) // 1000)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    inside = np.broadcast_to(inside, (n, n))
    return inside.reshape(side, SUB, side, SUB).sum(axis=(1, 3)).astype(np.int64)


class Generator:
    """One multi-sprite generator (see the module docstring)."""

    def __init__(self, name: str, shapes: tuple[str, ...], sides: tuple[int, int], background: tuple[int, int, int],
                 colours):
        self.name, self.shapes, self.sides, self.background = name, shapes, sides, np.asarray(background, np.int64)
        self.colours = colours  # rng -> (3,) int64 in 0..255
        self._cover = {(s, side): coverage(s, side) for s in shapes for side in range(sides[0], sides[1] + 1)}

    def compose(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """One image ``(S, S, 3)`` uint8 with ``count`` shapes and their boxes ``(count, 3)``."""
        for _ in range(100):  # start over when the shapes placed so far leave no room
            canvas = np.broadcast_to(self.background, (SIZE, SIZE, 3)).copy()
            taken = []
            for _ in range(count):
                for _ in range(200):
                    side = int(rng.integers(self.sides[0], self.sides[1] + 1))
                    left, top = (int(v) for v in rng.integers(0, SIZE - side + 1, size=2))
                    if all(left + side + 1 <= l or l + s + 1 <= left or top + side + 1 <= t or t + s + 1 <= top
                           for l, t, s in taken):
                        break
                else:
                    break
                shape = self.shapes[int(rng.integers(len(self.shapes)))]
                cover = self._cover[(shape, side)][..., None]  # (side, side, 1) in 0..16
                patch = canvas[top:top + side, left:left + side]
                full = SUB * SUB
                canvas[top:top + side, left:left + side] = (patch * (full - cover) + self.colours(rng) * cover
                                                            + full // 2) // full
                taken.append((left, top, side))
            if len(taken) == count:
                boxes = [(side / SIZE, (2 * left + side) / SIZE - 1, (2 * top + side) / SIZE - 1)
                         for left, top, side in taken]
                return canvas.astype(np.uint8), np.asarray(boxes, np.float64).reshape(count, 3)
        raise RuntimeError(f"could not place {count} shapes on a {SIZE}x{SIZE} image")


def _saturated(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: one channel 255, one 0, one anywhere, in a random order."""
    rgb = np.array([255, 0, int(rng.integers(0, 256))], np.int64)
    return rgb[rng.permutation(3)]


def _light(rng: np.random.Generator) -> np.ndarray:
    """A light colour: every channel 140-255, one of them 255."""
    rgb = rng.integers(140, 256, size=3).astype(np.int64)
    rgb[int(rng.integers(3))] = 255
    return rgb


GENERATORS = {
    "filled": Generator("filled", ("square", "circle", "triangle", "diamond", "plus"), (8, 16), (0, 0, 0),
                        _saturated),
    "outlined": Generator("outlined", ("ring", "frame", "diamond_frame", "cross"), (10, 18), (20, 28, 70), _light),
}


# ---------------------------------------------------------------------------- the folders
def make_folder(generator: Generator, folder: Path, labels: Path, n: int, seed: int) -> Path:
    """``n`` images as PNGs in ``folder`` and their labels in ``labels`` (once: a folder whose
    labels file exists is complete, since that is written last)."""
    if labels.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, sorted(GENERATORS).index(generator.name)])
    lines = []
    for i in range(n):
        count = int(rng.integers(0, MAX_COUNT + 1))
        image, boxes = generator.compose(rng, count)
        name = f"{generator.name}-{i:06d}.png"
        write_image(folder / name, image)
        lines.append(json.dumps({"image": name, "count": count,
                                 "boxes": [[round(float(v), 5) for v in box] for box in boxes]}))
    write_text(labels, "\n".join(lines) + "\n")
    return folder


def folders(generator: Generator, work: Path, train_images: int) -> tuple[Path, Path]:
    root = work / generator.name
    train = make_folder(generator, root / "train", root / "train-labels.jsonl", train_images, seed=0)  # aside
    test = make_folder(generator, root / "test", root / "test" / "labels.jsonl", TEST_IMAGES, seed=1000)
    return train, test


# ---------------------------------------------------------------------------- training
def per_count(confusion: list[list[int]]) -> dict[str, float | None]:
    """Count accuracy among the test images of each true count."""
    c = np.asarray(confusion)
    return {str(n): (round(float(c[n, n] / c[n].sum()), 4) if n < len(c) and c[n].sum() else None)
            for n in range(MAX_COUNT + 1)}


def train_seed(generator: str, work: Path, results: Results, train: Path, test: Path, seed: int, steps: int,
               eval_every: int, budget_s: float, train_overrides: dict, air_overrides: dict, tag: str) -> dict:
    name = f"{tag}seed{seed}"
    out = work / generator / "runs" / name
    if out.exists():  # a fresh run each time: the clock of a resumed one would not be comparable
        shutil.rmtree(out)
    config, dataset = prepare_run(train, "2d", {"steps": steps, "seed": seed, "checkpoint_every": eval_every,
                                                **train_overrides}, {"max_steps": MAX_COUNT, **air_overrides})
    air, tc = config.air, config.train
    curve: list[dict] = []
    entry = {"generator": generator, "seed": seed, "train_images": len(dataset), "budget_s": budget_s,
             "curve": curve, "overrides": {"train": train_overrides, "model": air_overrides},
             "model": {"image_size": air.image_size, "channels": air.channels, "max_objects": air.max_steps,
                       "window_size": air.objects.window_size, "pixel_sigma": air.pixel_sigma, "dair": air.dair,
                       "object_size_px": round(air.objects.scale_prior_mean * air.image_size, 2),
                       "count_prior": list(air.count_prior), "composite": air.objects.composite},
             "train": {k: getattr(tc, k) for k in ("steps", "elbo_batch_size", "elbo_lr", "baseline_lr", "seed",
                                                   "presence_anneal_steps", "presence_anneal_start")},
             "threads": torch.get_num_threads()}

    def score(trainer) -> dict:
        monitor = trainer.monitor()
        return {**folder_scores(trainer.out / CHECKPOINT, test), "monitor_elbo": round(monitor["monitor_elbo"], 2),
                "monitor_count_hist": monitor["monitor_count_hist"]}

    train_scored(config, out, progress=False, dataset=dataset, score=score, curve=curve,
                 on_point=lambda: results.set("runs", name, entry), stop=lambda step, train_s: train_s >= budget_s,
                 shown=("step", "train_s", "count_accuracy", "count_accuracy_refined", "monitor_elbo",
                        "monitor_count_hist"))
    within = [p for p in curve if p["train_s"] <= budget_s + 1e-6] or curve[:1]
    final, chosen = within[-1], max(within, key=lambda p: p["monitor_elbo"])
    entry["final"] = {"step": final["step"], "minutes": round(final["train_s"] / 60, 2),
                      "count_accuracy": final["count_accuracy"], "per_count": per_count(final["confusion"]),
                      "confusion": final["confusion"], "count_accuracy_refined": final["count_accuracy_refined"],
                      "per_count_refined": per_count(final["confusion_refined"]),
                      "refined_ms_per_image": final["refined_ms_per_image"]}
    entry["best_monitor_elbo"] = {"step": chosen["step"], "minutes": round(chosen["train_s"] / 60, 2),
                                  "count_accuracy": chosen["count_accuracy"],
                                  "per_count": per_count(chosen["confusion"]),
                                  "count_accuracy_refined": chosen["count_accuracy_refined"]}
    entry["best_within_budget"] = max(p["count_accuracy"] for p in within)
    reached = [p for p in curve if p["count_accuracy"] >= 0.97]
    entry["first_97_s"] = reached[0]["train_s"] if reached else None
    results.set("runs", name, entry)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=sorted(GENERATORS), required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time budget per seed")
    parser.add_argument("--steps", type=int, default=4000, help="the run's steps (its learning-rate schedule)")
    parser.add_argument("--eval-every", type=int, default=250, help="steps between held-out scores")
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--work", type=Path, default=Path("out/bench-spritesets"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field other than the folder preset's, for experiments")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="an AIRConfig or Objects2DConfig field other than the folder preset's, for experiments")
    parser.add_argument("--only-data", action="store_true", help="compose the folders and stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = GENERATORS[args.generator]
    train, test = folders(generator, args.work, args.train_images)
    if args.only_data:
        return
    tag = ",".join(args.train + args.set) + "-" if args.train or args.set else ""
    results = Results(RESULTS / f"spritesets-{args.generator}.json")
    results.set("setup", "data", {"generator": args.generator, "shapes": list(generator.shapes),
                                  "sides_px": list(generator.sides), "background": generator.background.tolist(),
                                  "train_images": args.train_images, "test_images": TEST_IMAGES, "size": SIZE,
                                  "counts": f"0-{MAX_COUNT}, uniform",
                                  "target": f">= 97% held-out count accuracy within {args.minutes:g} min"})
    for seed in (int(s) for s in args.seeds.split(",")):
        entry = train_seed(args.generator, args.work, results, train, test, seed, args.steps, args.eval_every,
                           args.minutes * 60, settings(args.train), settings(args.set), tag)
        print(json.dumps({"seed": seed, "final": entry["final"], "best_monitor_elbo": entry["best_monitor_elbo"]}),
              flush=True)


if __name__ == "__main__":
    main()
