"""3D AIR quality benchmark: train from scratch, evaluate on held-out scenes, write JSON.

    python benchmarks/air3d.py [--variants air,supervised,dair] [--seeds 0,1,2] [--steps N]
                               [--work DIR] [--out benchmarks/results/air3d.json]

Datasets (rendered once into ``--work``, reused by later runs):
- ``train``: 20,000 scenes of 0-3 objects, seed 0 (the ELBO and supervised phases read it);
- ``test``: 2,000 held-out scenes of 0-3 objects, seed 1000;
- ``train02`` / ``test3``: 0-2 objects (seed 0) for training, 1,000 scenes of exactly 3
  objects (seed 1001) for testing extrapolation (DAIR).

Variants, each trained with this project's ``train`` (library call) and scored with ``evaluate``:
- ``air``: unsupervised (sleep phase, then ELBO), one run per seed;
- ``supervised``: the same network trained on the dataset's labels, seed 0;
- ``dair``: DAIR trained on 0-2 objects, tested on 3 (and on 0-3), seed 0.

Every run records its wall-clock training time and the network's layer sizes; results are
merged into the JSON file (runs with the same name are replaced) under a lock, so variants and
seeds can run one at a time or side by side (say, one per core with ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import Results
from inverse_air.data import render_dataset
from inverse_air.evaluate import evaluate
from inverse_air.kinds import KINDS
from inverse_air.plan import run_config_for
from inverse_air.train import train

DATASETS = {
    "train": dict(num=20000, counts=(0, 1, 2, 3), seed=0, split="train"),
    "test": dict(num=2000, counts=(0, 1, 2, 3), seed=1000, split="test"),
    "train02": dict(num=20000, counts=(0, 1, 2), seed=0, split="train"),
    "test3": dict(num=1000, counts=(3,), seed=1001, split="test"),
}


def dataset(work: Path, name: str) -> Path:
    import dataclasses

    path = work / "data" / name
    base = KINDS["3d"].dataset  # the fixed look (render-dataset --fixed-appearance): see looks3d.py for looks that vary
    scenes = dataclasses.replace(base.scenes, variation=base.scenes.variation.fixing(base.scenes.variation.varied))
    config = dataclasses.replace(base, scenes=scenes, **DATASETS[name])
    return render_dataset(path, config, workers=2, progress=False)


def run(work: Path, name: str, train_data: str, tests: dict[str, str], train_overrides: dict,
        air_overrides: dict) -> dict:
    out = work / "runs" / name
    config = run_config_for(dataset(work, train_data), "3d", train_overrides, air_overrides)
    resume = (out / "checkpoint.pt").exists()
    start = time.perf_counter()
    last = train(config, out, resume=resume, progress=True)
    seconds = time.perf_counter() - start
    result = {"name": name, "train_data": train_data, "train_seconds": round(seconds, 1),
              "resumed": resume, "train": {k: getattr(config.train, k) for k in ("steps", "batch_size", "elbo_batch_size",
                                                     "sleep_fraction", "seed", "supervised")},
              "dair": config.air.dair,
              "network": {"encoder_channels": config.air.encoder_channels,
                          "glimpse_channels": config.air.objects.glimpse_channels, "lstm_size": config.air.lstm_size},
              "last_log": last}
    for test_name, test_data in tests.items():
        metrics = evaluate(out / "checkpoint.pt", dataset(work, test_data))
        result[test_name] = metrics
        print(json.dumps({name: {test_name: {k: metrics[k] for k in (
            "count_accuracy", "identity_accuracy", "position_error", "cube_yaw_error_deg", "images_per_s")}}}),
            flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="air,supervised,dair")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the 'air' variant")
    parser.add_argument("--steps", type=int, default=None, help="training steps [default: TrainConfig]")
    parser.add_argument("--work", type=Path, default=Path("out/bench-air3d"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/air3d.json"))
    args = parser.parse_args()
    steps = {"steps": args.steps} if args.steps else {}
    results = Results(args.out)
    variants = args.variants.split(",")
    todo = []
    if "air" in variants:
        todo += [(f"air-seed{s}", "train", {"test": "test"}, {"seed": int(s), **steps}, {})
                 for s in args.seeds.split(",")]
    if "supervised" in variants:
        todo.append(("supervised-seed0", "train", {"test": "test"}, {"seed": 0, "supervised": True, **steps}, {}))
    if "dair" in variants:
        todo.append(("dair02-seed0", "train02", {"test3": "test3", "test": "test"}, {"seed": 0, **steps},
                     {"dair": True}))
    for name, train_data, tests, train_overrides, air_overrides in todo:
        results.set("runs", name, run(args.work, name, train_data, tests, train_overrides, air_overrides))


if __name__ == "__main__":
    main()
