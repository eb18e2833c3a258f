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


def settings(items: list[str]) -> dict:
    """``FIELD=VALUE`` options as a dict of config overrides (numbers, lists, booleans as JSON)."""
    return {k: json.loads(v) if v[:1] in "0123456789-[{tf" else v for k, v in (i.split("=", 1) for i in items)}


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


REFINE_STEPS = 1
"""Gradient steps of the refined scores the 2D folder benchmarks report beside the amortized
ones (``evaluate --refine 1``: the count search, then one step on the windows)."""


def folder_scores(checkpoint: Path, test: Path) -> dict:
    """A 2D folder checkpoint's held-out count scores, amortized and refined
    (:data:`REFINE_STEPS`), with the refined pass's milliseconds per image."""
    from inverse_air.evaluate import evaluate

    fast, refined = evaluate(checkpoint, test), evaluate(checkpoint, test, refine=REFINE_STEPS)
    return {"count_accuracy": fast["count_accuracy"], "confusion": fast["confusion"],
            "position_error": fast.get("position_error"), "scale_error": fast.get("scale_error"),
            "count_accuracy_refined": refined["count_accuracy"], "confusion_refined": refined["confusion"],
            "refined_ms_per_image": round(1000 / refined["images_per_s"], 2)}


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


class StopRun(Exception):
    """Raised by :class:`ScoredTrainer` when its run is to stop (after a checkpoint and its score)."""


def _trainer_class():
    from inverse_air.train import Trainer

    class ScoredTrainer(Trainer):
        """A Trainer that scores every checkpoint it saves: ``score()`` gives the point's fields
        beside its ``step`` and training seconds ``train_s``; the point is appended to ``curve``,
        its ``shown`` fields printed and ``on_point()`` called (to save the results). Scoring
        time is taken out of the training clock; :class:`StopRun` is raised once
        ``stop(step, train_s)`` says so."""

        def __init__(self, *args, score, curve: list, on_point, stop=lambda step, train_s: False,
                     shown=("step", "train_s", "count_accuracy"), **kwargs):
            super().__init__(*args, **kwargs)
            self.score, self.curve, self.on_point, self.stop, self.shown = score, curve, on_point, stop, shown

        def save(self) -> None:
            super().save()
            start = time.perf_counter()
            train_s = start - self._start
            point = {"step": self.step, "train_s": round(train_s, 1), **self.score(self)}
            self.curve.append(point)
            print(json.dumps({k: point[k] for k in self.shown}), flush=True)
            self.on_point()
            self._start += time.perf_counter() - start  # scoring is not training time
            if self.stop(self.step, train_s):
                raise StopRun

    return ScoredTrainer


def train_scored(*args, **kwargs):
    """Train with a :class:`ScoredTrainer` (its arguments) until the run ends or is stopped;
    returns the trainer."""
    trainer = _trainer_class()(*args, **kwargs)
    try:
        trainer.run()
    except StopRun:
        pass
    return trainer
