"""The teacher's count search in a process of its own (``TrainConfig.teacher_workers``).

The search that teaches the inference network during ELBO training (:func:`inverse_air.teacher.
search_answer`) renders each candidate, and in 3D PyTorch3D's CPU rasterizer runs on one thread:
a second thread barely speeds a training step (1.9 s against 2.0-2.3 at one), and the search
takes about half of it. A worker process runs the search on the other core instead: it draws
its own batches of training images, answers them with the latest weights the training process
published, and sends the lessons back; the training step no longer searches, and pools what has
arrived (``TrainConfig.teacher_pool``). Steps are then twice as fast and lessons come about
twice as often (3D from scratch, 2 threads: 1.3 s a step, was 2.7; docs/design-notes.md). The
lessons arrive when the search finishes, so such a run is not repeatable step for step (a run
without workers is).
"""

from __future__ import annotations

import queue as queues
import time

import numpy as np
import torch
import torch.multiprocessing as mp

from .air import AIR
from .checkpoint import build_model
from .config import AIRConfig
from .images import images_to_tensor
from .teacher import search_answer

WAITING = 2
"""Lessons a worker may have sent that training has not yet taken (then it waits: a slow
training step is not flooded with lessons searched with old weights)."""
CLOSE_S = 10.0
"""Seconds :meth:`SearchWorkers.close` waits for a worker to finish its search and stop."""


class SearchWorkers:
    """``count`` processes that search batches of ``batch`` training images (``images``, uint8
    ``(N, S, S, C)``) with the weights of ``model`` as last :meth:`publish`\\ ed, ``steps``
    gradient steps each (``TrainConfig.teacher_steps``); :meth:`lessons` takes what they sent.
    Close them with :meth:`close` (or use as a context manager)."""

    def __init__(self, model: AIR, images: np.ndarray, batch: int, steps: int, seed: int, count: int = 1):
        context = mp.get_context("spawn")  # not fork: a forked PyTorch (OpenMP, its thread pools) can hang
        self.weights = {k: v.detach().clone().cpu().share_memory_() for k, v in model.state_dict().items()}
        self.lock = context.Lock()
        self.stop = context.Event()
        self.queue = context.Queue(maxsize=WAITING * count)
        shared = torch.from_numpy(np.ascontiguousarray(images)).share_memory_()
        self.processes = [context.Process(target=_work, daemon=True, name=f"inverse-air-search-{i}",
                                          args=(model.config, self.weights, self.lock, shared, batch, steps,
                                                [seed, i], self.queue, self.stop))
                          for i in range(count)]
        for process in self.processes:
            process.start()

    def publish(self, model: AIR) -> None:
        """Give the workers ``model``'s current weights (used from their next batch on)."""
        with self.lock, torch.no_grad():
            for k, v in model.state_dict().items():
                self.weights[k].copy_(v)

    def lessons(self) -> list[tuple[torch.Tensor, dict[str, torch.Tensor], float]]:
        """What the workers have sent since the last call: ``(images, answer, share)`` each (see
        :class:`inverse_air.teacher.Lesson`); raises ``RuntimeError`` if a worker died."""
        got = []
        while True:
            try:
                images, answer, share = self.queue.get_nowait()
            except queues.Empty:
                break
            got.append((torch.from_numpy(images), {k: torch.from_numpy(v) for k, v in answer.items()}, share))
        dead = [p for p in self.processes if not p.is_alive()]
        if dead and not self.stop.is_set():
            raise RuntimeError(f"the teacher's search process {dead[0].name} died (exit code {dead[0].exitcode})")
        return got

    def close(self) -> None:
        """Stop the workers and wait for them (:data:`CLOSE_S` at most, then kill them)."""
        self.stop.set()
        deadline = time.monotonic() + CLOSE_S
        while any(p.is_alive() for p in self.processes) and time.monotonic() < deadline:
            try:  # a worker waiting to put a lesson must be able to, to see the stop
                self.queue.get(timeout=0.1)
            except queues.Empty:
                pass
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join()
        self.queue.close()
        self.queue.cancel_join_thread()

    def __enter__(self) -> "SearchWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _work(config: AIRConfig, weights: dict, lock, images: torch.Tensor, batch: int, steps: int,
          seed: list[int], queue, stop) -> None:
    """A worker's loop: the latest weights, a batch of images, the search, its lesson sent."""
    torch.set_num_threads(1)
    model = build_model(config)
    model.eval()
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        with lock:
            model.load_state_dict(weights)
        x = images_to_tensor(images[np.sort(rng.integers(0, len(images), size=batch))].numpy())
        lesson = search_answer(model, x, steps)
        while not stop.is_set():
            try:
                queue.put((lesson.images.numpy(), {k: v.numpy() for k, v in lesson.answer.items()}, lesson.share),
                          timeout=0.5)  # as arrays: copied, so nothing depends on this process living on
                break
            except queues.Full:
                continue
