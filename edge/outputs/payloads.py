"""The JSON the MQTT output publishes: one builder per message type, schemas in docs/schemas/.

Every message carries ``device`` and, except the last will (which the broker sends at a time
nobody can know in advance), ``ts``: wall-clock ISO 8601, the only place wall time appears.
Events and stats carry ``seq``, the output's message counter, so a consumer sees from a gap
that messages were dropped while the broker was away.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edge import __version__
from edge.clock import wall_iso
from edge.outputs.events import APPEARED, Health, Interval, PresenceEvent

SCHEMA_VERSION = 1


def dumps(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON, no NaN (JSON has none)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def event(ev: PresenceEvent, *, device: str, seq: int) -> dict[str, Any]:
    """``appeared`` / ``left`` on ``PREFIX/DEVICE/events``."""
    out: dict[str, Any] = {
        "type": ev.kind,
        "ts": wall_iso(),
        "device": device,
        "seq": seq,
        "class": ev.label,
        "class_id": ev.class_id,
        "frame": ev.frame,
    }
    if ev.kind == APPEARED:
        out.update(count=ev.count, score=ev.score)
    else:
        out.update(present_s=round(ev.present_s, 3), peak=ev.peak)
    return out


def health_event(health: Health, *, device: str, seq: int) -> dict[str, Any]:
    """A health change on ``PREFIX/DEVICE/events``."""
    return {"type": "health", "ts": wall_iso(), "device": device, "seq": seq, **health.as_dict()}


def presence(
    label: str, class_id: int, present: bool, count: int, *, device: str
) -> dict[str, Any]:
    """The retained state of one class on ``PREFIX/DEVICE/presence/CLASS``."""
    return {
        "class": label,
        "class_id": class_id,
        "present": present,
        "count": count,
        "ts": wall_iso(),
        "device": device,
    }


def status_online(
    *, device: str, health: Health, connects: int, info: Mapping[str, Any]
) -> dict[str, Any]:
    """The retained ``online`` status (republished on every connect and health change)."""
    out: dict[str, Any] = {
        "state": "online",
        "ts": wall_iso(),
        "device": device,
        "health": health.as_dict(),
        "connects": connects,
        "version": __version__,
        "schema": SCHEMA_VERSION,
    }
    out.update({k: str(info[k]) for k in ("source", "model") if k in info})
    return out


def status_offline(*, device: str, clean: bool) -> dict[str, Any]:
    """``offline``: published at shutdown (``clean``), or left with the broker as the will."""
    out: dict[str, Any] = {"state": "offline", "device": device, "clean": clean}
    if clean:
        out["ts"] = wall_iso()
    out["schema"] = SCHEMA_VERSION
    return out


def stats(
    iv: Interval,
    pipeline: Mapping[str, Any],
    mqtt: Mapping[str, int],
    *,
    device: str,
    seq: int,
    final: bool,
) -> dict[str, Any]:
    """A summary on ``PREFIX/DEVICE/stats``; ``pipeline`` is the stats provider's dict (or {}).

    Interval figures (``classes``, ``misses``, ``fps``) cover this message's interval only, so
    summing them over the messages of a run gives the run's totals; ``frames`` and
    ``missed_by_cause`` are the run's cumulative counters, as the pipeline keeps them.
    """
    total = pipeline.get("latency_ms", {}).get("total", {})
    every = pipeline.get("every")
    return {
        "type": "stats",
        "ts": wall_iso(),
        "device": device,
        "seq": seq,
        "final": final,
        "interval_s": round(iv.seconds, 3),
        "fps": round(iv.results / iv.seconds, 2) if iv.seconds > 0 else 0.0,
        "mode": pipeline.get("mode", "unknown"),
        "every": int(every) if every is not None else None,
        "latency_ms": {k: float(total[k]) for k in ("p50", "p99") if k in total},
        "classes": {k: dict(v) for k, v in iv.classes.items()},
        "misses": {
            "total": iv.misses,
            "by_cause": dict(iv.misses_by_cause),
            "worst_over_ms": iv.worst_over_ms,
        },
        "frames": {k: int(v) for k, v in pipeline.get("frames", {}).items()},
        "missed_by_cause": {k: int(v) for k, v in pipeline.get("missed_by_cause", {}).items()},
        "mqtt": dict(mqtt),
    }
