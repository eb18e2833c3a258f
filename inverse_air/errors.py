"""The one exception type the CLI turns into a one-line message and exit code 1, how a
termination request (SIGTERM) becomes an interruption that code can clean up after (at once,
:func:`sigterm_interrupts`, or once the step under way is finished, :func:`deferred_interrupts`),
and how a line that names files reaches people (:func:`printable`, :func:`notice`)."""

from __future__ import annotations

import os
import signal
import sys
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


class StopRequest:
    """The first SIGINT or SIGTERM :func:`deferred_interrupts` recorded (none yet: ``signum`` None)."""

    def __init__(self):
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def interruption(self) -> KeyboardInterrupt:
        """The exception that stops the process for the recorded signal."""
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def deferred_interrupts(notice: str = "") -> Iterator[StopRequest]:
    """Within the block, the first Ctrl-C (SIGINT) or SIGTERM is only recorded in the
    :class:`StopRequest` it yields (and ``notice`` printed), so that a loop can finish the step
    it is in, save what it has and then raise ``stop.interruption()``: work is never saved
    half done. A second signal raises at once (``KeyboardInterrupt``, :class:`Terminated` for
    SIGTERM), without waiting for the step. Outside the main thread nothing is deferred."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.signum is None:
            stop.signum = signum
            if notice:
                os.write(2, notice.encode())  # async-signal-safe, unlike print
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)


def printable(text: str) -> str:
    """``text`` as one line of output: every character that is not printable (newlines, tabs,
    terminal escapes, bidirectional overrides, the undecodable bytes of a file name) written
    as Python writes it in a string literal (``\\n``, ``\\x1b``, ``\\u202e``, ``\\udcff``), so that a
    file name can neither break its line nor forge another."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def notice(text: str) -> None:
    """One ``notice:`` line on stderr (:func:`printable`): a conversion or a derived setting."""
    _line("notice", text)


def warning(text: str) -> None:
    """One ``warning:`` line on stderr (:func:`printable`): the command goes on, but its result
    may not be what was meant."""
    _line("warning", text)


def _line(label: str, text: str) -> None:
    print(printable(f"{label}: {text}"), file=sys.stderr)
