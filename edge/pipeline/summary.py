"""What a run leaves behind: :class:`RunSummary`, printed by ``edge run`` and ``edge bench``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edge.stats import frames_held, miss_rate, summary_table

#: counters always shown, in this order
MAIN_COUNTERS: tuple[str, ...] = ("captured", "processed", "dropped", "missed")


@dataclass(frozen=True)
class RunSummary:
    """Counters, per-stage latency and the miss log of one run.

    counters         ``Counters.as_dict()`` without ``missed_by_cause``: captured, processed
                     (taken through the stages, on time or late, shed frames included),
                     dropped (overwritten in the handoff, or passed over by a source the worker
                     reads directly), skipped_stale, missed, and the
                     others that occurred (shed, decode_errors, degrade_down, ...)
    missed_by_cause  {cause: misses}
    stages_ms        {stage: {p50, p95, p99, max, count}} in ms; ``total`` is capture to result
    invoke_floor_ms  {p50, p99, count} of bare ``invoke`` calls measured in the same process
                     (``edge bench`` only)
    """

    source: str
    model: str
    budget_ms: float
    elapsed_s: float
    counters: Mapping[str, int]
    missed_by_cause: Mapping[str, int]
    stages_ms: Mapping[str, Mapping[str, float]]
    miss_log: str | None = None
    lost_records: int = 0
    degrade_every: int = 1
    source_stats: Mapping[str, Any] = field(default_factory=dict)
    invoke_floor_ms: Mapping[str, float] | None = None

    def count(self, name: str) -> int:
        return int(self.counters.get(name, 0))

    @property
    def captured(self) -> int:
        return self.count("captured")

    @property
    def processed(self) -> int:
        return self.count("processed")

    @property
    def dropped(self) -> int:
        return self.count("dropped")

    @property
    def missed(self) -> int:
        return self.count("missed")

    @property
    def held(self) -> int:
        """Frames held to a deadline: processed + skipped as stale (the miss-rate denominator)."""
        return frames_held(self.processed, self.count("skipped_stale"))

    @property
    def miss_rate(self) -> float:
        return miss_rate(self.missed, self.held)

    @property
    def fps(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def latency_ms(self) -> dict[str, float]:
        """Capture to result: {p50, p95, p99, max}; empty when no frame was processed."""
        total = self.stages_ms.get("total", {})
        return {k: float(total[k]) for k in ("p50", "p95", "p99", "max") if k in total}

    def with_floor(self, floor_ms: Mapping[str, float]) -> RunSummary:
        return replace(self, invoke_floor_ms=dict(floor_ms))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``edge bench --json`` (and ``edge run``'s exit record)."""
        stages = {
            s: {k: v for k, v in d.items() if k in ("p50", "p95", "p99", "max")}
            for s, d in self.stages_ms.items()
            if s != "total"
        }
        out: dict[str, Any] = {
            "source": self.source,
            "model": self.model,
            "budget_ms": round(self.budget_ms, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.fps, 2),
            "frames": {k: self.count(k) for k in (*MAIN_COUNTERS, "skipped_stale")}
            | {k: v for k, v in self.counters.items() if k not in MAIN_COUNTERS},
            "miss_rate": round(self.miss_rate, 6),
            "missed_by_cause": dict(self.missed_by_cause),
            "latency_ms": self.latency_ms,
            "stages_ms": stages,
            "degrade_every": self.degrade_every,
            "miss_log": self.miss_log,
            "lost_records": self.lost_records,
            "source_stats": dict(self.source_stats),
        }
        if self.invoke_floor_ms is not None:
            out["invoke_floor_ms"] = dict(self.invoke_floor_ms)
        return out

    def format(self) -> str:
        """The human summary: counters, misses by cause, a per-stage latency table."""
        lines = [
            f"{self.source} -> {self.model}: {self.held} frames held to {self.budget_ms:.1f} ms "
            f"in {self.elapsed_s:.1f} s ({self.fps:.1f} fps); miss rate "
            f"{100 * self.miss_rate:.2f}%",
        ]
        counters: dict[str, Any] = dict(self.counters)
        counters["missed_by_cause"] = dict(self.missed_by_cause)
        lines.append(summary_table(self.stages_ms, counters))
        if self.invoke_floor_ms:
            f = self.invoke_floor_ms
            lines.append(
                f"bare invoke floor: p50 {f.get('p50', 0.0):.2f} ms, p99 {f.get('p99', 0.0):.2f} ms"
            )
        if self.degrade_every > 1:
            lines.append(f"ended degraded: inference on every {self.degrade_every}th frame")
        if self.miss_log:
            lost = f" ({self.lost_records} records lost)" if self.lost_records else ""
            lines.append(f"miss log: {self.miss_log}{lost}")
        return "\n".join(lines)
