"""One clock for every duration: monotonic nanoseconds, replaceable in tests.

Wall-clock time appears only in log records (``wall_iso``); an NTP step on a Pi that
booted without a clock must never change a measured latency or a deadline.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Monotonic time in nanoseconds."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic_ns`` (CLOCK_MONOTONIC, same base as V4L2 timestamps)."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.monotonic_ns()


class FakeClock:
    """A clock that moves only when told to; thread-safe, for deterministic pipeline tests.

    ``advance`` wakes any thread blocked in :meth:`wait_until`, so tests can make a
    stage "take" 50 ms without sleeping.
    """

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self._now = start_ns
        self._cond = threading.Condition()

    def now_ns(self) -> int:
        with self._cond:
            return self._now

    def advance(self, ns: int) -> None:
        with self._cond:
            self._now += ns
            self._cond.notify_all()

    def set(self, ns: int) -> None:
        with self._cond:
            self._now = ns
            self._cond.notify_all()

    def wait_until(self, t_ns: int, timeout_s: float | None = None) -> bool:
        """Block until the fake time reaches ``t_ns``; False if ``timeout_s`` (real) ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._now >= t_ns, timeout_s)


MONOTONIC = MonotonicClock()


def wall_iso() -> str:
    """Wall-clock time for log records only, ISO 8601 with milliseconds and UTC offset."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
