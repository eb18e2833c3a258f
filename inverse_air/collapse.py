"""Noticing, without labels, that AIR has stopped finding objects.

The known way unsupervised AIR fails is a collapse of the inferred count: every image read as
empty (objects cost their KL and the decoder does not yet explain enough to pay for them) or
every image read as full (each extra window refines what the others drew). Training watches the
histogram of inferred counts on its monitoring images at each log interval and warns, in one
line, when one of the two ends holds almost every image for many intervals in a row: a run in
that state rarely recovers, and a person should look at its snapshots.
"""

from __future__ import annotations

COLLAPSE_SHARE = 0.98
"""The share of monitoring images at count 0 (or at the maximum) that counts as collapsed."""
COLLAPSE_INTERVALS = 10
"""Consecutive collapsed log intervals before the warning."""


class CollapseWatch:
    """Reads each log interval's histogram of inferred counts and says when they collapse.

    Args:
        max_count: the most objects the model infers (the histogram covers 0..max_count).
        intervals: consecutive collapsed intervals before warning (:data:`COLLAPSE_INTERVALS`).
        share: the share of images at one end that counts as collapsed (:data:`COLLAPSE_SHARE`).

    The warning is given once per collapse: after it, the watch waits for the counts to leave
    that end before it can warn again.
    """

    def __init__(self, max_count: int, intervals: int = COLLAPSE_INTERVALS, share: float = COLLAPSE_SHARE):
        if max_count < 1 or intervals < 1 or not 0.5 < share <= 1.0:
            raise ValueError(f"max_count and intervals must be at least 1 and share in (0.5, 1], "
                             f"got {max_count}, {intervals}, {share}")
        self.max_count, self.intervals, self.share = max_count, intervals, share
        self.end: int | None = None  # the count the histograms are collapsed at (0 or max_count)
        self.since: int | None = None  # the step of the first collapsed interval in a row
        self.run = 0  # collapsed intervals in a row
        self.warned = False

    def update(self, hist: list[float], step: int) -> str | None:
        """One log interval's histogram (fractions of the monitoring images with 0..max_count
        objects) at training step ``step``; returns the warning line when this interval makes
        ``intervals`` collapsed ones in a row, else None."""
        if len(hist) != self.max_count + 1:
            raise ValueError(f"hist needs {self.max_count + 1} entries (counts 0..{self.max_count}), got {len(hist)}")
        end = 0 if hist[0] >= self.share else (self.max_count if hist[-1] >= self.share else None)
        if end is None or end != self.end:
            self.end, self.since, self.run, self.warned = end, step, 0, False
        if end is None:
            return None
        self.run += 1
        if self.run < self.intervals or self.warned:
            return None
        self.warned = True
        what = "no objects" if end == 0 else f"the most objects the model allows ({end})"
        return (f"warning: the model has inferred {what} in {100 * self.share:.0f}% or more of the monitoring "
                f"images for {self.run} log intervals in a row (steps {self.since:,}-{step:,}): it is not finding "
                f"the objects; look at the snapshots in images/ (a run in this state rarely recovers: try "
                f"another --seed or --object-size)")
