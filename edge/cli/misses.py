"""``edge misses LOG... [--since T] [--json]``: what the miss log says, for the operator."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from edge.errors import ConfigError
from edge.misses import analyse, iter_minutes, load, parse_since

_MINUTES_SHOWN = 30
_BAR = 40

EPILOG = """\
examples:
  edge misses /var/lib/edge-vision/misses.jsonl          # the log and its rotated files
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
        help="miss log files; '-' (or none, with a pipe) reads stdin, e.g. journalctl -o json",
    )
    p.add_argument("--since", metavar="T", help="only misses at or after T: ISO time or 10m, 2h")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logs: list[str] = list(args.logs)
    if not logs and sys.stdin.isatty():
        return _fail("no input: expected LOG paths, or journalctl -o json output piped to stdin")
    try:
        since = parse_since(args.since) if args.since else None
        loaded = load(logs, sys.stdin)
    except ConfigError as e:
        return _fail(str(e))
    except (OSError, EOFError) as e:
        where = getattr(e, "filename", None)
        what = getattr(e, "strerror", None) or str(e) or type(e).__name__
        subject = f"cannot read {where}" if where else "cannot read a miss log"
        return _fail(f"{subject}: {what}; expected a miss log written by edge run (--miss-log)")
    report = analyse(loaded, since)
    if args.json:
        sys.stdout.write(json.dumps(report, allow_nan=False) + "\n")
    else:
        sys.stdout.write("\n".join(text_report(report)) + "\n")
    return 0


def _fail(message: str) -> int:
    sys.stderr.write(f"edge misses: {message}\n")
    return 2


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def text_report(r: Mapping[str, Any]) -> Iterator[str]:
    """The human report, line by line."""
    n = r["misses"]
    span = f" from {r['first']} to {r['last']}" if n else ""
    yield f"{n} deadline misses{span} in {len(r['inputs'])} input(s)"
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
