"""One clock for every duration: monotonic nanoseconds, replaceable in tests
(:class:`edge.testing.FakeClock`).

Wall-clock time appears only in log records (``wall_iso``); an NTP step on a Pi that
booted without a clock must never change a measured latency or a deadline.
"""

from __future__ import annotations

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


MONOTONIC = MonotonicClock()


def wall_iso() -> str:
    """Wall-clock time for log records only, ISO 8601 with milliseconds and UTC offset."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
