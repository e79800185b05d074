"""Pacing: deliver recorded frames on a camera's schedule, and wait without sleeping.

Frame ``k`` of a paced source is due at ``start + k * period_ns``: the schedule advances by
``next_ns += period_ns`` and never by "now + period", so a slow read or a late wake-up does
not shift every later frame (no drift). A frame is stamped with its due time, the moment a
camera running at that rate would have captured it; when the reader falls a whole period or
more behind, the frames a camera would have overwritten meanwhile are skipped (and
counted), as a camera with one buffer would.

Waiting blocks on an :class:`threading.Event` with a timeout, so ``close()`` from another
thread wakes the reader at once; with a :class:`~edge.testing.FakeClock` it blocks on the
fake clock instead, so tests move time by hand.
"""

from __future__ import annotations

import threading
import time

from edge.clock import Clock
from edge.testing.clock import FakeClock


def wait_until(clock: Clock, t_ns: int, timeout_s: float, stop: threading.Event) -> bool:
    """Block until ``clock`` reaches ``t_ns``; False if ``timeout_s`` ran out or ``stop`` was set.

    ``timeout_s`` is real time (a blocking bound, like every ``read(timeout_s)``).
    """
    if stop.is_set():
        return False
    if isinstance(clock, FakeClock):
        return clock.wait_until(t_ns, max(0.0, timeout_s)) and not stop.is_set()
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        remaining_ns = t_ns - clock.now_ns()
        if remaining_ns <= 0:
            return True
        budget_s = deadline - time.monotonic()
        if budget_s <= 0:
            return False
        # Event.wait can wake a few microseconds early; the loop re-checks the clock.
        if stop.wait(min(remaining_ns / 1e9, budget_s)):
            return False


class Pacer:
    """The schedule of a paced source: which frame is due when, and how far behind we are."""

    def __init__(self, fps: float, clock: Clock) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period_ns = round(1e9 / fps)
        self._clock = clock
        self._next_ns: int | None = None
        #: frames skipped because the reader was a whole period or more behind
        self.skipped = 0

    @property
    def next_ns(self) -> int:
        """Due time of the next frame (the schedule starts at the first call)."""
        if self._next_ns is None:
            self._next_ns = self._clock.now_ns()
        return self._next_ns

    def behind(self) -> int:
        """How many whole frames are overdue beyond the next one (0 when on time)."""
        late_ns = self._clock.now_ns() - self.next_ns
        return max(0, late_ns // self.period_ns)

    def advance(self, frames: int = 1) -> None:
        self._next_ns = self.next_ns + frames * self.period_ns

    def skip(self, frames: int) -> None:
        """Drop ``frames`` overdue frames from the schedule, counting them."""
        self.skipped += frames
        self.advance(frames)

    def wait_due(self, timeout_s: float, stop: threading.Event) -> int | None:
        """Block until the next frame is due; its due time, or None on timeout/stop."""
        due = self.next_ns
        if not wait_until(self._clock, due, timeout_s, stop):
            return None
        return due
