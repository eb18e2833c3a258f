"""Renderer and dataset benchmark: prints JSON (and writes benchmarks/results/render.json).

    python benchmarks/render.py [--quick]

Measures, on the threads torch is given (2 on the reference machine):
- hard render images/s at 32x32 and 64x64, scenes of 0-3 objects, batches of 64;
- soft render forward+backward seconds per batch of 32 at 32x32 and 64x64;
- 2D multi-MNIST composition images/s (0-2 digits, embedded pool);
- peak resident memory of `inverse-air render-dataset --num 20000` (3D, 64x64), and its time.
Each timing is the median of several repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import median_time
from inverse_air.objects2d.multimnist import Composer, load_digits
from inverse_air.objects3d.config import RenderConfig
from inverse_air.objects3d.prior import sample_scene
from inverse_air.objects3d.render3d import SceneRenderer, scenes_to_tensors


def scenes_batch(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, int(rng.integers(4)), RenderConfig().object_scale) for _ in range(n)]
    return scenes_to_tensors(scenes, 3)


def hard_images_per_s(size: int, repeats: int) -> float:
    renderer = SceneRenderer(RenderConfig(image_size=size))
    shape, position, yaw = scenes_batch(512)

    def run():
        with torch.no_grad():
            for b in range(0, 512, 64):
                renderer(shape[b:b + 64], position[b:b + 64], yaw[b:b + 64])

    return 512 / median_time(run, repeats)


def soft_seconds_per_batch(size: int, repeats: int) -> float:
    renderer = SceneRenderer(RenderConfig(image_size=size))
    shape, position, yaw = scenes_batch(32, seed=1)
    target = torch.rand(32, 3, size, size)

    def run():
        p = position.clone().requires_grad_(True)
        y = yaw.clone().requires_grad_(True)
        (renderer(shape, p, y, soft=True) - target).square().sum().backward()

    return median_time(run, repeats)


def compose_images_per_s(repeats: int) -> float:
    composer = Composer(load_digits("train"))
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=5000)

    def run():
        for c in counts:
            composer.compose(rng, int(c))

    return 5000 / median_time(run, repeats)


def dataset_peak_rss(num: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "inverse_air", "render-dataset", str(Path(tmp) / "ds"),
               "--model", "3d", "--num", str(num), "--seed", "0"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        peak_kb = 0
        while proc.poll() is None:  # VmHWM: the process's own peak resident set
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.2)
        if proc.returncode != 0:
            raise RuntimeError(f"render-dataset failed with status {proc.returncode}")
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (Path(tmp) / "ds").iterdir())
    return {"num": num, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
            "disk_mb": round(size / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 2,000 scenes")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    results = {
        "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "hard_images_per_s": {f"{s}x{s}": round(hard_images_per_s(s, repeats), 1) for s in (32, 64)},
        "soft_fwd_bwd_s_per_batch32": {f"{s}x{s}": round(soft_seconds_per_batch(s, repeats), 3)
                                       for s in (32, 64)},
        "compose2d_images_per_s": round(compose_images_per_s(repeats), 1),
        "render_dataset": dataset_peak_rss(2000 if args.quick else 20000),
        "targets": {"hard_64x64_images_per_s": 400, "compose2d_images_per_s": 5000,
                    "render_dataset_20000_peak_rss_mb": 1024},
    }
    text = json.dumps(results, indent=2)
    print(text)
    out = Path(__file__).resolve().parent / "results" / "render.json"
    if not args.quick:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
