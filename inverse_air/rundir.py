"""A training run's directory: what makes a folder one, and the lock that lets one run at a time
write there.

A run directory holds :data:`MARKER`, written when a run first claims the folder (a directory
that holds ``checkpoint.pt`` but no marker, made by an older version, counts as one too). A new
run may use a folder that does not exist, an empty one, or a run directory without a checkpoint
(a run killed before its first one); any other folder holds someone else's files (their
``config.json``, ``metrics.jsonl``, ``images/``) and is refused, so that nothing of theirs is
overwritten.

While a run trains it holds an exclusive ``flock`` on the marker, which also records its process
id: a second run on the same folder is refused with one line naming that process. The kernel
releases the lock when the process ends, however it ends (``kill -9`` included), so a lock is
never stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import UserError

MARKER = ".inverse-air-run"
"""The file that marks a folder as a run directory and that a running run holds locked."""


class RunDirectory:
    """A claimed run directory, locked until :meth:`release` (or until the process ends).

    Args:
        path: the folder (created with its parents if missing).
        checkpoint: the name of a run's checkpoint file in it (its presence marks a run
            directory of an older version).
        option: how the user named the folder, for messages (``--out``).

    Raises:
        UserError: the folder holds files and is not a run directory, it cannot be created,
            or another process's run holds it (naming that process).
    """

    def __init__(self, path: str | os.PathLike, checkpoint: str, option: str = "--out"):
        self.path = Path(path)
        self.created = not self.path.exists()
        if not self.created and not is_run_directory(self.path, checkpoint):
            names = sorted(p.name for p in self.path.iterdir())
            if names:
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                raise UserError(f"{option} {self.path}: holds files that are not a training run's ({shown}); "
                                f"a run would overwrite them: choose a new or empty folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path / MARKER, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"{option} {self.path}: cannot create the run directory: {e.strerror or e}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            os.close(self._fd)
            self._fd = None
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise UserError(f"{option} {self.path}: another training run ({who}) is using this folder; wait "
                            f"for it to end or choose another {option}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, undo: bool = False) -> None:
        """Unlock (idempotent). ``undo``: the run never started; a folder this claim created is
        removed again if it holds nothing else."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if undo and self.created:
            (self.path / MARKER).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:
                pass


def is_run_directory(path: str | os.PathLike, checkpoint: str) -> bool:
    """Whether ``path`` is a run directory: it holds :data:`MARKER` or ``checkpoint``."""
    path = Path(path)
    return (path / MARKER).is_file() or (path / checkpoint).is_file()
