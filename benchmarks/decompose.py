"""decompose speed benchmark: latency at batch 1, batched throughput, directory mode with PNG
reading, and process start-up to the first result. Writes JSON.

    python benchmarks/decompose.py [--model 3d|2d|CHECKPOINT] [--num 2000] [--rounds 5]
                                   [--work out/bench-decompose] [--out benchmarks/results/decompose.json]

Images: held-out scenes made with seed 1000 for the model's kind (3D: 0-3 objects, the test set
of ``benchmarks/air3d.py``; 2D: 0-2 test-pool digits, that of ``benchmarks/air2d.py``), written
once as PNG files into ``--work``. Every figure is the median over ``--rounds`` rounds in which
the precisions (``auto``, ``fp32``, ``bf16``) take turns: first batch 1 (50 images a round), then
batched and directory mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import median_time
from inverse_air.checkpoint import load_checkpoint
from inverse_air.data import ShardDataset, render_dataset
from inverse_air.decompose import PRECISIONS, Decomposer, expand_inputs, resolve_model
from inverse_air.files import write_json, write_image
from inverse_air.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent


def test_images(work: Path, num: int, kind: str) -> tuple[np.ndarray, Path]:
    counts = {"3d": (0, 1, 2, 3), "2d": (0, 1, 2)}[kind]
    config = dataclasses.replace(KINDS[kind].dataset, num=num, counts=counts, seed=1000, split="test")
    work = work / kind
    data = render_dataset(work / "data", config, workers=2, progress=False)
    images = ShardDataset(data).arrays()["images"]
    png_dir = work / "png"
    if len(list(png_dir.glob("*.png"))) != len(images):
        png_dir.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            write_image(png_dir / f"scene-{i:05d}.png", image)
    return images, png_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="3d")
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=Path("out/bench-decompose"))
    parser.add_argument("--rounds", type=int, default=5, help="rounds of measurement (each: 50 single images, "
                        "the images batched, the PNG directory, for every precision) [default: 5]")
    parser.add_argument("--out", type=Path, default=None,
                        help="[default: benchmarks/results/decompose.json, decompose-2d.json for a 2D model]")
    args = parser.parse_args()
    model = resolve_model(args.model)
    kind = load_checkpoint(model)["config"].air.kind
    out = args.out or Path(f"benchmarks/results/decompose{'-2d' if kind == '2d' else ''}.json")
    images, png_dir = test_images(args.work, args.num, kind)
    results = {"model": str(model), "kind": kind, "images": len(images)}
    # The precisions take turns, round by round, so that a slow spell of this shared machine
    # lands on all of them alike rather than on whichever was measured then.
    decomposers = {p: Decomposer(model, precision=p) for p in PRECISIONS}
    paths = expand_inputs([png_dir])
    times: dict[str, dict[str, list[float]]] = {p: {"single": [], "batched": [], "directory": []} for p in PRECISIONS}
    for decomposer in decomposers.values():  # warm-up
        decomposer(images[:512])
        for image in images[:20]:
            decomposer(image)
    for round_ in range(args.rounds):  # batch 1 first: big batches just before perturb it
        for precision, decomposer in decomposers.items():
            for image in images[round_ * 50:(round_ + 1) * 50]:
                start = time.perf_counter()
                decomposer(image)
                times[precision]["single"].append(time.perf_counter() - start)
    for round_ in range(args.rounds):
        for precision, decomposer in decomposers.items():
            times[precision]["batched"].append(median_time(lambda: decomposer(images, 256), 1, warmup=False))
            times[precision]["directory"].append(median_time(lambda: decomposer(paths), 1, warmup=False))
    for precision, t in times.items():
        results[precision] = {
            "batch1_ms_median": round(1000 * statistics.median(t["single"]), 2),
            "batched_images_per_s": round(len(images) / statistics.median(t["batched"])),
            "directory_images_per_s": round(len(images) / statistics.median(t["directory"])),
        }
    cli = Path(sys.executable).with_name("inverse-air")
    scene = ROOT / "scenes" / ("two_objects.png" if kind == "3d" else "mnist/digits-2.png")
    startup = median_time(lambda: subprocess.run([str(cli), "decompose", str(scene), "--model", args.model],
                                           check=True, capture_output=True), 5, warmup=False)
    results.update({
        "process_start_to_result_s": round(startup, 2),
        "machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
