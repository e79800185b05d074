"""The page's latency chart: a bounded ring of per-second aggregates (``/api/series``).

Nothing here runs on the worker. The worker already writes every stage time into the
run's :class:`~edge.stats.LatencyStats` rings and the watchdog counts every miss by cause in
:class:`~edge.stats.Counters`; a :class:`SeriesRecorder` reads what was added since its last
look, once a second, on the server's thread, and folds it into one :class:`Bucket`: how many
frames completed, the p50 and p99 of capture-to-result and of each stage, the misses by
cause, and the degradation mode. The ring keeps :data:`SERIES_SECONDS` of them.

Recording is on demand (:mod:`edge.serve.app` starts the once-a-second tick at the first
``/api/series`` request and stops it :data:`SERIES_LINGER_S` after the last), so when
nobody watches the page costs the pipeline nothing at all: no timer, no wake-up, no lock.
The price is that the chart's history starts when someone first looks.

A bucket is "the frames completed between two ticks", labelled by the second the tick
closes (``t_s``: it covers [t_s, t_s + 1) on the clock). Ticks are aligned to the clock's
whole seconds (plus :data:`TICK_OFFSET_NS`), so a bucket is that second's frames, give or
take the tick's own lateness on a loaded machine; a tick more than a second late leaves a
second without a bucket (a gap in the chart, not a made-up point).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.clock import MONOTONIC, Clock
from edge.frame import STAGES
from edge.stats import Counters, LatencyStats

#: per-second buckets kept (10 minutes)
SERIES_SECONDS = 600
#: the tick keeps running this long after the last ``/api/series`` request
SERIES_LINGER_S = 600.0
#: ticks fire this long after each whole second of the clock (so a timer that fires a hair
#: early still closes the right second)
TICK_OFFSET_NS = 20_000_000
_NS_PER_S = 1_000_000_000
_QS = (50.0, 99.0)


def p50_p99_ms(samples_ns: npt.NDArray[np.int64]) -> tuple[float, float]:
    """(p50, p99) in ms, as ``np.percentile``'s default (linear) method gives them, rounded
    to 1 µs. By hand on one sort: a second holds ~30 samples, where ``np.percentile``'s own
    overhead (~25 µs a call, nine stages a tick) would be most of the tick's cost."""
    a = np.sort(samples_ns)
    last = a.shape[0] - 1
    out: list[float] = []
    for q in _QS:
        pos = q / 100.0 * last
        lo = int(pos)
        v = float(a[lo])
        if lo < last:
            v += (float(a[lo + 1]) - v) * (pos - lo)
        out.append(round(v / 1e6, 3))
    return out[0], out[1]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One second of the run.

    t_s      the clock's second the bucket covers: frames completed in [t_s, t_s + 1) s
    frames   frames completed in it (capture-to-result samples)
    p50_ms   capture to result; None when no frame completed
    stages   {stage: (p50_ms, p99_ms)} for the stages that had a sample
    misses   {cause: deadline misses counted in it}
    every    the mode at its end: 1 normal, k > 1 degraded (inference on every k-th frame)
    """

    t_s: int
    frames: int
    p50_ms: float | None
    p99_ms: float | None
    stages: Mapping[str, tuple[float, float]]
    misses: Mapping[str, int]
    every: int


class SeriesRing:
    """The last ``seconds`` buckets, oldest first; one writer (the tick), any readers on the
    same thread."""

    def __init__(self, seconds: int = SERIES_SECONDS) -> None:
        if seconds < 1:
            raise ValueError(f"a series keeps at least 1 second, got {seconds}")
        self.seconds = seconds
        self._buckets: deque[Bucket] = deque(maxlen=seconds)

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def last_t(self) -> int | None:
        return self._buckets[-1].t_s if self._buckets else None

    def append(self, bucket: Bucket) -> None:
        last = self.last_t
        if last is not None and bucket.t_s <= last:
            raise ValueError(f"bucket {bucket.t_s} is not after the last one ({last})")
        self._buckets.append(bucket)

    def after(self, t_s: int | None) -> list[Bucket]:
        """The buckets newer than ``t_s`` (all of them for None), oldest first."""
        if t_s is None:
            return list(self._buckets)
        out: list[Bucket] = []
        for b in reversed(self._buckets):  # a poller asks for the last one or two
            if b.t_s <= t_s:
                break
            out.append(b)
        out.reverse()
        return out


class SeriesRecorder:
    """Folds what the pipeline recorded since the last tick into one :class:`Bucket`."""

    def __init__(
        self,
        latency: LatencyStats,
        counters: Counters,
        *,
        budget_ns: int,
        every: Callable[[], int] = lambda: 1,
        clock: Clock = MONOTONIC,
        seconds: int = SERIES_SECONDS,
    ) -> None:
        self.latency, self.counters, self.budget_ns = latency, counters, budget_ns
        self.every, self.clock = every, clock
        self.ring = SeriesRing(seconds)
        self.ticks = 0  # how many times tick ran (zero while nobody has asked)
        self._cursor: dict[str, int] | None = None
        self._misses: dict[str, int] = {}

    @property
    def started(self) -> bool:
        return self._cursor is not None

    def start(self) -> None:
        """Begin at what the pipeline has recorded so far (no backfill: there are no times
        on the samples already in the rings)."""
        self._cursor = self.latency.cursor()
        self._misses = self.counters.missed_by_cause

    def stop(self) -> None:
        """Stop folding; the buckets stay. A later :meth:`start` skips what came between."""
        self._cursor = None

    def tick(self, now_ns: int | None = None) -> Bucket | None:
        """Close the second before the one ``now_ns`` is in (the tick fires just after a
        whole second); None when that second already has its bucket or recording has not
        started."""
        if self._cursor is None:
            return None
        now_ns = self.clock.now_ns() if now_ns is None else now_ns
        t_s = (now_ns - TICK_OFFSET_NS) // _NS_PER_S - 1
        last = self.ring.last_t
        if last is not None and t_s <= last:
            return None  # fired early: what came in stays for the next tick
        self.ticks += 1
        self._cursor, new = self.latency.since(self._cursor)
        misses = self.counters.missed_by_cause
        delta = {c: n - self._misses.get(c, 0) for c, n in misses.items()}
        self._misses = misses
        bucket = _bucket(t_s, new, {c: n for c, n in delta.items() if n > 0}, self.every())
        self.ring.append(bucket)
        return bucket

    def as_json(self, since_s: int | None, stages: bool) -> dict[str, Any]:
        """``/api/series``: the buckets after ``since_s`` as columns (docs/HTTP.md)."""
        buckets = self.ring.after(since_s)
        out: dict[str, Any] = {
            "interval_s": 1,
            "kept_s": self.ring.seconds,
            "budget_ms": round(self.budget_ns / 1e6, 3),
            "now_s": round(self.clock.now_ns() / _NS_PER_S, 3),
            "recording": self.started,
            "t": [b.t_s for b in buckets],
            "frames": [b.frames for b in buckets],
            "p50_ms": [b.p50_ms for b in buckets],
            "p99_ms": [b.p99_ms for b in buckets],
            "misses": [sum(b.misses.values()) for b in buckets],
            "causes": [dict(b.misses) for b in buckets],
            "every": [b.every for b in buckets],
        }
        if stages:
            out["stages"] = _stage_columns(buckets)
        return out


def no_series(stages: bool) -> dict[str, Any]:
    """``/api/series`` of a server with no pipeline attached: nothing recorded, nothing to
    record (an answer, not an error: the page polls it every second)."""
    out: dict[str, Any] = {"interval_s": 1, "kept_s": 0, "budget_ms": None, "now_s": None,
                           "recording": False}  # fmt: skip
    out.update({k: [] for k in ("t", "frames", "p50_ms", "p99_ms", "misses", "causes", "every")})
    if stages:
        out["stages"] = {}
    return out


def _bucket(
    t_s: int, new: Mapping[str, npt.NDArray[np.int64]], misses: dict[str, int], every: int
) -> Bucket:
    total = new.get("total")
    p50 = p99 = None
    if total is not None:
        p50, p99 = p50_p99_ms(total)
    stages = {s: p50_p99_ms(a) for s, a in new.items() if s != "total"}
    frames = 0 if total is None else int(total.shape[0])
    return Bucket(t_s, frames, p50, p99, stages, misses, every)


def _stage_columns(buckets: list[Bucket]) -> dict[str, dict[str, list[float | None]]]:
    seen = {s for b in buckets for s in b.stages}
    names = [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))
    out: dict[str, dict[str, list[float | None]]] = {}
    for s in names:
        cells = [b.stages.get(s) for b in buckets]
        out[s] = {
            "p50_ms": [None if c is None else c[0] for c in cells],
            "p99_ms": [None if c is None else c[1] for c in cells],
        }
    return out
