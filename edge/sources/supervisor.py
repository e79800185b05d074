"""The wrapper every source is opened in: corrupt-frame accounting, and reconnects for live ones.

Corrupt frames (:class:`~edge.sources.base.CorruptFrame`) are counted and skipped; the log
gets at most one line per second per kind, with the count since the last line.

A live source (camera, stream) that fails is closed and opened again with exponential
backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``). The log says so once when
the source is lost ("source X lost: reason; reconnecting in N s"), once when frames flow
again ("source X back after N s, M attempts"), and failed attempts in between only at debug
level. The backoff blocks on an :class:`threading.Event` with a timeout, so ``close()`` from
another thread ends it at once, and ``read`` never blocks longer than its ``timeout_s``.
Files and folders are not retried: their errors and their end go to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.clock import Clock
from edge.errors import SourceError
from edge.frame import Frame
from edge.ratelog import RateLimitedLog
from edge.sources.base import CorruptFrame, EndOfStream, Source, SourceOptions
from edge.sources.pacing import wait_until

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters for health checks and the run summary."""

    frames: int
    corrupt_frames: int
    read_errors: int  # failures that lost a live source (or ended a file with an error)
    reconnects: int  # outages recovered from
    reconnect_attempts: int
    dropped: int  # frames a live reader overwrote before they were read
    skipped: int  # frames a paced file skipped because the reader fell behind
    connected: bool


class SupervisedSource:
    """Wraps an opened source; ``reopen`` (live sources only) makes a fresh one after a loss."""

    def __init__(
        self,
        first: Source,
        opts: SourceOptions,
        clock: Clock,
        reopen: Callable[[], Source] | None = None,
    ) -> None:
        self.name = first.name
        self._fps = first.fps
        self._opts, self._clock, self._reopen = opts, clock, reopen
        self._inner: Source | None = first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._corrupt_log = RateLimitedLog(log, clock)
        self._down_since_ns: int | None = None  # set while a live source is lost
        self._attempts = 0  # in the current outage
        self._retry_at_ns = 0
        self._carry = {"dropped": 0, "skipped": 0}  # from inner sources already closed
        self.frames = 0
        self.corrupt_frames = 0
        self.read_errors = 0
        self.reconnects = 0
        self.reconnect_attempts = 0

    @property
    def fps(self) -> float | None:
        inner = self._inner
        if inner is not None and inner.fps is not None:
            self._fps = inner.fps
        return self._fps

    @property
    def live(self) -> bool:
        return self._reopen is not None

    @property
    def newest_only(self) -> bool:
        """Whether the source itself hands out only its newest frame (see
        :func:`edge.pipeline.handoff.reads_newest_only`)."""
        return bool(getattr(self._inner, "newest_only", False))

    @property
    def connected(self) -> bool:
        return self._inner is not None and self._down_since_ns is None

    @property
    def overwritten(self) -> int:
        """Frames the source itself passed over because its reader came late (a live reader's
        overwrites plus a paced file's skips, closed inner sources included): when the worker
        reads the source directly these are the run's dropped frames."""
        inner = self._inner
        return (
            self._carry["dropped"]
            + self._carry["skipped"]
            + _counter(inner, "dropped")
            + _counter(inner, "skipped")
        )

    def peek(self) -> Frame | None:
        """The inner source's next frame without taking it (see
        :meth:`edge.sources.files.VideoFileSource.peek`); None when it cannot say."""
        peek = getattr(self._inner, "peek", None)
        return peek() if callable(peek) else None

    def stats(self) -> SourceStats:
        return SourceStats(
            self.frames,
            self.corrupt_frames,
            self.read_errors,
            self.reconnects,
            self.reconnect_attempts,
            self._carry["dropped"] + _counter(self._inner, "dropped"),
            self._carry["skipped"] + _counter(self._inner, "skipped"),
            self.connected,
        )

    def backoff_s(self, failed_attempts: int) -> float:
        """Delay before the next attempt after ``failed_attempts`` failures in this outage."""
        delay = self._opts.reconnect_min_s * (2.0 ** min(failed_attempts, 60))
        return float(min(self._opts.reconnect_max_s, delay))

    def read(self, timeout_s: float) -> Frame | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._stop.is_set():
            remaining = max(0.0, deadline - time.monotonic())
            inner = self._inner
            if inner is None:
                if not wait_until(self._clock, self._retry_at_ns, remaining, self._stop):
                    return None
                self._attempt()
                continue
            try:
                frame = inner.read(remaining)
            except CorruptFrame as e:
                self._count_corrupt(e)
            except EndOfStream:
                if not self.live:
                    raise
                self._lost(inner, "the stream ended")
            except SourceError as e:
                if self._stop.is_set():
                    return None  # closed from another thread while reading
                if not self.live:
                    self.read_errors += 1
                    raise
                self._lost(inner, str(e))
            else:
                if frame is not None:
                    self._up()
                return frame
            if remaining <= 0:
                return None
        return None

    def _count_corrupt(self, e: CorruptFrame) -> None:
        self.corrupt_frames += e.count
        more = self._corrupt_log.due(e.kind, e.count)
        if more is not None:
            log.warning("source %s: skipped %d corrupt frame(s): %s%s", self.name, e.count, e, more)

    def _up(self) -> None:
        self.frames += 1
        if self._down_since_ns is None:
            return
        down_s = (self._clock.now_ns() - self._down_since_ns) / 1e9
        log.warning("source %s back after %.1f s, %d attempt(s)", self.name, down_s, self._attempts)
        self.reconnects += 1
        self._down_since_ns = None
        self._attempts = 0

    def _lost(self, inner: Source, reason: str) -> None:
        self._drop_inner(inner)
        now = self._clock.now_ns()
        delay_s = self.backoff_s(self._attempts)
        self._retry_at_ns = now + int(delay_s * 1e9)
        if self._down_since_ns is None:
            self.read_errors += 1
            self._down_since_ns = now
            log.warning("source %s lost: %s; reconnecting in %.1f s", self.name, reason, delay_s)
        else:
            log.debug("source %s: attempt %d failed: %s", self.name, self._attempts, reason)

    def _attempt(self) -> None:
        if self._reopen is None:  # only live sources are reopened
            return
        self._attempts += 1
        self.reconnect_attempts += 1
        try:
            inner = self._reopen()
        except SourceError as e:
            now = self._clock.now_ns()
            self._retry_at_ns = now + int(self.backoff_s(self._attempts) * 1e9)
            log.debug("source %s: attempt %d failed: %s", self.name, self._attempts, e)
            return
        with self._lock:
            if not self._stop.is_set():
                self._inner = inner
                return
        inner.close()  # closed while we were opening

    def _drop_inner(self, inner: Source) -> None:
        with self._lock:
            if self._inner is inner:
                self._inner = None
        self._carry_counters(inner)
        try:
            inner.close()
        except Exception as e:  # a failing close must not stop the reconnect
            log.debug("source %s: close failed: %s", self.name, e)

    def _carry_counters(self, inner: Source) -> None:
        for key in self._carry:
            self._carry[key] += _counter(inner, key)

    def close(self) -> None:
        with self._lock:
            self._stop.set()
            inner, self._inner = self._inner, None
        if inner is not None:
            self._carry_counters(inner)
            inner.close()


def _counter(source: Source | None, name: str) -> int:
    value = getattr(source, name, 0)
    return value if isinstance(value, int) else 0
