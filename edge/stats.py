"""Latency percentiles per stage and the pipeline's frame counters.

The worker adds one duration per stage per frame, 30 times a second, so :meth:`LatencyStats.add`
must not allocate: each stage owns a preallocated numpy ring of ``window`` int64 nanoseconds,
and ``add`` writes one slot. Percentiles are computed on demand over the last ``window``
samples (a recent view, so a STATUS line reflects the last couple of minutes at 30 fps);
``max`` and ``count`` cover the whole run, because one 200 ms stall is worth seeing at exit
even after it has scrolled out of the window.

All figures leave this module in milliseconds (``*_ms`` keys), durations enter in ns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.frame import STAGES

_NS_PER_MS = 1e6

#: the counters every pipeline run has; others may be added with ``Counters.inc``. The one
#: list of them: records, reports and the page take their names from here
COUNTER_NAMES: tuple[str, ...] = ("captured", "processed", "dropped", "skipped_stale", "missed")


#: what reports a run's figures: a callable answering one dict (``/api/stats``'s shape)
StatsFn = Callable[[], Mapping[str, Any]]


def frames_held(processed: int, skipped_stale: int) -> int:
    """Frames held to a deadline, the miss rate's denominator: those the worker took through
    the stages (on time or late) and those it skipped as already late."""
    return processed + skipped_stale


def miss_rate(missed: int, held: int) -> float:
    """Misses per frame held to a deadline; 0 before any frame was."""
    return missed / held if held else 0.0


@dataclass(frozen=True)
class FrameCounts:
    """A read-only snapshot of a run's frame counters (:meth:`Counters.snapshot`).

    ``values`` has every counter, :data:`COUNTER_NAMES` first, then those a stage added
    (``decode_errors``, ...), as ints; ``missed_by_cause`` the misses by cause.
    """

    values: Mapping[str, int]
    missed_by_cause: Mapping[str, int]

    def get(self, name: str) -> int:
        return self.values.get(name, 0)

    @property
    def processed(self) -> int:
        return self.get("processed")

    @property
    def missed(self) -> int:
        return self.get("missed")

    @property
    def held(self) -> int:
        """Frames held to a deadline (:func:`frames_held`)."""
        return frames_held(self.processed, self.get("skipped_stale"))

    @property
    def miss_rate(self) -> float:
        return miss_rate(self.missed, self.held)


class _Ring:
    """One stage's samples: a fixed int64 array written round-robin."""

    __slots__ = ("buf", "pos", "count", "max_ns")

    def __init__(self, window: int) -> None:
        self.buf: npt.NDArray[np.int64] = np.zeros(window, np.int64)
        self.pos = 0
        self.count = 0
        self.max_ns = 0

    def add(self, ns: int) -> None:
        self.buf[self.pos] = ns
        self.pos += 1
        if self.pos == self.buf.shape[0]:
            self.pos = 0
        self.count += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def samples(self) -> npt.NDArray[np.int64]:
        """A copy of the valid samples (order does not matter for percentiles)."""
        n = min(self.count, self.buf.shape[0])
        out: npt.NDArray[np.int64] = self.buf[:n].copy()
        return out

    def last(self, k: int) -> npt.NDArray[np.int64]:
        """A copy of the newest ``k`` samples (``k`` at most the ring's size), oldest first."""
        start = self.pos - k
        out: npt.NDArray[np.int64]
        if start >= 0:
            out = self.buf[start : self.pos].copy()
            return out
        out = np.concatenate((self.buf[start:], self.buf[: self.pos]))
        return out


def _key(q: float) -> str:
    return f"p{q:g}"


class LatencyStats:
    """Per-stage ring buffers of durations in ns; one writer, any number of readers.

    ``add`` is O(1) and allocation-free once a stage has been seen (the first sample of a new
    stage allocates its ring). Readers copy a stage's samples under the lock and compute
    outside it, so a STATUS update never holds the worker up for more than a memcpy.
    """

    def __init__(self, window: int = 4096) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 sample, got {window}")
        self.window = window
        self._rings: dict[str, _Ring] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, ns: int) -> None:
        with self._lock:
            ring = self._rings.get(stage)
            if ring is None:
                ring = self._rings[stage] = _Ring(self.window)
            ring.add(ns)

    def add_all(self, stages_ns: Mapping[str, int]) -> None:
        """Add a frame's whole timing table (``Frame.stages_ns``)."""
        for stage, ns in stages_ns.items():
            self.add(stage, ns)

    def stages(self) -> list[str]:
        """Stages seen so far: pipeline order (``STAGES``) first, then others as first seen."""
        with self._lock:
            seen = list(self._rings)
        known = [s for s in STAGES if s in seen]
        return known + [s for s in seen if s not in STAGES]

    def count(self, stage: str) -> int:
        with self._lock:
            ring = self._rings.get(stage)
            return 0 if ring is None else ring.count

    def percentiles(self, stage: str, qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
        """``{"p50": ms, ...}`` over the last ``window`` samples; ``{}`` for an unseen stage."""
        with self._lock:
            ring = self._rings.get(stage)
            samples = None if ring is None else ring.samples()
        if samples is None or samples.size == 0:
            return {}
        values = np.percentile(samples, list(qs)) / _NS_PER_MS
        return {_key(q): round(float(v), 3) for q, v in zip(qs, values, strict=True)}

    def cursor(self) -> dict[str, int]:
        """``{stage: samples so far}``: where :meth:`since` starts from."""
        with self._lock:
            return {stage: ring.count for stage, ring in self._rings.items()}

    def since(
        self, cursor: Mapping[str, int]
    ) -> tuple[dict[str, int], dict[str, npt.NDArray[np.int64]]]:
        """The samples added after ``cursor`` (an earlier :meth:`cursor`, or the cursor this
        returned last time), per stage, oldest first, and the new cursor.

        For readers that aggregate off the worker's path (the page's per-second series): the
        worker already writes every sample here, so reading the new ones costs it nothing but
        the lock for a memcpy. A stage that got more than ``window`` samples since gives its
        newest ``window`` (the rest were overwritten); a stage absent from ``cursor`` gives
        everything it holds (it was first seen after the cursor was taken)."""
        new: dict[str, npt.NDArray[np.int64]] = {}
        with self._lock:
            now = {stage: ring.count for stage, ring in self._rings.items()}
            for stage, ring in self._rings.items():
                k = min(ring.count - cursor.get(stage, 0), ring.buf.shape[0])
                if k > 0:
                    new[stage] = ring.last(k)
        return now, new

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        """``{stage: {p50, p95, p99, max, count}}``: figures in ms over the last ``window``
        samples (``max`` over the run), ``count`` an int (samples over the run)."""
        out: dict[str, dict[str, float | int]] = {}
        for stage in self.stages():
            entry: dict[str, float | int] = dict(self.percentiles(stage))
            with self._lock:
                ring = self._rings[stage]
                entry["max"] = round(ring.max_ns / _NS_PER_MS, 3)
                entry["count"] = ring.count
            out[stage] = entry
        return out


class Counters:
    """The run's frame counters, safe to bump from the capture, worker and watchdog threads.

    ``missed`` and ``missed_by_cause`` move together through :meth:`miss`; ``inc`` takes any
    name, so a stage may add its own counter (``decode_errors``, ``reconnects``) and it shows
    up in ``as_dict`` and the run summary line.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._by_cause: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        if name == "missed_by_cause":
            raise ValueError("use Counters.miss(cause) to count a miss by cause")
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def miss(self, cause: str, n: int = 1) -> None:
        """Count ``n`` deadline misses with ``cause`` (``missed`` and ``missed_by_cause``)."""
        with self._lock:
            self._values["missed"] += n
            self._by_cause[cause] = self._by_cause.get(cause, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    @property
    def captured(self) -> int:
        return self.get("captured")

    @property
    def processed(self) -> int:
        return self.get("processed")

    @property
    def dropped(self) -> int:
        return self.get("dropped")

    @property
    def skipped_stale(self) -> int:
        return self.get("skipped_stale")

    @property
    def missed(self) -> int:
        return self.get("missed")

    @property
    def missed_by_cause(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_cause)

    def snapshot(self) -> FrameCounts:
        """Every counter at one instant, read-only."""
        with self._lock:
            return FrameCounts(dict(self._values), dict(self._by_cause))

    def as_dict(self) -> dict[str, int | dict[str, int]]:
        """The counters and ``missed_by_cause`` in one dict (the run record's shape)."""
        counts = self.snapshot()
        return {**counts.values, "missed_by_cause": dict(counts.missed_by_cause)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table_rows(snapshot: Mapping[str, Mapping[str, float]]) -> Iterable[str]:
    yield f"{'stage':<12} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9} {'count':>8}"
    for stage, s in snapshot.items():
        cells = " ".join(f"{_fmt(s.get(k)):>9}" for k in ("p50", "p95", "p99", "max"))
        yield f"{stage:<12} {cells} {int(s.get('count', 0)):>8}"


def summary_table(
    snapshot: Mapping[str, Mapping[str, float]],
    counters: Mapping[str, object] | None = None,
) -> str:
    """A human table for the ``edge run`` exit summary; ``counters`` is ``Counters.as_dict()``."""
    lines: list[str] = []
    if counters is not None:
        names = [n for n in COUNTER_NAMES if n in counters]
        names += [n for n in counters if n not in COUNTER_NAMES and n != "missed_by_cause"]
        lines.append("frames: " + ", ".join(f"{n.replace('_', ' ')} {counters[n]}" for n in names))
        by_cause = counters.get("missed_by_cause")
        if isinstance(by_cause, Mapping) and by_cause:
            parts = sorted(by_cause.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
            lines.append("misses by cause: " + ", ".join(f"{c} {n}" for c, n in parts))
    if snapshot:
        lines.extend(_table_rows(snapshot))
    else:
        lines.append("no stage timings recorded")
    return "\n".join(lines)
