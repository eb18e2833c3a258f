"""Training throughput with 1 and 2 processes (torchrun, gloo) on CPU, and on one GPU when
there is one. Writes JSON.

    python benchmarks/distributed.py [--steps 150] [--procs 1,2] [--device cpu|cuda]
                                     [--work out/bench-distributed] [--out benchmarks/results/distributed.json]

Each configuration trains the default 3D model (sleep phase, global batch 64, 64x64 images)
from scratch for ``--steps`` steps with ``inverse-air train``; steps/s is measured from
``metrics.jsonl`` between the first logged step (the 50th) and the last, so start-up and
warm-up are excluded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from inverse_air.data import render_dataset
from inverse_air.files import write_json
from inverse_air.kinds import KINDS


def measure(data: Path, out: Path, procs: int, steps: int, device: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] \
        if procs > 1 else [sys.executable]
    command = launcher + ["-m", "inverse_air", "train", "--data", str(data), "--out", str(out),
                          "--steps", str(steps), "--sleep-fraction", "1.0", "--quiet", "--device", device]
    subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((out / "config.json").read_text())["config"]
    # from the first logged step (log_every: 50, so start-up and warm-up are excluded) to the
    # last; logging and snapshots happen on rank 0 between steps: measured steps include them
    first, last = lines[0], lines[-1]
    if last["step"] != steps or first["step"] == last["step"]:
        raise SystemExit(f"error: --steps {steps} logs too few steps to time (log_every is 50)")
    per_step = (last["time_s"] - first["time_s"]) / (last["step"] - first["step"])
    batch = config["train"]["batch_size"]
    return {"processes": procs, "device": device, "steps": steps, "global_batch": batch,
            "steps_per_s": round(1 / per_step, 2), "images_per_s": round(batch / per_step, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("out/bench-distributed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/distributed.json"))
    args = parser.parse_args()
    config = dataclasses.replace(KINDS["3d"].dataset, num=2000, seed=0)
    data = render_dataset(args.work / "data", config, workers=2, progress=False)
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    for procs in map(int, args.procs.split(",")):
        run = measure(data, args.work / f"run-{args.device}-{procs}", procs, args.steps, args.device)
        results["runs"][f"{args.device}-{procs}"] = run
        print(json.dumps(run), flush=True)
    results.update({"machine": platform.machine(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
