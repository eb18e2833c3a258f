"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import fcntl
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from inverse_air.files import write_json


def median_time(fn, repeats: int, warmup: bool = True) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Results:
    """The JSON file of results, rewritten atomically after every change. Each change re-reads
    the file under a lock, so several benchmark processes (say, two seeds on two cores) can
    write their parts into the same file."""

    def __init__(self, path: Path):
        self.path = path
        self.info = {"machine": platform.processor() or platform.machine(),
                     "threads": torch.get_num_threads(), "torch": torch.__version__}
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def set(self, section: str, name: str, value) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
            self.data.update(self.info)
            self.data.setdefault(section, {})[name] = value
            write_json(self.path, self.data)
