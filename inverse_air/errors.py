"""The one exception type the CLI turns into a one-line message and exit code 1, and how a
termination request (SIGTERM) becomes an interruption that code can clean up after."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class UserError(Exception):
    """Bad input from the user (a file, a directory, an option). The message is one line that
    names the bad input; the CLI prints it without a traceback and exits with status 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a scheduler or ``kill`` stopping the process): handled like Ctrl-C, so
    what saves work on Ctrl-C (a checkpoint, whole shards) saves it here too."""


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere,
    and outside the block, SIGTERM keeps its handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
