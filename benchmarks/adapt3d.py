"""Training a 3D model by the ELBO alone on unlabelled images of one look: adapting a trained
model (``train --init``) or a new one (``--model scratch``, the paper's method); held-out count
and identity before and after, with the curve in between; writes JSON.

    python benchmarks/adapt3d.py [--model air3d-looks|scratch] [--look color] [--train-images 5000]
                                 [--minutes 15] [--steps 3000] [--eval-every 100] [--seed 0]
                                 [--threads 1] [--score-signal normalized] [--elbo-lr LR] [--train FIELD=VALUE]
                                 [--set FIELD=VALUE] [--tag TAG] [--resume]
                                 [--work out/bench-adapt3d]
                                 [--out benchmarks/results/adapt3d.json]

``--look`` is one of ``benchmarks/looks3d.py``'s test sets (``fixed``; a factor of the look
varied alone: ``camera``, ``light``, ``ground``, ``color``, ``size``; or ``all``). The training
images are rendered by this project's renderer with that look (seed 3000, ``--train-images``
scenes; their labels are not read), the held-out set is looks3d's (2,000 scenes, its own seed).
The model is ``train --init MODEL --data TRAIN`` as a user runs it (or ``train --model 3d
--sleep-fraction 0 --data TRAIN`` for ``scratch``; :func:`inverse_air.plan.prepare_run`),
scored with ``evaluate`` every ``--eval-every`` steps (scoring time is not training time) until
``--minutes`` of training or ``--steps``. Results are merged into the JSON under
``adapt3d.<model>.<look>.seed<S>.<score signal>`` (and any ``--train`` / ``--set``).
``--resume`` goes on with that row's run (its last checkpoint, its clock and its curve) to a
longer ``--minutes``: a 30-minute row becomes a 60-minute one for 30 minutes more.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from common import Results, settings, train_scored
from inverse_air.data import render_dataset
from inverse_air.decompose import resolve_model
from inverse_air.evaluate import evaluate
from inverse_air.kinds import KINDS
from inverse_air.plan import prepare_run
from inverse_air.train import CHECKPOINT
from looks3d import TESTS, dataset

KEYS = ("count_accuracy", "identity_accuracy", "position_error", "cube_yaw_error_deg")


def scored(metrics: dict) -> dict:
    return {k: (metrics[k]["median"] if isinstance(metrics[k], dict) else metrics[k]) for k in KEYS if k in metrics}


def train_images(work: Path, look: str, num: int) -> Path:
    base = KINDS["3d"].dataset
    _, fixed = TESTS[look]
    scenes = dataclasses.replace(base.scenes, variation=base.scenes.variation.fixing(fixed))
    config = dataclasses.replace(base, num=num, seed=3000, split="train", scenes=scenes)
    return render_dataset(work / "data" / f"train-{look}-{num}", config, workers=2, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="air3d-looks",
                        help="the model to adapt (a shipped name or a checkpoint), or 'scratch': a new model "
                             "trained by the ELBO alone (no sleep phase, no labels)")
    parser.add_argument("--elbo-lr", type=float, default=None, help="TrainConfig.elbo_lr [default: the preset's]")
    parser.add_argument("--look", default="color", choices=sorted(TESTS))
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-signal", default="normalized", choices=("normalized", "nats"),
                        help="TrainConfig.score_signal")
    parser.add_argument("--train", action="append", default=[], metavar="FIELD=VALUE",
                        help="another TrainConfig field, for experiments (added to the result's name)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="an AIRConfig field of a new model (--model scratch), for experiments (added to the "
                             "result's name)")
    parser.add_argument("--tag", default="", help="appended to the result's name (e.g. what the code measured does differently)")
    parser.add_argument("--resume", action="store_true",
                        help="go on with this row's run (its checkpoint, training clock and curve) instead of a "
                             "fresh one, e.g. to a longer --minutes")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads in all, the teacher's search processes (--train teacher_workers=N) included")
    parser.add_argument("--work", type=Path, default=Path("out/bench-adapt3d"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adapt3d.json"))
    args = parser.parse_args()
    checkpoint = None if args.model == "scratch" else resolve_model(args.model)
    if args.set and checkpoint is not None:  # before anything is rendered
        parser.error("--set changes a new model (--model scratch); an adapted model keeps its own")
    model_overrides = settings(args.set)
    workers = int(settings(args.train).get("teacher_workers", 0))  # each a process on a thread of its own
    torch.set_num_threads(max(1, args.threads - workers))
    results = Results(args.out)
    name = (f"{args.model}.{args.look}.seed{args.seed}.{args.score_signal}"
            + "".join(f".{item}" for item in args.train + args.set + ([args.tag] if args.tag else [])))
    test = dataset(args.work, f"test-{args.look}")
    train_dir = train_images(args.work, args.look, args.train_images)
    overrides = {"steps": args.steps, "checkpoint_every": args.eval_every, "seed": args.seed,
                 "score_signal": args.score_signal, "sleep_fraction": 0.0}
    if args.elbo_lr is not None:
        overrides["elbo_lr"] = args.elbo_lr
    overrides.update(settings(args.train))
    config, data = prepare_run(train_dir, "3d", overrides, model_overrides, init=checkpoint)
    budget_s = 60 * args.minutes
    curve: list[dict] = []
    entry = {"model": args.model, "look": args.look, "train_images": args.train_images, "budget_s": budget_s,
             "threads": torch.get_num_threads() + workers, "model_overrides": model_overrides,
             "train": {k: getattr(config.train, k) for k in ("steps", "elbo_batch_size", "elbo_lr", "baseline_lr",
                                                             "sleep_fraction", "seed", "score_signal",
                                                             "presence_anneal_steps", "presence_anneal_start")},
             "before": None if checkpoint is None else scored(evaluate(checkpoint, test)), "curve": curve}
    print(json.dumps({"before": entry["before"]}), flush=True)
    out = args.work / "runs" / name
    if args.resume:  # the checkpoint holds the training clock; scoring was never on it
        previous = results.data.get("adapt3d", {}).get(name)
        if previous is None or not (out / CHECKPOINT).exists():
            parser.error(f"--resume: no run {out} with a row {name!r} in {args.out} to go on with")
        entry["before"] = previous["before"]
        curve += previous["curve"]
    elif out.exists():  # a fresh run each time: a half-finished one's clock and curve are not this run's
        import shutil

        shutil.rmtree(out)
    train_scored(config, out, resume=args.resume, progress=False, dataset=data, curve=curve,
                 score=lambda trainer: scored(evaluate(trainer.out / CHECKPOINT, test)),
                 on_point=lambda: results.set("adapt3d", name, entry),
                 stop=lambda step, train_s: train_s >= budget_s, shown=("step", "train_s", *KEYS))
    within = [p for p in curve if p["train_s"] <= budget_s + 1e-6] or curve[:1]
    entry["after"] = within[-1] if within else None
    results.set("adapt3d", name, entry)
    print(json.dumps({"after": entry["after"]}), flush=True)


if __name__ == "__main__":
    main()
