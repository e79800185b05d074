"""Read miss logs and say what they mean: the engine behind ``edge misses``.

Inputs are JSON lines as :class:`~edge.watchdog.misslog.MissLog` writes them, from any mix
of: the live log and its rotated files (``LOG.N`` ... ``LOG.1``, ``LOG``, oldest first, gzip
allowed), a service's stdout lines (``edge-miss {...}``), and ``journalctl -o json`` entries
whose ``MESSAGE`` is such a line or a bare JSON record. Lines that are not JSON, or JSON that
is not a valid record, are counted as bad, never fatal; journal entries that carry some other
message are ignored. The report is computed from the records alone (docs/MISS_LOG.md).
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge.errors import ConfigError
from edge.frame import STAGES
from edge.stats import COUNTER_NAMES, frames_held
from edge.watchdog.misslog import JOURNAL_PREFIX
from edge.watchdog.record import MissRecord, RunRecord

_ROTATED = re.compile(r"\.(\d+)(\.gz)?$")
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WORST_N = 5


@dataclass
class Loaded:
    """Everything read: records in input order plus the counts of what was not usable."""

    misses: list[tuple[datetime, MissRecord]] = field(default_factory=list)
    runs: list[tuple[datetime, RunRecord]] = field(default_factory=list)
    bad_lines: int = 0
    first_bad: str | None = None  # "file:line" of the first bad line
    ignored: int = 0  # journal entries with other messages
    sources: list[str] = field(default_factory=list)


# -- finding and opening files ---------------------------------------------------------------


def rotated_siblings(path: Path) -> list[Path]:
    """``path``'s rotated files (``path.N`` / ``path.N.gz``), oldest (highest N) first."""
    found: list[tuple[int, Path]] = []
    for p in path.parent.glob(f"{glob_escape(path.name)}.*"):
        m = _ROTATED.fullmatch(p.name[len(path.name) :])
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, key=lambda t: -t[0])]


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def expand_logs(paths: Sequence[str]) -> list[Path]:
    """Each LOG with its rotated files first (oldest first); duplicates dropped."""
    out: list[Path] = []
    for arg in paths:
        p = Path(arg)
        siblings = [] if _ROTATED.search(p.name) else rotated_siblings(p)
        for q in [*siblings, p]:
            if q not in out:
                out.append(q)
    return out


def open_log(path: Path) -> IO[str]:
    """Open a log as text, gunzipping when the file starts with gzip's magic bytes."""
    raw = path.open("rb")
    try:
        magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    except OSError:
        raw.close()
        raise
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", errors="replace")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


# -- parsing lines -----------------------------------------------------------------------------


def _journal_message(entry: Mapping[str, Any]) -> str | None:
    """The MESSAGE of a ``journalctl -o json`` entry (journald gives bytes as a number list)."""
    msg = entry.get("MESSAGE")
    if isinstance(msg, list):
        return bytes(int(b) & 0xFF for b in msg).decode("utf-8", "replace")
    return msg if isinstance(msg, str) else None


def _is_journal_entry(obj: Mapping[str, Any]) -> bool:
    return "MESSAGE" in obj and any(k.startswith("__") for k in obj)


def parse_record(obj: Mapping[str, Any]) -> MissRecord | RunRecord:
    """A record from its JSON object; ValueError / TypeError when it is not a valid one."""
    if obj.get("type") == "run":
        return RunRecord.from_dict(obj)
    return MissRecord.from_dict(obj)


def parse_line(line: str) -> MissRecord | RunRecord | None:
    """One input line -> a record, or None when it is a journal entry about something else.

    Raises ValueError (or TypeError) for a line that should have been a record and is not.
    """
    text = line.strip()
    if text.startswith(JOURNAL_PREFIX):
        text = text[len(JOURNAL_PREFIX) :]
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if not _is_journal_entry(obj):
        return parse_record(obj)
    msg = (_journal_message(obj) or "").strip()
    if msg.startswith(JOURNAL_PREFIX):
        return parse_record(_object(msg[len(JOURNAL_PREFIX) :]))
    if msg.startswith("{"):
        try:
            inner = _object(msg)
        except ValueError:
            return None  # some other program's brace-led message
        if inner.get("type") in ("miss", "run") or "cause" in inner:
            return parse_record(inner)
    return None


def _object(text: str) -> dict[str, Any]:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_ts(ts: str) -> datetime:
    """An ISO 8601 timestamp; naive ones are taken as UTC (the log writes UTC)."""
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def read_lines(lines: Iterable[str], name: str, into: Loaded) -> None:
    """Parse ``lines`` (from the input called ``name``) into ``into``."""
    into.sources.append(name)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = parse_line(line)
            if rec is None:
                into.ignored += 1
                continue
            t = parse_ts(rec.ts)
        except (ValueError, TypeError, AttributeError, RecursionError) as e:
            into.bad_lines += 1
            if into.first_bad is None:
                into.first_bad = f"{name}:{number}: {str(e)[:120]}"
            continue
        if isinstance(rec, RunRecord):
            into.runs.append((t, rec))
        else:
            into.misses.append((t, rec))


def load(paths: Sequence[str], stdin: IO[str] | None = None) -> Loaded:
    """Read every path (``-`` is ``stdin``); OSError / EOFError for an unreadable file."""
    loaded = Loaded()
    for p in expand_logs([a for a in paths if a != "-"]):
        with open_log(p) as f:
            read_lines(f, str(p), loaded)
    if "-" in paths or not paths:
        if stdin is None:
            raise ValueError("no input: give LOG paths, or '-' with journalctl -o json on stdin")
        read_lines(stdin, "<stdin>", loaded)
    loaded.misses.sort(key=lambda tr: tr[0])
    loaded.runs.sort(key=lambda tr: tr[0])
    return loaded


# -- the report ----------------------------------------------------------------------------


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``10m`` / ``2h`` / ``1.5d`` / ``30s`` ago, or an ISO 8601 time (naive = local time)."""
    now = now or datetime.now(timezone.utc)
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS_S[m.group(2)])
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: expected an ISO time (2024-05-01T12:00, 2024-05-01 12:00:00+00:00)"
            " or an age like 30s, 10m, 2h, 1d"
        ) from None
    return t if t.tzinfo else t.astimezone()  # naive: the reader's local time, as journalctl


def _pcts(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(arr.max()), 3),
        "count": int(arr.size),
    }


def stage_percentiles(misses: Sequence[MissRecord]) -> dict[str, dict[str, float]]:
    """``{stage: {p50, p95, p99, max, count}}`` in ms over the ``stages`` of miss records."""
    per: dict[str, list[float]] = {}
    for rec in misses:
        for stage, ms in rec.stages.items():
            per.setdefault(stage, []).append(ms)
    order = [s for s in STAGES if s in per] + sorted(s for s in per if s not in STAGES)
    return {s: _pcts(per[s]) for s in order}


def _worst(misses: Sequence[MissRecord]) -> list[dict[str, Any]]:
    top = sorted(misses, key=lambda r: -r.over_ms)[:WORST_N]
    keys = ("ts", "frame", "source", "cause", "over_ms", "latency_ms", "action")
    return [{k: getattr(r, k) for k in keys} for r in top]


def _per_minute(times: Sequence[datetime]) -> dict[str, int]:
    counts = Counter(t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ") for t in times)
    return dict(sorted(counts.items()))


def _run_totals(
    runs: Sequence[tuple[datetime, RunRecord]], since: datetime | None
) -> dict[str, Any] | None:
    """Counter totals over the window: per run, its last record in the window minus its last
    record before the window (the counters are cumulative per run)."""
    last_in: dict[str, RunRecord] = {}
    base: dict[str, RunRecord] = {}
    for t, rec in runs:
        (base if since is not None and t < since else last_in)[rec.run] = rec
    if not last_in:
        return None
    names = (*COUNTER_NAMES, "lost")
    tot = dict.fromkeys(names, 0)
    for run, rec in last_in.items():
        before = base.get(run)
        for n in names:
            tot[n] += getattr(rec, n) - (getattr(before, n) if before else 0)
    tot["frames"] = frames_held(tot["processed"], tot["skipped_stale"])
    tot["runs"] = len(last_in)
    tot["exited"] = sum(rec.event == "exit" for rec in last_in.values())
    return tot


def analyse(loaded: Loaded, since: datetime | None = None) -> dict[str, Any]:
    """The ``edge misses --json`` object (documented in docs/MISS_LOG.md)."""
    # a gap's closing record ("source-back") describes the same missed frame again, with the
    # whole outage in latency_ms: the run counted the gap once, and so does the report
    pairs = [
        (t, r)
        for t, r in loaded.misses
        if (since is None or t >= since) and r.action != "source-back"
    ]
    misses = [r for _, r in pairs]
    by_cause = Counter(r.cause for r in misses)
    frames = _run_totals(loaded.runs, since)
    rate = None
    if frames is not None and frames["frames"] > 0:
        rate = round(frames["missed"] / frames["frames"], 6)
    return {
        "misses": len(misses),
        "first": pairs[0][1].ts if pairs else None,
        "last": pairs[-1][1].ts if pairs else None,
        "since": since.isoformat() if since else None,
        "miss_rate": rate,
        "frames": frames,
        "by_cause": dict(sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))),
        "latency_ms": _pcts([r.latency_ms for r in misses]) if misses else None,
        "stages_ms": stage_percentiles(misses),
        "longest_run": max((r.consecutive for r in misses), default=0),
        "worst": _worst(misses),
        "per_minute": _per_minute([t for t, _ in pairs]),
        "bad_lines": loaded.bad_lines,
        "first_bad": loaded.first_bad,
        "ignored": loaded.ignored,
        "inputs": loaded.sources,
    }


def iter_minutes(per_minute: Mapping[str, int], limit: int) -> Iterator[tuple[str, int]]:
    """The last ``limit`` minutes that had misses (for the text report)."""
    items = list(per_minute.items())
    yield from items[-limit:]
