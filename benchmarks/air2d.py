"""2D AIR (multi-MNIST) benchmark: the paper's experiments, with this project's train/evaluate.

    python benchmarks/air2d.py [--parts steptime,air,dair,interpolation,downstream,figure]
                               [--seeds 0] [--steps N] [--eval-every 1000] [--stop-after N]
                               [--interpolation air,dair] [--count-prior dataset|uniform]
                               [--work DIR] [--out benchmarks/results/air2d.json] [--threads T]

Datasets (composed once into ``--work``, from the embedded MNIST digits; reused by later runs):
- ``train``: 50,000 canvases of 0-2 digits from the training pool, seed 0;
- ``test``: 2,000 held-out canvases of 0-2 digits from the *test* pool, seed 1000;
- ``test3``: 1,000 canvases of exactly 3 test-pool digits, seed 1001 (extrapolation);
- ``train013``: 50,000 canvases of 0, 1 or 3 digits, seed 0; ``test2``: 1,000 canvases of
  exactly 2 test-pool digits, seed 1002 (interpolation);
- ``sum``: 3,000 test-pool canvases of 0-2 digits, seed 1003 (downstream task).

Parts:
- ``steptime``: median seconds of one training step at batch 64 (default 2D preset; AIR and
  DAIR), after warm-up, with ``torch.get_num_threads()`` threads;
- ``air``: one unsupervised run per seed of the default 2D preset on ``train``; every
  ``--eval-every`` steps the checkpoint is scored on ``test`` (count accuracy and confusion)
  and the point is recorded with the *training* seconds so far (evaluation time excluded);
- ``dair``: DAIR trained on ``train`` (seed 0), scored over time on ``test`` and at the end on
  ``test3``; the ``air`` seed-0 run is scored on ``test3`` too (extrapolation, side by side);
- ``interpolation``: AIR and DAIR trained on ``train013`` (seed 0), scored on ``test2``; with
  ``--count-prior uniform`` the models' prior over counts is uniform over 0-3 instead of over
  the training set's counts {0, 1, 3} (which leaves 2 digits only the 1% floor);
- ``downstream``: a small classifier predicting the sum of the digits from the ``air`` seed-0
  model's inferred latents, against the same classifier on raw pixels, with few labels;
- ``figure``: inputs and reconstructions with the inferred windows outlined by step (red,
  green, blue), ``benchmarks/results/air2d-windows.png``, from the ``air`` seed-0 model.

Training runs resume where a killed benchmark left them; results are merged into the JSON file
(entries with the same name are replaced), so parts can be run one at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from common import Results, train_scored
from inverse_air.checkpoint import load_checkpoint, load_model
from inverse_air.data import ShardDataset, render_dataset
from inverse_air.evaluate import evaluate, infer_arrays
from inverse_air.images import images_to_tensor, to_uint8
from inverse_air.kinds import KINDS
from inverse_air.plan import run_config_for
from inverse_air.train import CHECKPOINT, Trainer

DATASETS = {
    "train": dict(num=50000, counts=(0, 1, 2), seed=0, split="train"),
    "test": dict(num=2000, counts=(0, 1, 2), seed=1000, split="test"),
    "test3": dict(num=1000, counts=(3,), seed=1001, split="test"),
    "train013": dict(num=50000, counts=(0, 1, 3), seed=0, split="train"),
    "test2": dict(num=1000, counts=(2,), seed=1002, split="test"),
    "sum": dict(num=3000, counts=(0, 1, 2), seed=1003, split="test"),
}
RESULTS = Path("benchmarks/results")


def dataset(work: Path, name: str) -> Path:
    config = dataclasses.replace(KINDS["2d"].dataset, **DATASETS[name])
    return render_dataset(work / "data" / name, config, progress=False)


# ---------------------------------------------------------------------------- step time
def step_time(work: Path, dair: bool, batch: int = 64, warmup: int = 10, repeats: int = 60) -> dict:
    """Median wall seconds of a full ELBO training step (forward, backward, clipping, Adam)."""
    import tempfile

    config = run_config_for(dataset(work, "train"), "2d", {"elbo_batch_size": batch}, {"dair": dair})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp, progress=False)
        times = []
        for step in range(warmup + repeats):
            start = time.perf_counter()
            trainer.train_step(step)
            times.append(time.perf_counter() - start)
        trainer.writer.close()
    times = np.asarray(times[warmup:])
    return {"batch_size": batch, "dair": dair, "median_s": float(np.median(times)),
            "p90_s": float(np.percentile(times, 90)), "repeats": repeats}


# ---------------------------------------------------------------------------- training runs
def train_run(work: Path, results: Results, name: str, train_data: str, curve_data: str,
              train_overrides: dict, air_overrides: dict, eval_every: int,
              stop_after: int | None = None, count_prior: str = "dataset") -> Path:
    out = work / "runs" / name
    config = run_config_for(dataset(work, train_data), "2d",
                            {"checkpoint_every": eval_every, **train_overrides}, air_overrides, count_prior)
    resume = (out / CHECKPOINT).exists()
    old = results.data.get("runs", {}).get(name, {})
    curve: list[dict] = []
    entry = {"name": name, "train_data": train_data, "curve_data": curve_data, "resumed": resume,
             "dair": config.air.dair, "count_prior": list(config.air.count_prior),
             "train": {k: getattr(config.train, k) for k in ("steps", "elbo_batch_size", "elbo_lr",
                                                             "baseline_lr", "seed")},
             "curve": curve}
    test_arrays = ShardDataset(dataset(work, curve_data)).arrays()

    def score(trainer) -> dict:
        trainer.model.eval()
        pred, _ = infer_arrays(trainer.model, test_arrays["images"])
        metrics = KINDS["2d"].metrics(test_arrays, pred)
        return {"count_accuracy": metrics["count_accuracy"], "confusion": metrics["confusion"]}

    done = load_checkpoint(out / CHECKPOINT)["step"] if resume else 0
    if resume:  # points after the checkpoint will be redone
        curve[:] = [p for p in old.get("curve", []) if p["step"] <= done]
    entry["stopped_after"] = stop_after
    if done < min(config.train.steps, stop_after or config.train.steps):  # stop_after: the schedule is still the full run's
        train_scored(config, out, resume=resume, progress=False, score=score, curve=curve,
                     on_point=lambda: results.set("runs", name, entry),
                     stop=lambda step, train_s: stop_after is not None and step >= stop_after)
    entry["final"] = curve[-1] if curve else None
    results.set("runs", name, entry)
    return out / CHECKPOINT


def score(results: Results, name: str, checkpoint: Path, work: Path, test: str) -> None:
    metrics = evaluate(checkpoint, dataset(work, test))
    keep = ("count_accuracy", "confusion", "num_scenes", "position_error", "scale_error", "images_per_s")
    results.set("scores", f"{name}/{test}", {k: metrics[k] for k in keep})
    print(json.dumps({f"{name}/{test}": {k: metrics[k] for k in ("count_accuracy", "confusion")}}), flush=True)


# ---------------------------------------------------------------------------- downstream
def latent_features(checkpoint: Path, images: np.ndarray) -> np.ndarray:
    """Per image, each step's (z_pres, z_where, z_what), zeros after the first absence: ``(n, N * (1 + 3 + D))``."""
    model, _ = load_model(checkpoint)
    feats = []
    with torch.no_grad():
        for start in range(0, len(images), 256):
            lat = model.infer(images_to_tensor(images[start:start + 256]), sample=False)
            z_pres = lat.z_pres.unsqueeze(-1)  # (B, N, 1)
            step = torch.cat([z_pres, lat.objects["where"], lat.objects["what"]], dim=-1) * z_pres
            feats.append(step.flatten(1).numpy())
    return np.concatenate(feats)


def fit_classifier(train_x, train_y, test_x, test_y, classes: int, seed: int, steps: int = 1500) -> float:
    """Accuracy on the test set of an MLP (one hidden layer of 128) fitted with Adam (``steps``
    minibatches of 64) on the (few) labelled examples; features standardized with the training
    set's statistics."""
    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    tx = torch.from_numpy((train_x - mean) / std).float()
    vx = torch.from_numpy((test_x - mean) / std).float()
    ty = torch.from_numpy(train_y)
    net = torch.nn.Sequential(torch.nn.Linear(tx.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        idx = torch.randint(len(tx), (64,))
        loss = torch.nn.functional.cross_entropy(net(tx[idx]), ty[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(vx).argmax(1).numpy() == test_y).mean())


def downstream(work: Path, checkpoint: Path, labels=(100, 300, 1000), test_size: int = 1000) -> dict:
    """Predict the sum of the digits (0..18) from inferred latents vs raw pixels."""
    arrays = ShardDataset(dataset(work, "sum")).arrays()
    digits = np.where(arrays["digit"] >= 0, arrays["digit"], 0)
    y = digits.sum(1).astype(np.int64)
    pixels = arrays["images"].reshape(len(y), -1).astype(np.float32) / 255.0
    latents = latent_features(checkpoint, arrays["images"])
    test = slice(len(y) - test_size, len(y))
    out = {"task": "sum of the digits (19 classes)", "test_images": test_size, "results": []}
    for n in labels:
        row = {"labels": n}
        for name, x in (("latents", latents), ("pixels", pixels)):
            row[name] = fit_classifier(x[:n], y[:n], x[test], y[test], classes=19, seed=0)
        out["results"].append(row)
        print(json.dumps(row), flush=True)
    return out


def figure(work: Path, checkpoint: Path, path: Path, n: int = 16) -> None:
    from inverse_air.files import write_image
    from inverse_air.viz import windows_figure

    model, _ = load_model(checkpoint)
    images = ShardDataset(dataset(work, "test")).arrays()["images"][:n]
    with torch.no_grad():
        lat = model.infer(images_to_tensor(images), sample=False)
        recon = model.reconstruct(lat)
    boxes = lat.objects["where"].numpy()
    write_image(path, windows_figure(images, to_uint8(recon), boxes, lat.z_pres.numpy() > 0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="steptime,air,dair,interpolation,downstream,figure")
    parser.add_argument("--seeds", default="0", help="seeds of the 'air' part")
    parser.add_argument("--steps", type=int, default=None, help="training steps [default: the 2D preset's]")
    parser.add_argument("--interpolation", default="air,dair", help="models of the 'interpolation' part")
    parser.add_argument("--count-prior", default="dataset", choices=("dataset", "uniform"),
                        help="the interpolation runs' count prior (train --count-prior); "
                             "'uniform' runs are named air013-uniform-seed0 etc.")
    parser.add_argument("--eval-every", type=int, default=1000, help="steps between held-out scores")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop each run after this many steps (its schedule stays the full run's)")
    parser.add_argument("--work", type=Path, default=Path("out/bench-air2d"))
    parser.add_argument("--out", type=Path, default=RESULTS / "air2d.json")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    results = Results(args.out)
    steps = {"steps": args.steps} if args.steps else {}
    air0 = lambda: args.work / "runs" / "air-seed0" / CHECKPOINT
    if "steptime" in parts:
        for dair in (False, True):
            results.set("step_time", "dair" if dair else "air", step_time(args.work, dair))
            print(json.dumps(results.data["step_time"]), flush=True)
    if "air" in parts:
        for seed in args.seeds.split(","):
            ckpt = train_run(args.work, results, f"air-seed{seed}", "train", "test",
                             {"seed": int(seed), **steps}, {}, args.eval_every, args.stop_after)
            score(results, f"air-seed{seed}", ckpt, args.work, "test")
    if "dair" in parts:
        ckpt = train_run(args.work, results, "dair-seed0", "train", "test", {"seed": 0, **steps},
                         {"dair": True}, args.eval_every, args.stop_after)
        score(results, "dair-seed0", ckpt, args.work, "test")
        score(results, "dair-seed0", ckpt, args.work, "test3")
        if air0().exists():
            score(results, "air-seed0", air0(), args.work, "test3")
    if "interpolation" in parts:
        suffix = "" if args.count_prior == "dataset" else f"-{args.count_prior}"
        for model, air in (("air", {}), ("dair", {"dair": True})):
            if model not in args.interpolation.split(","):
                continue
            name = f"{model}013{suffix}-seed0"
            ckpt = train_run(args.work, results, name, "train013", "test2", {"seed": 0, **steps}, air,
                             args.eval_every, args.stop_after, args.count_prior)
            score(results, name, ckpt, args.work, "test2")
    if "downstream" in parts:
        results.set("downstream", "air-seed0", downstream(args.work, air0()))
    if "figure" in parts:
        figure(args.work, air0(), args.out.parent / "air2d-windows.png")
        results.set("figures", "windows", str(args.out.parent / "air2d-windows.png"))


if __name__ == "__main__":
    main()
