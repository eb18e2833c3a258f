"""Progress bars on stderr that suit where stderr goes: a live bar on a terminal; in a log
file or CI (not a terminal) one plain line every :data:`LOG_INTERVAL_S` seconds at most,
instead of a redraw every tenth of a second."""

from __future__ import annotations

import sys

LOG_INTERVAL_S = 30.0
"""Seconds between progress lines when stderr is not a terminal."""


def progress_bar(**kwargs):
    """A ``tqdm`` bar on stderr (``kwargs`` as tqdm's: ``total``, ``unit``, ``desc``,
    ``disable``, ``initial``)."""
    from tqdm.auto import tqdm

    if sys.stderr.isatty():
        return tqdm(dynamic_ncols=True, file=sys.stderr, **kwargs)
    return tqdm(file=sys.stderr, mininterval=LOG_INTERVAL_S, maxinterval=10 * LOG_INTERVAL_S,
                ncols=100, ascii=True, **kwargs)
