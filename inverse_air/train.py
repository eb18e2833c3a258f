"""Training: the loop, its phases, logging, snapshots, checkpoints and resuming.

Phases (see :class:`inverse_air.config.TrainConfig`):

- **sleep** (an object model with a prior sampler, :class:`inverse_air.object_model.
  PriorSampler`: 3D): scenes drawn from the generative model's prior (counts from the same
  floored count prior the ELBO uses) are hard-rendered and the inference network maximizes
  ``log q(scene | image)`` (teacher forcing, objects in canonical order). No dataset image or
  label is used, and no renderer gradient is needed. A model whose generative part is learned
  (2D) has no sleep phase.
- **elbo**: the dataset's images; maximize the ELBO (:mod:`inverse_air.elbo`) with
  reparameterized gradients for continuous latents (3D: through the soft renderer) and
  score-function gradients with the learned baseline for presence (and 3D identity). In 2D the
  decoder learns here too, and (optionally, ``TrainConfig.teacher_images``) the count search of
  ``decompose --refine`` answers the first images of each batch and the inference network is
  also taught its answer where it changed the count or an object (label-free: the search is
  scored by the model's own energy).
- **supervised** (``--supervised``): maximize ``log q(labels | image)`` on the dataset's
  ground truth: the paper's supervised comparison.

Everything random in step ``t`` is drawn from generators seeded by ``(seed, t)``, so a run
resumed from a checkpoint takes exactly the steps an uninterrupted run would have taken (but
where the teacher's search runs in processes of its own, ``TrainConfig.teacher_workers``: its
lessons arrive when it finishes them, :mod:`inverse_air.search_worker`); a resumed run keeps
every setting of the checkpoint but its length (:func:`~inverse_air.plan.resume_config` refuses
a flag that asks for another). Ctrl-C and SIGTERM save a checkpoint of the last
finished step (the step under way is finished first, never saved half done). One run at a time
trains in a run directory (:mod:`inverse_air.rundir`). A step whose batch cannot fit in memory
is refused before training starts.
Dataset labels are used by the unsupervised phases only to *report* count accuracy on a fixed
monitoring batch; they never reach a loss. Nothing here is specific to a kind of object: the
kind (:mod:`inverse_air.kinds`) turns ground truth into targets, the object model samples sleep
scenes and renders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from torch import nn

from .air import AIR, parameter_groups, split_scene
from .averaging import WeightAverage
from .checkpoint import build_model, load_checkpoint, save_checkpoint, write_tensors
from .collapse import CollapseWatch
from .config import RunConfig, to_dict
from .data import Dataset, open_dataset
from .distributed import Context, setup, teardown
from .elbo import elbo_terms, gaussian_log_likelihood, image_terms, update_signal_stats
from .errors import UserError, deferred_interrupts
from .files import check_output, write_json, write_text
from .images import images_to_tensor, to_uint8
from .kinds import KINDS
from .limits import check_memory
from .object_model import PriorSampler
from .progress import progress_bar
from .rundir import RunDirectory
from .schedules import annealed_presence_prior
from .search_worker import SearchWorkers
from .teacher import Lesson, pooled, search_answer

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
"""The model of the log interval with the best monitoring ELBO so far, when the monitoring
images are held out from training (a folder of images): the checkpoint to keep, chosen without
labels (AIR's count can peak and then fall as its reconstructions improve)."""
TEACHER_POOL = "teacher_pool.pt"
"""The teacher's pool of lessons at the checkpoint's step (``TrainConfig.teacher_pool``)."""
METRICS = "metrics.jsonl"
CONFIG = "config.json"
SNAPSHOTS = "images"
MONITOR_SIZE = 256
STOP_NOTICE = "\nnotice: stopping after this step, then saving a checkpoint (a second Ctrl-C stops at once)\n"
"""What a run with a progress bar says on the first Ctrl-C or SIGTERM."""
SNAPSHOT_SIZE = 16


class TrainingDiverged(UserError):
    """A loss or gradient became NaN or infinite."""


def checkpoint_to_resume(out_dir: str | os.PathLike) -> Path:
    """The checkpoint of the run in ``out_dir``, to resume it from.

    Raises:
        UserError: there is none.
    """
    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        raise UserError(f"{out_dir}: nothing to resume (no {CHECKPOINT})")
    return path


# ---------------------------------------------------------------------------- batches
class Batches:
    """Where each phase's images (and teacher-forcing targets) come from.

    Step ``t``'s global batch of ``size`` examples is drawn from a generator seeded by
    ``(seed, t)`` among ``indices`` (None: every example); ``part`` selects this process's
    slice of it (see :mod:`inverse_air.distributed`). Tensors are on the model's device.
    """

    def __init__(self, model: AIR, config: RunConfig, arrays: dict[str, np.ndarray],
                 indices: np.ndarray | None = None):
        self.model, self.config, self.arrays, self.indices = model, config, arrays, indices
        self.targets = KINDS[config.air.kind].codec.targets
        self.num = len(arrays["images"]) if indices is None else len(indices)
        tc = config.train
        size = min(tc.sleep_pool, max(tc.batch_size, tc.sleep_steps * tc.sleep_refresh))
        self.pool = SleepPool(model, tc.seed, size, tc.sleep_refresh) if tc.sleep_pool > 0 and tc.sleep_steps else None

    @property
    def device(self) -> torch.device:
        return self.model.prior_pres.device

    def data(self, step: int, size: int, part: slice = slice(None),
             targets: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Step ``step``'s images and, if ``targets``, their teacher-forcing targets."""
        rng = np.random.default_rng([self.config.train.seed, step, 1])
        idx = np.sort(rng.integers(0, self.num, size=size))[part]
        if self.indices is not None:
            idx = self.indices[idx]
        x = images_to_tensor(self.arrays["images"][idx]).to(self.device)
        if not targets:
            return x, None
        picked = {k: v[idx] for k, v in self.arrays.items() if k != "images"}
        return x, _to(self.targets(picked, self.config.air.max_steps), self.device)

    def sleep(self, step: int, size: int, part: slice = slice(None)) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.pool is not None:
            picked = self.pool.batch(step, size)
            picked = {k: v[part] for k, v in picked.items()}
            target = self.targets(picked, self.config.air.max_steps)
            return images_to_tensor(picked["images"]).to(self.device), _to(target, self.device)
        rng = np.random.default_rng([self.config.train.seed, step, 2])
        arrays = self.model.objects.sample_prior(self.model.sample_counts(size, rng), rng)
        return render_scenes(self.model, {k: v[part] for k, v in arrays.items()})


class SleepPool:
    """Scenes from the model's prior, rendered once and kept (as uint8, like a dataset's
    images) for the sleep phase (``TrainConfig.sleep_pool``).

    The pool is ``size / refresh`` blocks of ``refresh`` scenes; sleep step ``t`` replaces
    block ``t mod blocks`` with scenes drawn from a generator seeded by ``(seed, t)``, then
    picks its batch from the whole pool. So the pool at step ``t`` holds, in each block, the
    scenes drawn at that block's last refresh (steps ``-blocks .. -1`` fill it before the first
    step): any step's pool can be rebuilt from the seed alone, and a resumed run trains on the
    batches an uninterrupted one would.
    """

    def __init__(self, model: AIR, seed: int, size: int, refresh: int):
        self.model, self.seed, self.refresh = model, seed, max(1, min(refresh, size))
        self.blocks = max(1, size // self.refresh)
        self.step: int | None = None  # the step the pool holds the scenes of
        self.arrays: dict[str, np.ndarray] = {}

    def _draw(self, step: int) -> dict[str, np.ndarray]:
        """The block of scenes refreshed at ``step``, rendered."""
        rng = np.random.default_rng([self.seed, step + self.blocks, 5])  # entropy must be >= 0
        model = self.model
        arrays = model.objects.sample_prior(model.sample_counts(self.refresh, rng), rng, model.config.max_steps)
        return {"images": to_uint8(render_scenes(model, arrays)[0]), **arrays}

    def _store(self, block: int, arrays: dict[str, np.ndarray]) -> None:
        if not self.arrays:
            self.arrays = {k: np.empty((self.blocks * self.refresh,) + v.shape[1:], v.dtype) for k, v in arrays.items()}
        for k, v in arrays.items():
            self.arrays[k][block * self.refresh:(block + 1) * self.refresh] = v

    def at(self, step: int) -> None:
        """Bring the pool to the scenes of ``step`` (one refresh after ``step - 1``, else rebuilt)."""
        if self.step is not None and step == self.step + 1:
            self._store(step % self.blocks, self._draw(step))
        elif self.step != step:
            for block in range(self.blocks):
                last = step - ((step - block) % self.blocks)  # this block's last refresh <= step
                self._store(block, self._draw(last))
        self.step = step

    def batch(self, step: int, size: int) -> dict[str, np.ndarray]:
        """Step ``step``'s batch of ``size`` scenes from the pool, in a dataset's format."""
        self.at(step)
        rng = np.random.default_rng([self.seed, step, 6])
        idx = np.sort(rng.integers(0, self.blocks * self.refresh, size=size))
        return {k: v[idx] for k, v in self.arrays.items()}


def render_scenes(model: AIR, arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sleep scenes (in the kind's ground-truth format, e.g. drawn from the prior) rendered by
    the model's generative model: the images ``(B, C, S, S)`` and their teacher-forcing targets,
    on the model's device."""
    targets = KINDS[model.config.kind].codec.targets(arrays, model.config.max_steps)
    target = _to(targets, model.prior_pres.device)
    objects, scene = split_scene(target, model.objects)
    with torch.no_grad():
        return model.objects.render(target["z_pres"], objects, scene), target


def _to(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in tensors.items()}


# ---------------------------------------------------------------------------- losses
def teacher_forced_loss(model: AIR, x: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Sleep / supervised loss: mean over the batch of ``-log q(target | x)``."""
    latents = model.infer(x, target=target)
    nll = latents.target_nll.sum(1)
    if latents.scene_target_nll is not None:
        nll = nll + latents.scene_target_nll
    loss = nll.mean()
    return loss, {"nll": loss.item()}


def elbo_loss(model: AIR, x: torch.Tensor, context: Context = Context(), normalized: bool = True,
              lesson: Lesson | None = None, teacher_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """ELBO phase loss: ``-(surrogate) / pixels + baseline regression`` (batch means). The
    running statistics of the learning signals are updated from all processes' batches.

    ``lesson``: the count search's answers where they differ from the one pass; ``teacher_weight``
    times their ``-log q`` (nats per image searched) is added beside the ELBO's nats per image."""
    latents = model.infer(x, sample=True)
    recon = model.reconstruct(latents, grad=True)
    baseline = model.baseline(x, latents.hidden)
    with torch.no_grad():
        update_signal_stats(model.signal_stats, latents,
                            gaussian_log_likelihood(x, recon, model.config.pixel_sigma),
                            reduce=context.all_reduce_sum)
    terms = elbo_terms(x, recon, latents, baseline, model.signal_stats, model.config.pixel_sigma, normalized)
    pixels = x[0].numel()
    loss = -terms.surrogate.mean() / pixels + terms.baseline_loss.mean()
    stats = {"elbo": terms.elbo.mean().item(), "log_likelihood": terms.log_likelihood.mean().item(),
             "kl": terms.kl.mean().item(), "baseline_loss": terms.baseline_loss.mean().item(),
             "count_mean": latents.count.float().mean().item()}
    if lesson is not None:  # teacher_nll: -log q(answers) in nats per image searched
        nll = teacher_forced_loss(model, lesson.images, lesson.answer)[0] * lesson.share \
            if len(lesson.images) else loss.new_zeros(())
        loss = loss + teacher_weight * nll / pixels
        stats.update(search_changed=lesson.share, teacher_nll=nll.item())
    return loss, stats


class StepLoss(nn.Module):
    """One step's loss as a module's ``forward``, so that ``DistributedDataParallel`` can wrap
    it (and synchronize the gradients of whatever the phase used)."""

    def __init__(self, model: AIR, context: Context, normalized: bool = True, teacher_weight: float = 1.0):
        super().__init__()
        self.model, self.context, self.normalized, self.teacher_weight = model, context, normalized, teacher_weight

    def forward(self, phase: str, x: torch.Tensor, target: dict | None) -> tuple[torch.Tensor, dict]:
        """``target``: teacher forcing's (sleep, supervised), or the count search's :class:`Lesson`
        (elbo; None when the search does not teach)."""
        if phase == "elbo":
            return elbo_loss(self.model, x, self.context, self.normalized, target, self.teacher_weight)
        return teacher_forced_loss(self.model, x, target)


# ---------------------------------------------------------------------------- the loop
class Trainer:
    """One training run in ``out_dir`` (see the module docstring). With several processes
    (:mod:`inverse_air.distributed`) every rank trains; only rank 0 writes files."""

    def __init__(self, config: RunConfig, out_dir: str | os.PathLike, resume: bool = False,
                 progress: bool = True, context: Context = Context(), dataset: Dataset | None = None):
        inputs = [config.data] + ([config.init] if config.init else [])
        self.out = check_output(out_dir, "--out", inputs=inputs, directory=True)
        if resume:
            checkpoint_to_resume(self.out)
        self.context = context
        self.progress = progress and context.is_main
        # Rank 0 claims the folder (refusing someone else's files) and holds it locked while it
        # trains (rundir); the run's files may not be any input under another name.
        self.rundir = RunDirectory(self.out, CHECKPOINT) if context.is_main else None
        try:
            for name in (CHECKPOINT, BEST, CONFIG, METRICS, TEACHER_POOL):
                if (self.out / name).exists():
                    check_output(self.out / name, "--out", inputs=inputs)
            check_output(self.out / SNAPSHOTS, "--out", inputs=inputs, directory=True)
            self._setup(config, resume, dataset)
        except BaseException:
            self.release(undo=True)
            raise

    def _setup(self, config: RunConfig, resume: bool, dataset: Dataset | None) -> None:
        context = self.context
        payload = self._previous_run(config, resume)
        self.config = config if payload is None else self._resumed_config(payload, config)
        self._check_memory()
        self.model, self.optimizer = self._build()
        self.presence_prior = self.model.prior_pres.clone()  # the model's own (ELBO steps anneal to it)
        self.step = 0
        self.window: list[dict] = []  # per-step stats since the last metrics line
        self.best_elbo: float | None = None  # the monitoring ELBO of best.pt (None: none yet)
        self.elapsed = 0.0  # training seconds before this process (resumed runs)
        self.pool: Lesson | None = None  # the teacher's lessons (TrainConfig.teacher_pool)
        self.average: WeightAverage | None = None  # the averaged weights (TrainConfig.weight_average)
        self.workers: SearchWorkers | None = None  # the search's processes (TrainConfig.teacher_workers), once started
        if self.config.train.teacher_workers and context.world > 1:
            raise UserError("TrainConfig.teacher_workers: not with several training processes (each would need "
                            "its own); use 0")
        if payload is not None:
            self._restore(payload)
        elif self.config.init:
            self._start_from(self.config.init)
        if self.config.train.weight_average:
            self._start_average(payload)
        dataset = self._load_data(dataset)
        # best.pt only where the monitoring images are not trained on (folders; a rendered
        # dataset's monitoring scenes are training scenes too).
        self.keeps_best = dataset.training_indices(MONITOR_SIZE) is not None and not self.config.train.supervised
        self.arrays = dataset.arrays()
        self.batches = Batches(self.model, self.config, self.arrays, dataset.training_indices(MONITOR_SIZE))
        self.loss = self._step_loss()
        monitor = dataset.monitor_indices(MONITOR_SIZE)
        self.monitor_x = images_to_tensor(self.arrays["images"][monitor]).to(context.device)
        self.monitor_count = torch.from_numpy(self.arrays["count"][monitor]).to(context.device)
        self.labelled = self.monitor_count >= 0  # the monitoring images with a count to report accuracy on
        self.writer = self._open_outputs()
        self.collapse = CollapseWatch(self.config.air.max_steps)  # warns when the inferred counts collapse
        self._start = time.perf_counter() - self.elapsed
        self.saved_step = self.step  # the step on disk: nothing new to save before a step ends

    def _previous_run(self, config: RunConfig, resume: bool) -> dict | None:
        """The checkpoint to resume from (None for a new run); refuses to overwrite a run."""
        checkpoint = self.out / CHECKPOINT
        if resume:
            return load_checkpoint(checkpoint, expect_kind=config.air.kind)
        if checkpoint.exists() and self.context.is_main:
            raise UserError(f"{self.out}: already holds a training run; pass --resume to continue "
                            f"it or choose another --out")
        return None

    def _resumed_config(self, payload: dict, config: RunConfig) -> RunConfig:
        """The saved run's configuration; only the length of the run may change on resume
        (:func:`~inverse_air.plan.resume_config` refuses flags that ask for more)."""
        saved: RunConfig = payload["config"]
        if payload.get("optimizer") is None:
            raise UserError(f"{self.out / CHECKPOINT}: holds no optimizer state (an exported model?); "
                            f"it cannot be resumed")
        if config.train.steps < payload["step"]:
            raise UserError(f"--steps {config.train.steps}: the run in {self.out} is at step "
                            f"{payload['step']} already")
        return dataclasses.replace(saved, data=config.data or saved.data,
                                   train=dataclasses.replace(saved.train, steps=config.train.steps))

    def _check_memory(self) -> None:
        """Refuse batches whose steps cannot fit in this machine's memory (before any is tried)."""
        tc, air = self.config.train, self.config.air
        estimate = KINDS[air.kind].memory_per_image
        phases = {"supervised"} if tc.supervised else ({"elbo"} | ({"sleep"} if tc.sleep_steps else set()))
        if tc.sleep_steps >= tc.steps:
            phases.discard("elbo")
        world = self.context.world
        for phase in sorted(phases):
            flag, batch = ("--elbo-batch-size", tc.elbo_batch_size) if phase == "elbo" else ("--batch-size", tc.batch_size)
            check_memory(estimate(air, phase) * -(-batch // world), f"{flag} {batch:,} ({phase} steps)",
                         f"use a smaller {flag}", device=self.context.device)
        if "sleep" in phases and tc.sleep_pool:  # the pool's uint8 images, on the host
            scenes = min(tc.sleep_pool, max(tc.batch_size, tc.sleep_steps * tc.sleep_refresh))
            check_memory(scenes * air.image_size ** 2 * air.channels, f"a sleep pool of {scenes:,} scenes",
                         "use a smaller TrainConfig.sleep_pool")

    def _build(self) -> tuple[AIR, torch.optim.Optimizer]:
        config = self.config
        torch.manual_seed(config.train.seed)
        model = build_model(config.air).to(self.context.device)
        if config.train.sleep_fraction > 0 and not config.train.supervised \
                and not isinstance(model.objects, PriorSampler):
            raise UserError(f"--sleep-fraction {config.train.sleep_fraction}: the {config.air.kind} "
                            f"model has no sleep phase (its generative model is learned); use 0")
        tc = config.train
        return model, torch.optim.Adam(parameter_groups(model, tc.lr, tc.baseline_lr))

    def _restore(self, payload: dict) -> None:
        path = self.out / CHECKPOINT
        try:  # with an average, "weights" holds it and "trained_weights" the weights as trained
            self.model.load_state_dict(payload.get("trained_weights") or payload["weights"])
            self.optimizer.load_state_dict(payload["optimizer"])  # moved to the parameters' device
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: weights or optimizer state do not fit the run's "
                            f"model ({str(e).splitlines()[0][:200]})") from None
        problem = _optimizer_state_problem(self.model, self.optimizer)
        if problem is not None:
            raise UserError(f"{path}: damaged optimizer state ({problem}; saved in the middle of a step by an "
                            f"older version?), so the run cannot be resumed; to start it over, delete {path} "
                            f"(or keep its weights: a new run with --init {path})")
        self.step = payload["step"]
        self.window = payload["extra"].get("window", [])
        self.elapsed = payload["extra"].get("time_s", 0.0)
        self.best_elbo = payload["extra"].get("best_elbo")
        self.pool = self._load_pool()

    def _start_average(self, payload: dict | None) -> None:
        """The weights' average: a resumed run's (where its checkpoint holds one), else from the
        weights as they are now."""
        self.average = WeightAverage(self.model, lambda: build_model(self.config.air), self.config.train.weight_average)
        if payload is not None and payload.get("trained_weights") is not None:
            try:
                self.average.load(payload["weights"], payload["extra"].get("average_updates", 0))
            except RuntimeError as e:
                raise UserError(f"{self.out / CHECKPOINT}: averaged weights do not fit the run's model "
                                f"({str(e).splitlines()[0][:200]})") from None

    @property
    def kept(self) -> AIR:
        """The model the run saves, monitors, draws and searches from: the weights' average where
        the run keeps one (``TrainConfig.weight_average``), else the model being trained."""
        return self.average.model if self.average is not None else self.model

    def _start_from(self, init: str) -> None:
        """``--init``: the checkpoint's weights, fresh learning-signal statistics (a new
        optimizer was made already)."""
        try:
            self.model.load_state_dict(load_checkpoint(init, expect_kind=self.config.air.kind)["weights"])
        except (RuntimeError, KeyError) as e:
            raise UserError(f"--init {init}: weights do not fit the model its configuration describes "
                            f"({str(e).splitlines()[0][:200]})") from None
        self.model.signal_stats.copy_(torch.tensor([0.0, 1.0, 0.0]))

    def _load_data(self, dataset: Dataset | None) -> Dataset:
        """The run's dataset (``dataset`` if the caller opened it already), checked against the model."""
        air = self.config.air
        if dataset is None:
            dataset = open_dataset(self.config.data, air.kind, air.image_size, air.channels,
                                   progress=self.progress)
        dataset.check_fits(air, "--model")
        if self.config.train.supervised and dataset.config is None:  # a folder: are its labels whole?
            truth = dataset.arrays(images=False)
            if (truth["count"] < 0).any() or len(truth) == 1:
                raise UserError(f"--supervised: {self.config.data} lacks the ground truth of some images (each "
                                f"needs a labels.jsonl line with its objects)")
        return dataset

    def _step_loss(self) -> nn.Module:
        tc = self.config.train
        loss = StepLoss(self.model, self.context, tc.score_signal == "normalized", tc.teacher_weight)
        if self.context.world == 1:
            return loss
        # Baseline parameters sit out the sleep and supervised phases: find_unused_parameters.
        device = self.context.device
        return nn.parallel.DistributedDataParallel(
            loss, find_unused_parameters=True, broadcast_buffers=False,
            device_ids=[device.index] if device.type == "cuda" else None)

    def _open_outputs(self):
        """Rank 0: the run directory, its configuration, metrics (cut back to the checkpoint's
        step) and the TensorBoard writer."""
        if not self.context.is_main:
            return None
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / SNAPSHOTS).mkdir(exist_ok=True)
        except OSError as e:
            raise UserError(f"--out {self.out}: cannot create the run directory: {e.strerror or e}") from None
        write_json(self.out / CONFIG, {"config": to_dict(self.config)})
        self._truncate_metrics()
        return _tensorboard(self.out / "tb", self.step)

    # -------------------------------------------------------------- phases
    def phase(self, step: int) -> str:
        tc = self.config.train
        if tc.supervised:
            return "supervised"
        return "sleep" if step < tc.sleep_steps else "elbo"

    def learning_rate(self, step: int) -> float:
        tc = self.config.train
        phase = self.phase(step)
        start, length, lr = (0, tc.sleep_steps, tc.lr) if phase == "sleep" else (
            (0, tc.steps, tc.lr) if phase == "supervised" else (tc.sleep_steps, tc.steps - tc.sleep_steps, tc.elbo_lr))
        frac = (step - start) / max(1, length)
        return lr * (1.0 - (1.0 - tc.lr_decay_to) * frac)

    def train_step(self, step: int) -> dict:
        tc, context = self.config.train, self.context
        torch.manual_seed(_step_seed(tc.seed, step, context.rank))
        phase = self.phase(step)
        self.model.train()
        lr = self.learning_rate(step)
        self.optimizer.param_groups[0]["lr"] = lr
        if phase == "elbo":
            self.model.prior_pres.copy_(annealed_presence_prior(  # the model's own after the anneal
                self.presence_prior, tc.presence_anneal_start, tc.presence_anneal_steps, step - tc.sleep_steps))
            x, target = self.batches.data(step, tc.elbo_batch_size, context.part(tc.elbo_batch_size), targets=False)
            if tc.teacher_images and step - tc.sleep_steps >= tc.teacher_from:
                target = self._lessons(x[:tc.teacher_images])
        elif phase == "sleep":
            x, target = self.batches.sleep(step, tc.batch_size, context.part(tc.batch_size))
        else:
            x, target = self.batches.data(step, tc.batch_size, context.part(tc.batch_size))
        try:
            loss, stats = self.loss(phase, x, target)
        except RuntimeError as e:  # e.g. sampling from NaN probabilities
            if all(torch.isfinite(p).all() for p in self.model.parameters()) and torch.isfinite(x).all():
                raise
            raise TrainingDiverged(self._diverged(step, f"non-finite values ({str(e).splitlines()[0][:120]})")) from None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # with several processes, gradients are averaged over them here
        stats = {"loss": loss.item(), **stats}
        if context.world > 1:  # report the means over all processes' examples
            values = context.all_reduce_sum(torch.tensor(list(stats.values()), dtype=torch.float64))
            stats = dict(zip(stats, (values / context.world).tolist()))
        if not np.isfinite(stats["loss"]):
            raise TrainingDiverged(self._diverged(step, f"loss is {stats['loss']}"))
        for group in self.optimizer.param_groups:
            norm = torch.nn.utils.clip_grad_norm_(group["params"], tc.clip_norm)
            if not torch.isfinite(norm):
                raise TrainingDiverged(self._diverged(step, f"{group['name']} gradient norm is {norm.item()}"))
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model)
        if self.workers is not None:
            self.workers.publish(self.kept)
        return {"phase": phase, "lr": lr, **stats}

    def _lessons(self, x: torch.Tensor) -> Lesson | None:
        """What the count search teaches this step: its answers on ``x`` (this step's first
        images), or with ``teacher_workers`` the lessons its processes sent since the last step
        (None: none yet); with ``teacher_pool``, pooled with the last ones. The search starts
        from the one pass of the model the run keeps: with ``weight_average``, the average (a
        steadier teacher than the weights of the last step: the "mean teacher")."""
        tc = self.config.train
        if not tc.teacher_workers:
            self.kept.eval()
            lessons = [search_answer(self.kept, x, tc.teacher_steps)]
            self.model.train()
        else:
            if self.workers is None:
                indices = self.batches.indices
                images = self.arrays["images"] if indices is None else self.arrays["images"][indices]
                self.workers = SearchWorkers(self.kept, images, tc.teacher_images, tc.teacher_steps,
                                             tc.seed, tc.teacher_workers)
            device = self.context.device
            lessons = [Lesson(images.to(device), _to(answer, device), share)
                       for images, answer, share in self.workers.lessons()]
        target, size = self.pool, tc.teacher_pool or sum(len(lesson.images) for lesson in lessons)
        for lesson in lessons:
            target = pooled(target, lesson, size)
        if tc.teacher_pool:
            self.pool = target
        return target

    # -------------------------------------------------------------- run
    def run(self) -> dict:
        """Train to ``steps``; returns the last logged metrics (with ``step`` always). The run
        directory is unlocked at the end, however the run ends.

        Ctrl-C and SIGTERM let the step under way finish (with its metrics, snapshot and
        checkpoint if due), save a checkpoint of it (unless one of that step is saved already;
        none before the first step ends) and raise ``KeyboardInterrupt``
        (:class:`~inverse_air.errors.Terminated` for SIGTERM): a checkpoint always holds the
        state after a whole step, so a resumed run equals an uninterrupted one. A second signal
        stops at once and saves nothing (the last checkpoint stays)."""
        try:
            with deferred_interrupts(STOP_NOTICE if self.progress else "") as stop:
                return self._run(stop)
        finally:
            if self.workers is not None:
                self.workers.close()
                self.workers = None
            self.release()

    def release(self, undo: bool = False) -> None:
        """Unlock the run directory (``undo``: the run never started; see
        :meth:`~inverse_air.rundir.RunDirectory.release`)."""
        if self.rundir is not None:
            self.rundir.release(undo)

    def _stop_requested(self, stop) -> bool:
        """Whether a signal asked to stop (in any process: they stop after the same step)."""
        if self.context.world == 1:
            return stop.requested
        flag = torch.tensor([float(stop.requested)], device=self.context.device)
        return bool(self.context.all_reduce_sum(flag).item() > 0)

    def _run(self, stop) -> dict:
        tc = self.config.train
        bar = progress_bar(total=tc.steps, initial=self.step, disable=not self.progress, unit="step")
        last = {"step": self.step}
        self._start = time.perf_counter() - self.elapsed
        try:
            while self.step < tc.steps:
                if self._stop_requested(stop):
                    if self.step != self.saved_step:
                        self.save()
                    raise stop.interruption()
                stats = self.train_step(self.step)
                self.step += 1
                self.window.append(stats)
                if self.step % tc.log_every == 0 or self.step == tc.steps:
                    last = self._log(self.window, time.perf_counter() - self._start)
                    self.window = []
                    if self.context.is_main:
                        bar.set_postfix(self.progress_text(last))
                if self.step % tc.image_every == 0 or self.step == tc.steps:
                    self.snapshot()
                if self.step % tc.checkpoint_every == 0 or self.step == tc.steps:
                    self.save()
                bar.update(1)
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.close()
        return last

    def _pool_path(self) -> Path:
        rank = self.context.rank
        return self.out / (TEACHER_POOL if self.context.world == 1 else f"teacher_pool.rank{rank}.pt")

    def _load_pool(self) -> Lesson | None:
        """The teacher's pool saved with the checkpoint being resumed (None: none, or not of its step)."""
        path = self._pool_path()
        if not self.config.train.teacher_pool or not path.exists():
            return None
        try:
            saved = torch.load(path, map_location=self.context.device, weights_only=True)
        except Exception as e:  # written atomically, so only a file damaged since
            raise UserError(f"{path}: unreadable ({str(e).splitlines()[0][:120]}); delete it to resume "
                            f"with an empty pool") from None
        if saved["step"] != self.step:
            return None
        return Lesson(saved["images"], saved["answer"], saved["share"])

    def save(self) -> None:
        self.saved_step = self.step
        if self.pool is not None:  # every process its own, beside the checkpoint
            write_tensors(self._pool_path(), {"step": self.step, "images": self.pool.images.cpu(), "share": self.pool.share,
                                              "answer": {k: v.cpu() for k, v in self.pool.answer.items()}})
        if not self.context.is_main:
            return
        trained, averaged = (None, {}) if self.average is None else \
            (self.model, {"average_updates": self.average.updates})
        save_checkpoint(self.out / CHECKPOINT, self.kept, self.config, self.step, self.optimizer, trained=trained,
                        window=self.window, time_s=time.perf_counter() - self._start, best_elbo=self.best_elbo,
                        **averaged)

    # -------------------------------------------------------------- reporting
    def monitor(self) -> dict:
        """The model on the monitoring images (:func:`image_terms`): the histogram of inferred
        counts (fractions of the images, counts 0..N), the means of the one-sample ELBO terms
        and, over the images with a label, the count accuracy."""
        model = self.kept
        model.eval()
        model.prior_pres.copy_(self.presence_prior)  # the model's own, not the anneal's
        terms = image_terms(model, self.monitor_x)
        count = terms.pop("count")
        report = {f"monitor_{k}": float(v.mean()) for k, v in terms.items()}
        hist = torch.bincount(count, minlength=self.config.air.max_steps + 1).double() / len(count)
        report["monitor_count_hist"] = [round(v, 4) for v in hist.tolist()]
        if self.labelled.any():
            right = count[self.labelled] == self.monitor_count[self.labelled]
            report["monitor_count_accuracy"] = float(right.float().mean())
        return report

    def _log(self, window: list[dict], elapsed: float) -> dict:
        record = {"step": self.step, "phase": window[-1]["phase"], "time_s": round(elapsed, 2)}
        for key in window[-1]:
            values = [w[key] for w in window if key in w and not isinstance(w[key], str)]
            if values:
                record[key] = float(np.mean(values))
        if not self.context.is_main:
            return record
        record.update(self.monitor())
        if self.keeps_best and (self.best_elbo is None or record["monitor_elbo"] > self.best_elbo):
            self.best_elbo = record["best_elbo"] = record["monitor_elbo"]
            save_checkpoint(self.out / BEST, self.kept, self.config, self.step, monitor_elbo=self.best_elbo)
        tc = self.config.train  # not while the presence prior is annealed: counts start at the maximum then
        annealing = 0 < self.step - tc.sleep_steps < tc.presence_anneal_steps
        warning = None if annealing else self.collapse.update(record["monitor_count_hist"], self.step)
        if warning:  # also in metrics.jsonl, so that a run's log says when it happened
            record["warning"] = warning
            print(("\n" if self.progress else "") + warning, file=sys.stderr, flush=True)
        try:
            with open(self.out / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise UserError(f"{self.out / METRICS}: cannot write: {e.strerror or e}") from None
        if self.writer is not None:
            for key, value in record.items():
                for name, v in ({f"{key}/{i}": v for i, v in enumerate(value)} if isinstance(value, list)
                                else {key: value}).items():
                    if key not in ("step", "phase", "warning"):
                        self.writer.add_scalar(name, v, self.step)
            self.writer.flush()
        return record

    @staticmethod
    def progress_text(record: dict) -> dict[str, str]:
        """The progress bar's postfix for a metrics record: phase and loss, then the monitoring
        count accuracy (with labels) or the ELBO and the inferred-count histogram."""
        text = {"phase": record["phase"], "loss": f"{record['loss']:.3g}"}
        if "monitor_count_accuracy" in record:
            text["count_acc"] = f"{record['monitor_count_accuracy']:.3f}"
        else:
            text["elbo"] = f"{record['monitor_elbo']:.4g}"
        text["counts"] = "/".join(f"{v:.2f}" for v in record["monitor_count_hist"])
        return text

    @torch.no_grad()
    def snapshot(self) -> Path | None:
        """``images/step-N.png``: monitoring images (top) and their reconstructions (below), each
        inferred object outlined in its step's colour (2D: its window; 3D: its silhouette)."""
        from .files import write_image
        from .viz import outlines_figure

        if not self.context.is_main:
            return None
        model = self.kept
        model.eval()
        x = self.monitor_x[:SNAPSHOT_SIZE]
        latents = model.infer(x, sample=False)
        masks = model.objects.outline_masks(latents.z_pres, latents.objects, latents.scene or None)
        figure = outlines_figure(to_uint8(x), to_uint8(model.reconstruct(latents)), masks.cpu().numpy(),
                                 latents.z_pres.cpu().numpy() > 0.5)
        path = self.out / SNAPSHOTS / f"step-{self.step:07d}.png"
        write_image(path, figure)
        return path

    def _diverged(self, step: int, what: str) -> str:
        return (f"training diverged at step {step + 1} ({self.phase(step)} phase): {what}; the last "
                f"good checkpoint ({self.out / CHECKPOINT}, step {self._saved_step()}) is kept")

    def _saved_step(self) -> int | str:
        path = self.out / CHECKPOINT
        return load_checkpoint(path)["step"] if path.exists() else "none"

    def _truncate_metrics(self) -> None:
        """On resume, drop metric lines newer than the checkpoint (they will be redone)."""
        path = self.out / METRICS
        if not path.exists():
            return
        keep = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):  # a line cut short by a kill, or junk
                continue
        write_text(path, "".join(line + "\n" for line in keep))


def train(config: RunConfig, out_dir: str | os.PathLike, resume: bool = False,
          progress: bool = True, device: str = "auto", dataset: Dataset | None = None) -> dict:
    """Train (or resume) a run in ``out_dir``; returns the last logged metrics. ``dataset``:
    the run's data opened already (:func:`~inverse_air.plan.prepare_run`), else they are opened here.

    Under ``torchrun`` each process calls this; they train one model together
    (:mod:`inverse_air.distributed`).
    """
    context = setup(device)
    finished = False
    try:
        metrics = Trainer(config, out_dir, resume=resume, progress=progress, context=context, dataset=dataset).run()
        finished = True
        return metrics
    finally:
        teardown(context, finished)


ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")
"""What Adam keeps of each parameter it has updated (``torch.optim.Adam``)."""


def _optimizer_state_problem(model: nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """What is wrong with a loaded Adam state (None if nothing): each parameter's state is
    empty (never updated) or complete, with moments of the parameter's shape."""
    names = {p: name for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            needed = ADAM_STATE + (("max_exp_avg_sq",) if group.get("amsgrad") else ())
            missing = [key for key in needed if key not in state]
            if missing:
                return f"{names.get(p, 'a parameter')} lacks {', '.join(missing)}"
            for key in needed[1:]:
                if not torch.is_tensor(state[key]) or state[key].shape != p.shape:
                    return f"{names.get(p, 'a parameter')}'s {key} is not of the parameter's shape"
    return None


def _step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The torch seed of step ``step`` (model sampling in the ELBO phase) on rank ``rank``."""
    entropy = [seed, step, 3] if rank == 0 else [seed, step, 3, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _tensorboard(path: Path, step: int):
    """A TensorBoard writer of the run's scalars, or None (saying so once) when the optional
    ``tensorboard`` package is not installed (``pip install 'inverse-air[tensorboard]'``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("notice: TensorBoard logs are off (the tensorboard package is not installed: "
              "pip install 'inverse-air[tensorboard]'); metrics.jsonl has the same scalars",
              file=sys.stderr)
        return None
    return SummaryWriter(str(path), purge_step=step if step > 0 else None)

