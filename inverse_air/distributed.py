"""Several processes training one model: PyTorch's own distributed stack, nothing home-made.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address), ``train`` joins a process group (``gloo`` on CPU, ``nccl`` on CUDA) and
wraps its loss in ``DistributedDataParallel``. Without those variables everything here is a
no-op for a single process.

**Batches.** ``TrainConfig.batch_size`` is the *global* batch: every rank draws the same global
batch from generators seeded by ``(seed, step)`` and takes its own contiguous slice (rank ``r``
of ``P`` gets examples ``r*B/P`` to ``(r+1)*B/P``). DDP averages the gradients, so a step on P
processes is the step one process takes on the whole batch: the learning rates need no
scaling, and a run's result does not depend on P (up to floating-point summation order; the
test suite checks it).

**Device.** ``--device auto`` picks CUDA when it is available (rank ``r`` on ``cuda:LOCAL_RANK``)
and the CPU otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UserError


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and shows progress."""
        return self.rank == 0

    def part(self, size: int) -> slice:
        """This rank's contiguous slice of a global batch of ``size`` examples."""
        if size % self.world:
            raise UserError(f"batch size {size} does not split evenly over {self.world} processes")
        per = size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all ranks (in place; identity for one process)."""
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cuda`` without CUDA is a user error."""
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup(device: str = "auto") -> Context:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world == 1:
        return Context(device=dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), device=dev)


def teardown(context: Context, finished: bool = True) -> None:
    """Leave the process group. A rank that ``finished`` waits first for the others to finish
    too, so that none closes its connections while another still talks or writes (one CI run saw
    a rank abort in gloo's shutdown while rank 0 was saving); after an error nothing waits."""
    if context.world > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
