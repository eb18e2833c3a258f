"""What this machine can do: memory, CPU cores and disk, and one way to refuse a request that
does not fit (a one-line :class:`~inverse_air.errors.UserError` naming the request, what it
needs and what there is) before it grows a process until the kernel kills it.

Estimates of what a request needs live with the code that makes the request (a training step
in :mod:`inverse_air.train`, a shard in :mod:`inverse_air.data`); this module only measures
the machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import UserError

MEMORY_SHARE = 0.8
"""Share of the available memory one request may plan to use (the rest: the interpreter,
torch's allocator, other processes)."""


def available_memory() -> int:
    """Bytes of memory this process can still use: ``MemAvailable`` from ``/proc/meminfo``
    (free memory plus what the kernel can reclaim), capped by the cgroup's limit (containers),
    or ``os.sysconf``'s free pages where there is no ``/proc``."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 2**62  # unknown: do not refuse
    return min(available, _cgroup_room())


def _cgroup_room() -> int:
    """Bytes left under this process's cgroup (v2) memory limit; large when there is none."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        return 2**62 if limit == "max" else max(0, int(limit) - used)
    except (OSError, ValueError):
        return 2**62


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def disk_free(path: str | os.PathLike) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 2**62


def size_text(n: float) -> str:
    """Bytes for people: ``1.5 GB``, ``320 MB``, ``12 KB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def device_memory(device) -> int:
    """Free bytes of a CUDA device's memory (``torch.cuda.mem_get_info``); the machine's
    available memory for the CPU."""
    if getattr(device, "type", device) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory()


def check_memory(needed: float, what: str, hint: str = "", device=None) -> None:
    """Refuse (``UserError``) a request that needs more than :data:`MEMORY_SHARE` of the
    available memory (of ``device`` when it is a CUDA device: :func:`device_memory`).

    Args:
        needed: the estimate, in bytes.
        what: the request, as the user made it (``--batch-size 100000``).
        hint: what to do instead (``use a smaller --batch-size``).
    """
    cuda = getattr(device, "type", device) == "cuda"
    room = MEMORY_SHARE * (device_memory(device) if cuda else available_memory())
    if needed > room:
        where = f"{device} has" if cuda else "this machine has"
        raise UserError(f"{what} needs about {size_text(needed)} of memory; {where} "
                        f"{size_text(room / MEMORY_SHARE)} available{'; ' + hint if hint else ''}")
