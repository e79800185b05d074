"""The deadline-miss record and the run summary record: the miss log's two line types.

The miss log is data with a schema (docs/MISS_LOG.md): one JSON object per line, ``"type":
"miss"`` for a frame that missed its deadline and ``"type": "run"`` for the run's cumulative
frame counters (written at start, every minute and at exit), which is what lets ``edge
misses`` compute a miss *rate* from the log alone. Both are frozen; floats are rounded to
3 decimals (microseconds in ms) at construction so a record survives ``to_json`` /
``from_json`` unchanged, and non-finite numbers are refused (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edge.clock import wall_iso
from edge.frame import STAGES
from edge.stats import COUNTER_NAMES, frames_held

SCHEMA_VERSION = 1

#: what ``cause`` may be: a stage, ``queue`` (skipped stale before processing) or ``gap``
#: (the source delivered nothing before the deadline)
CAUSES: tuple[str, ...] = (*STAGES, "queue", "gap")

#: events of a run record
RUN_EVENTS: tuple[str, ...] = ("start", "tick", "exit")


def new_run_id() -> str:
    """A short random id that ties a run's records together across restarts and rotation."""
    return os.urandom(4).hex()


def _finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return round(v, 3)


def _check_keys(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Known fields of ``cls`` from ``data``; unknown keys are ignored (newer writers)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class MissRecord:
    """One deadline miss. Build with keywords; ``ts`` defaults to the wall clock now."""

    frame: int  # the frame's seq; for a ``gap`` the seq the missing frame would have had
    source: str
    budget_ms: float
    latency_ms: float  # capture to the moment of recording (still counting if the frame hangs)
    over_ms: float  # latency_ms - budget_ms
    stages: Mapping[str, float]  # {stage: ms} for the stages done (or under way) at the time
    cause: str  # the stage the frame was in when the deadline passed, or queue / gap
    action: str  # what the policy did: skipped, completed-late, degraded:every-2, ...
    consecutive: int  # misses in a row including this one
    ts: str = field(default_factory=wall_iso)
    temp_c: float | None = None
    throttled: str | None = None  # vcgencmd get_throttled raw value, e.g. "0x50005"
    throttle_flags: tuple[str, ...] = ()  # the decoded names of throttled's bits
    run: str | None = None  # the run id, as in the run records
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"cause must be one of {', '.join(CAUSES)}, got {self.cause!r}")
        for name in ("budget_ms", "latency_ms", "over_ms"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if not isinstance(self.stages, Mapping):
            raise TypeError(f"stages must be a mapping of stage to ms, got {self.stages!r}")
        stages = {str(k): _finite(f"stages[{k}]", v) for k, v in self.stages.items()}
        object.__setattr__(self, "stages", stages)
        temp = self.temp_c
        if temp is not None:
            temp = round(float(temp), 1) if math.isfinite(float(temp)) else None
        object.__setattr__(self, "temp_c", temp)
        object.__setattr__(self, "throttle_flags", tuple(self.throttle_flags))
        object.__setattr__(self, "frame", int(self.frame))
        object.__setattr__(self, "consecutive", int(self.consecutive))

    @classmethod
    def create(
        cls,
        *,
        frame: int,
        source: str,
        budget_ms: float,
        latency_ms: float,
        stages_ns: Mapping[str, int],
        cause: str,
        action: str,
        consecutive: int,
        **extra: Any,
    ) -> MissRecord:
        """A record from the pipeline's units: stage times in ns, ``over_ms`` computed."""
        stages = {s: ns / 1e6 for s, ns in stages_ns.items()}
        return cls(
            frame=frame,
            source=source,
            budget_ms=budget_ms,
            latency_ms=latency_ms,
            over_ms=latency_ms - budget_ms,
            stages=stages,
            cause=cause,
            action=action,
            consecutive=consecutive,
            **extra,
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON object, keys in schema order, ``type`` first."""
        d = asdict(self)
        d["throttle_flags"] = list(self.throttle_flags)
        order = ("ts", "frame", "source", "budget_ms", "latency_ms", "over_ms", "stages")
        head = {k: d.pop(k) for k in order}
        return {"type": "miss", **head, **d}

    def to_json(self) -> str:
        """One line of JSON, no NaN, no trailing newline."""
        return json.dumps(self.as_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MissRecord:
        if data.get("type", "miss") != "miss":
            raise ValueError(f"expected a miss record, got type {data.get('type')!r}")
        kw = _check_keys(cls, data)
        kw["throttle_flags"] = tuple(kw.get("throttle_flags") or ())
        return cls(**kw)

    @classmethod
    def from_json(cls, line: str) -> MissRecord:
        """Parse one line; ``ValueError`` (or ``TypeError`` for a missing field) when bad."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)


@dataclass(frozen=True)
class RunRecord:
    """The run's cumulative counters: ``{"type": "run", ...}`` at start, each minute, at exit.

    ``processed`` counts frames the worker took through the stages (on time or late),
    ``skipped_stale`` frames it discarded as already late; their sum is the number of frames
    held to a deadline, the denominator of the miss rate. ``lost`` is miss records the miss
    log could not write so far (full queue or failing disk).
    """

    run: str
    event: str  # start | tick | exit
    source: str
    budget_ms: float
    captured: int = 0
    processed: int = 0
    dropped: int = 0
    skipped_stale: int = 0
    missed: int = 0
    missed_by_cause: Mapping[str, int] = field(default_factory=dict)
    lost: int = 0
    ts: str = field(default_factory=wall_iso)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.event not in RUN_EVENTS:
            raise ValueError(f"event must be one of {', '.join(RUN_EVENTS)}, got {self.event!r}")
        object.__setattr__(self, "budget_ms", _finite("budget_ms", self.budget_ms))
        by_cause = {str(k): int(v) for k, v in self.missed_by_cause.items()}
        object.__setattr__(self, "missed_by_cause", by_cause)

    @property
    def frames(self) -> int:
        """Frames held to a deadline: processed + skipped as stale."""
        return frames_held(self.processed, self.skipped_stale)

    @classmethod
    def from_counters(
        cls,
        counters: Mapping[str, Any],
        *,
        run: str,
        event: str,
        source: str,
        budget_ms: float,
        lost: int = 0,
    ) -> RunRecord:
        """From ``Counters.as_dict()``; counters this schema does not know are left out."""
        kw = {k: counters[k] for k in cls._counter_names() if k in counters}
        return cls(run=run, event=event, source=source, budget_ms=budget_ms, lost=lost, **kw)

    @staticmethod
    def _counter_names() -> tuple[str, ...]:
        return (*COUNTER_NAMES, "missed_by_cause")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"type": "run", "ts": d.pop("ts"), **d}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        if data.get("type") != "run":
            raise ValueError(f"expected a run record, got type {data.get('type')!r}")
        return cls(**_check_keys(cls, data))

    @classmethod
    def from_json(cls, line: str) -> RunRecord:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)
