"""``edge misses [LOG...] [--journal] [--since T] [--json]``: what the miss log says.

Input, in order: the LOG paths given (``-`` is stdin); else ``--journal`` (``journalctl -u
edge-vision -o json``); else stdin when it is a pipe or a file (``journalctl ... | edge
misses``); else the default log: ``<state dir>/misses.jsonl`` (:mod:`edge.state`), or the
service's ``/var/lib/edge-vision/misses.jsonl`` when only that one exists.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from edge.errors import ConfigError
from edge.misses import Loaded, analyse, iter_minutes, load, parse_since
from edge.state import MISS_LOG_NAME, SERVICE_STATE_DIR, default_miss_log

_MINUTES_SHOWN = 30
_BAR = 40

#: the systemd unit ``--journal`` reads by default
UNIT = "edge-vision"

EPILOG = """\
examples:
  edge misses                                            # the default log (the state directory)
  edge misses /var/lib/edge-vision/misses.jsonl          # the log and its rotated files
  edge misses --journal --since 1h                       # the service's journal (miss_log = "-")
  edge misses misses.jsonl --since 2h --json | jq .by_cause
  journalctl -u edge-vision -o json --since today | edge misses -
"""


def add_parser(subparsers: Any) -> None:
    """Register ``misses`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "misses",
        help="summarise deadline-miss logs: rate, causes, stage latencies, worst frames",
        description=(
            "Read miss logs (LOG, with its rotated LOG.1 ... and .gz files) or journalctl -o json"
            " output on stdin, and report the miss rate, misses by cause, per-stage latency"
            " percentiles of missed frames, the longest run of consecutive misses, the worst"
            " frames and misses per minute. The format is in docs/MISS_LOG.md."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "logs",
        nargs="*",
        metavar="LOG",
        help="miss log files; '-' (or none, with a pipe) reads stdin, e.g. journalctl -o json;"
        " none: the default log in the state directory",
    )
    p.add_argument(
        "--journal",
        action="store_true",
        help=f"read the service's journal (journalctl -u {UNIT} -o json; --unit for another)",
    )
    p.add_argument("--unit", default=UNIT, help=f"the unit --journal reads ({UNIT})")
    p.add_argument("--since", metavar="T", help="only misses at or after T: ISO time or 10m, 2h")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
        loaded = _load(args, since)
    except ConfigError as e:
        return _fail(str(e))
    except (OSError, EOFError) as e:
        where = getattr(e, "filename", None)
        what = getattr(e, "strerror", None) or str(e) or type(e).__name__
        subject = f"cannot read {where}" if where else "cannot read a miss log"
        return _fail(f"{subject}: {what}; expected a miss log written by edge run (--miss-log)")
    if not loaded.misses and not loaded.runs and loaded.bad_lines:
        return _fail(
            f"{', '.join(loaded.sources)}: not a miss log ({loaded.bad_lines} lines, none of them"
            f" a miss or run record; first: {loaded.first_bad}); expected the JSON lines edge"
            " run writes (docs/MISS_LOG.md) or journalctl -o json output"
        )
    report = analyse(loaded, since)
    if args.json:
        sys.stdout.write(json.dumps(report, allow_nan=False) + "\n")
    else:
        sys.stdout.write("\n".join(text_report(report)) + "\n")
    return 0


def _load(args: argparse.Namespace, since: datetime | None) -> Loaded:
    logs: list[str] = list(args.logs)
    if args.journal:
        loaded = load(["-"], _journal(args.unit, since))
        loaded.sources = [f"the journal of {args.unit}"]
        return loaded
    if logs or _stdin_has_input(sys.stdin):
        return load(logs, sys.stdin)
    return load([default_log(os.environ)], None)


def _stdin_has_input(stdin: IO[str] | None) -> bool:
    """A pipe, a socket or a redirected file: yes. A terminal or /dev/null: no (then the
    default log is read, so ``edge misses`` from cron or a unit does not read nothing)."""
    if stdin is None:
        return False
    try:
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return not stdin.isatty()  # an in-memory stream
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def default_log(environ: Mapping[str, str]) -> str:
    """The log ``edge run`` writes by default here; the service's when only that one exists."""
    ours = default_miss_log(environ)
    service = SERVICE_STATE_DIR / MISS_LOG_NAME
    if not ours.exists() and "STATE_DIRECTORY" not in environ and service.exists():
        return str(service)
    if not ours.exists():
        raise ConfigError(
            f"no miss log at {ours} (the default; edge run writes it there): give LOG paths,"
            f" --journal for the service's journal, or pipe journalctl -o json output in"
        )
    return str(ours)


def _journal(unit: str, since: datetime | None) -> IO[str]:
    """``journalctl -u UNIT -o json`` output (from ``since`` when given), as a text stream."""
    exe = shutil.which("journalctl")
    if exe is None:
        raise ConfigError("--journal: journalctl not found (it comes with systemd)")
    cmd = [exe, "-u", unit, "-o", "json", "--no-pager", "-q"]
    if since is not None:
        cmd += ["--since", f"@{int(since.timestamp())}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"--journal: {' '.join(cmd)} failed: {e}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise ConfigError(
            f"--journal: journalctl exited with {done.returncode}: {first} (reading another"
            " user's service journal needs the systemd-journal or adm group)"
        )
    return io.StringIO(done.stdout)


def _fail(message: str) -> int:
    sys.stderr.write(f"edge misses: {message}\n")
    return 2


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def text_report(r: Mapping[str, Any]) -> Iterator[str]:
    """The human report, line by line."""
    n = r["misses"]
    span = f" from {r['first']} to {r['last']}" if n else ""
    inputs = r["inputs"]
    where = inputs[0] if len(inputs) == 1 else f"{len(inputs)} inputs"
    yield f"{n} deadline misses{span} in {where}"
    yield from _rate_lines(r)
    if n:
        causes = ", ".join(f"{c} {k} ({_pct(k, n)})" for c, k in r["by_cause"].items())
        yield f"by cause: {causes}"
        lat = r["latency_ms"]
        yield (
            f"latency of missed frames: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms,"
            f" p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms"
        )
        yield from _stage_lines(r["stages_ms"])
        yield f"longest run of consecutive misses: {r['longest_run']}"
        yield from _worst_lines(r["worst"])
        yield from _minute_lines(r["per_minute"])
    if r["bad_lines"]:
        yield f"bad lines skipped: {r['bad_lines']} (first: {r['first_bad']})"


def _rate_lines(r: Mapping[str, Any]) -> Iterator[str]:
    f = r["frames"]
    if f is None:
        yield "miss rate: unknown (no run records in the log; edge run writes them each minute)"
        return
    rate = "-" if r["miss_rate"] is None else f"{100.0 * r['miss_rate']:.3f}%"
    yield (
        f"miss rate: {rate} ({f['missed']} of {f['frames']} frames; captured {f['captured']},"
        f" dropped {f['dropped']}, skipped stale {f['skipped_stale']}; {f['runs']} run(s))"
    )
    unlogged = f["missed"] - r["misses"]
    if unlogged > 0:
        yield f"  {unlogged} counted misses are not in the log ({f['lost']} reported lost)"


def _stage_lines(stages: Mapping[str, Mapping[str, float]]) -> Iterator[str]:
    yield "stage times of missed frames (ms):"
    yield f"  {'stage':<12} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'count':>7}"
    for stage, s in stages.items():
        cells = " ".join(f"{s[k]:>8.2f}" for k in ("p50", "p95", "p99", "max"))
        yield f"  {stage:<12} {cells} {int(s['count']):>7}"


def _worst_lines(worst: list[Mapping[str, Any]]) -> Iterator[str]:
    yield "worst frames:"
    for w in worst:
        yield (
            f"  +{w['over_ms']:.1f} ms  frame {w['frame']}  {w['cause']}  {w['action']}"
            f"  {w['source']}  {w['ts']}"
        )


def _minute_lines(per_minute: Mapping[str, int]) -> Iterator[str]:
    shown = list(iter_minutes(per_minute, _MINUTES_SHOWN))
    hidden = len(per_minute) - len(shown)
    more = f", the last {len(shown)} of {len(per_minute)} shown" if hidden else ""
    yield f"misses per minute (minutes with misses{more}):"
    top = max(per_minute.values(), default=1)
    for minute, count in shown:
        bar = "#" * max(1, round(_BAR * count / top))
        yield f"  {minute}  {count:>6}  {bar}"
