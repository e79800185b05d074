"""What ``/api/stats`` (and ``/metrics``, and the HUD) report: a snapshot of a running pipeline.

The server never reaches into the pipeline itself; it asks a :data:`~edge.stats.StatsFn` for
one dict. :class:`PipelineStats` is that callable for a real run, built from the pipeline's own
counters and latency rings (so the page, ``/metrics`` and the exit summary count the same
frames). Every figure is computed when asked, on the server's thread, never on the worker's.

The dict (documented in docs/HTTP.md)::

    source, model, delegate    names
    budget_ms, uptime_s        the frame deadline; seconds since the stats began
    mode, every                "normal" or "degraded"; inference on every k-th frame
    fps                        frames processed per second over the last few seconds
    frames                     {captured, processed, dropped, skipped_stale, missed, ...}
    counter_names              the run's own counters, in order (edge.stats.COUNTER_NAMES):
                               what the page lists, so it never restates them
    missed_by_cause            {cause: misses}
    miss_rate                  missed / (processed + skipped_stale)
    latency_ms                 {stage: {p50, p95, p99, max, count}}, "total" = capture to result
    latency_window             {frames, size}: the percentiles are over the last ``frames``
                               frames (at most ``size``: the rings' length); ``max`` and
                               ``count`` (an int) cover the whole run
    temperature_c              CPU temperature where the machine tells, else null
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from edge.clock import MONOTONIC, Clock
from edge.pipeline.output import RunView
from edge.serve.series import SeriesRecorder
from edge.stats import COUNTER_NAMES, Counters, LatencyStats
from edge.watchdog.thermal import ThermalMonitor

#: fps is measured over about this much recent history
RATE_WINDOW_NS = 5_000_000_000
#: at most one rate sample per this interval (bounds the sample deque)
_RATE_STEP_NS = 250_000_000


class RateMeter:
    """Events per second of a growing count, over the last :data:`RATE_WINDOW_NS`.

    Sampled when read (no timer thread): each read stores ``(now, count)`` and answers with
    the rate since the oldest sample still inside the window, or since the last sample when
    reads were further apart than the window.
    """

    def __init__(
        self,
        clock: Clock = MONOTONIC,
        window_ns: int = RATE_WINDOW_NS,
        start_count: int | None = None,
    ) -> None:
        self._clock, self._window_ns = clock, window_ns
        self._samples: deque[tuple[int, int]] = deque()
        if start_count is not None:  # the first read then has a rate: since now
            self._samples.append((clock.now_ns(), start_count))
        self._lock = threading.Lock()

    def rate(self, count: int) -> float:
        now = self._clock.now_ns()
        with self._lock:
            s = self._samples
            while len(s) > 1 and now - s[1][0] >= self._window_ns:
                s.popleft()
            if not s or now - s[-1][0] >= _RATE_STEP_NS:
                s.append((now, count))
            t0, n0 = s[0]
        return (count - n0) * 1e9 / (now - t0) if now > t0 else 0.0


class PipelineStats:
    """The :data:`StatsFn` of a run; thread-safe, cheap enough to call a few times a second."""

    def __init__(
        self,
        counters: Counters,
        latency: LatencyStats,
        *,
        source: str,
        model: str,
        delegate: str,
        budget_ns: int,
        every: Callable[[], int] = lambda: 1,
        clock: Clock = MONOTONIC,
        thermal: Callable[[int], float | None] | None = None,
    ) -> None:
        self.counters, self.latency = counters, latency
        self.info = {"source": source, "model": model, "delegate": delegate}
        self.budget_ns, self._every, self._clock = budget_ns, every, clock
        self._t0 = clock.now_ns()
        self._fps = RateMeter(clock, start_count=counters.processed)
        self._thermal = thermal if thermal is not None else _sys_temperature()

    def recorder(self) -> SeriesRecorder:
        """A per-second series of this run's figures, for ``/api/series``."""
        return SeriesRecorder(
            self.latency, self.counters, budget_ns=self.budget_ns, every=self._every,
            clock=self._clock,
        )  # fmt: skip

    @classmethod
    def of(cls, pipeline: RunView, *, delegate: str = "cpu") -> PipelineStats:
        return cls(
            pipeline.counters,
            pipeline.stats,
            source=str(pipeline.source.name),
            model=str(getattr(pipeline.detector, "name", "?")),
            delegate=delegate,
            budget_ns=pipeline.budget_ns,
            every=lambda: int(pipeline.degrader.every),
            clock=pipeline.clock,
        )

    def __call__(self) -> dict[str, Any]:
        now = self._clock.now_ns()
        counts = self.counters.snapshot()
        every = self._every()
        latency = self.latency.snapshot()
        return {
            **self.info,
            "budget_ms": round(self.budget_ns / 1e6, 3),
            "uptime_s": round((now - self._t0) / 1e9, 3),
            "mode": "normal" if every <= 1 else "degraded",
            "every": every,
            "fps": round(self._fps.rate(counts.processed), 2),
            "frames": dict(counts.values),
            "counter_names": list(COUNTER_NAMES),
            "missed_by_cause": dict(counts.missed_by_cause),
            "miss_rate": round(counts.miss_rate, 6),
            "latency_ms": latency,
            "latency_window": {
                "frames": min(int(latency.get("total", {}).get("count", 0)), self.latency.window),
                "size": self.latency.window,
            },
            "temperature_c": self._thermal(now),
        }


def _sys_temperature() -> Callable[[int], float | None]:
    """CPU temperature from /sys only: ``vcgencmd`` is a subprocess, too slow for a request."""
    monitor = ThermalMonitor(vcgencmd=None)
    lock = threading.Lock()

    def read(now_ns: int) -> float | None:
        with lock:  # the monitor caches and is meant for one thread at a time
            return monitor.read(now_ns).temp_c

    return read
