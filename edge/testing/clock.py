"""A clock that moves only when told to (the fake beside :class:`edge.clock.MonotonicClock`)."""

from __future__ import annotations

import threading


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
