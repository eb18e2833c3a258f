"""decompose --refine on held-out 3D scenes: the amortized answer and the refined one, scored
side by side, with the cost per image; writes JSON.

    python benchmarks/refine3d.py [--models air3d-looks,air3d] [--sets all,fixed] [--num 100]
                                  [--steps 0,30] [--threads 1] [--batch 25] [--work DIR]
                                  [--teacher] [--out benchmarks/results/refine3d.json]

The test sets are ``benchmarks/looks3d.py``'s (rendered into ``--work`` if absent; ``fixed``:
the fixed look, ``all``: everything varied, or one factor's name); the first ``--num`` scenes of
each are decomposed in float32 in batches of ``--batch``, refined with each ``--steps`` (0: the
fast path) and scored with ``evaluate``'s metrics. Each result also gives the reconstruction
error (median before and after), the fraction of images whose error fell, the seconds per
image of refinement and the count's confusion matrix (rows: the true count). Results are merged
into the JSON under ``refine3d.<model>.<set>.steps<K>``.

``--teacher`` scores what training's teacher (``TrainConfig.teacher_images``) would teach: the
count searched too and each identity of every object tried (``.teacher`` in the names); a
``--models`` entry may be a checkpoint (named by its run directory), e.g. a run of
``benchmarks/adapt3d.py --model scratch``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from common import Results
from inverse_air.data import open_dataset
from inverse_air.decompose import Decomposer
from inverse_air.evaluate import batches
from inverse_air.kinds import KINDS
from inverse_air.refine import refine
from looks3d import KEYS, TESTS, dataset


def scenes(work: Path, name: str, num: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first ``num`` images of a looks3d test set and their ground truth."""
    truths: list[dict] = []
    images = next(batches(open_dataset(dataset(work, f"test-{name}"), "3d", 64, 3), num, truths))
    truth = {k: np.concatenate([t[k] for t in truths])[:num] for k in truths[0]}
    return images, truth


def score(model: str, images: np.ndarray, truth: dict, steps: int, batch: int, teacher: bool = False) -> dict:
    decomposer = Decomposer(model, precision="fp32")
    kind = KINDS["3d"]
    preds, before, after, seconds = [], [], [], 0.0
    for start in range(0, len(images), batch):
        x, latents = decomposer._infer(images[start:start + batch])
        if steps or teacher:
            t0 = time.perf_counter()
            latents, b, a = refine(decomposer.model, x, latents, steps, **(
                {"count_search": True, "unsure_below": math.inf} if teacher else {}))
            seconds += time.perf_counter() - t0
            before.append(b.numpy())
            after.append(a.numpy())
        preds.append(kind.codec.to_arrays(latents))
    pred = {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}
    metrics = kind.metrics(truth, pred)
    out = {k: (metrics[k]["median"] if isinstance(metrics[k], dict) else metrics[k]) for k in KEYS if k in metrics}
    out["confusion"] = metrics["confusion"]  # rows: the true count, columns: the answer's
    if steps or teacher:
        before, after = np.concatenate(before), np.concatenate(after)
        out.update({"reconstruction_error_before": float(np.median(before)),
                    "reconstruction_error_after": float(np.median(after)),
                    "lower_fraction": float(np.mean(after < before)), "never_higher": bool((after <= before).all()),
                    "refine_seconds_per_image": seconds / len(images)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="air3d-looks,air3d")
    parser.add_argument("--sets", default="all,fixed")
    parser.add_argument("--num", type=int, default=100)
    parser.add_argument("--steps", default="0,30")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--work", type=Path, default=Path("out/bench-looks3d"))
    parser.add_argument("--teacher", action="store_true",
                        help="the search of training's teacher: the count too, each identity of every object")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/refine3d.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = Results(args.out)
    for name in args.sets.split(","):
        if name not in TESTS:
            parser.error(f"--sets: {name!r} is not one of {', '.join(TESTS)}")
        images, truth = scenes(args.work, name, args.num)
        for model in args.models.split(","):
            label = Path(model).parent.name if model.endswith(".pt") else model
            for steps in map(int, args.steps.split(",")):
                key = f"{label}.{name}.steps{steps}" + (".teacher" if args.teacher else "")
                result = {"num": args.num, "batch": args.batch,
                          **score(model, images, truth, steps, args.batch, args.teacher)}
                results.set("refine3d", key, result)
                print(json.dumps({key: result}), flush=True)


if __name__ == "__main__":
    main()
