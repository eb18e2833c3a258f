"""3D AIR on scenes whose look varies: train from scratch, score on held-out scenes with each
factor of the look varied alone, with none and with all, write JSON.

    python benchmarks/looks3d.py [--seeds 0,1,2] [--steps N] [--threads T] [--work DIR]
                                 [--out benchmarks/results/looks3d.json] [--tests-only CHECKPOINT]

Datasets (rendered once into ``--work``, reused by later runs; 64x64, 0-3 objects):
- ``train``: 20,000 scenes with everything varied (the ELBO phase and the monitor read it), seed 0;
- ``test-fixed``: 2,000 scenes of today's fixed look (``--fixed-appearance``), seed 1001;
- ``test-camera``, ``test-light``, ``test-ground``, ``test-color``, ``test-size``: 2,000 scenes each
  with that factor varied alone (the others at the render config's value), seeds 1002-1006;
- ``test-all``: 2,000 scenes with everything varied, seed 1000.

Each seed trains the default 3D preset with this project's ``train`` (library call; sleep,
then ELBO), recording its training seconds, then ``evaluate`` scores the checkpoint on every
test set. ``--tests-only CHECKPOINT`` scores a checkpoint (e.g. the shipped model) without
training. Results are merged into the JSON file under a lock (runs of the same name replaced),
so seeds can run one at a time or side by side. ``python benchmarks/tables.py looks3d`` prints
the tables of docs/performance.md from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from common import Results
from inverse_air.data import render_dataset
from inverse_air.evaluate import evaluate
from inverse_air.kinds import KINDS
from inverse_air.objects3d.look import GROUPS, TRUTH_ORDER
from inverse_air.plan import run_config_for
from inverse_air.train import train

TESTS = {"fixed": (1001, GROUPS), **{f: (1002 + i, tuple(x for x in GROUPS if x != f)) for i, f in enumerate(GROUPS)},
         "all": (1000, ())}
"""Test set -> (seed, groups of the look held fixed)."""

KEYS = ("count_accuracy", "identity_accuracy", "position_error", "cube_yaw_error_deg",
        *(f.metric for f in TRUTH_ORDER))


def dataset(work: Path, name: str) -> Path:
    base = KINDS["3d"].dataset
    if name == "train":
        num, seed, split, fixed = 20000, 0, "train", ()
    else:
        (seed, fixed), num, split = TESTS[name.removeprefix("test-")], 2000, "test"
    scenes = dataclasses.replace(base.scenes, variation=base.scenes.variation.fixing(fixed))
    config = dataclasses.replace(base, num=num, seed=seed, split=split, scenes=scenes)
    return render_dataset(work / "data" / name, config, workers=2, progress=False)


def score(work: Path, checkpoint: Path) -> dict:
    out = {}
    for test in TESTS:
        metrics = evaluate(checkpoint, dataset(work, f"test-{test}"))
        out[test] = {k: metrics[k] for k in KEYS if k in metrics}
        print(json.dumps({test: {k: (v["median"] if isinstance(v, dict) else v) for k, v in out[test].items()}}),
              flush=True)
    return out


def run(work: Path, seed: int, steps: int | None) -> dict:
    name = f"air-seed{seed}"
    out = work / "runs" / name
    config = run_config_for(dataset(work, "train"), "3d", {"seed": seed, **({"steps": steps} if steps else {})}, {})
    resume = (out / "checkpoint.pt").exists()
    start = time.perf_counter()
    last = train(config, out, resume=resume, progress=True)
    seconds = time.perf_counter() - start
    return {"name": name, "train_seconds": round(seconds, 1), "resumed": resume, "threads": torch.get_num_threads(),
            "train": {k: getattr(config.train, k) for k in ("steps", "batch_size", "elbo_batch_size", "sleep_fraction",
                                                            "sleep_pool", "sleep_refresh", "seed")},
            "last_log": last, "tests": score(work, out / "checkpoint.pt")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=None, help="training steps [default: the 3D preset's]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    parser.add_argument("--work", type=Path, default=Path("out/bench-looks3d"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/looks3d.json"))
    parser.add_argument("--tests-only", type=Path, default=None, metavar="CHECKPOINT")
    parser.add_argument("--name", default=None, help="the result's name with --tests-only [default: the file's stem]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = Results(args.out)
    if args.tests_only:
        results.set("scored", args.name or args.tests_only.stem, {"checkpoint": str(args.tests_only),
                                                                 "tests": score(args.work, args.tests_only)})
        return
    for seed in map(int, args.seeds.split(",")):
        results.set("runs", f"air-seed{seed}", run(args.work, seed, args.steps))


if __name__ == "__main__":
    main()
