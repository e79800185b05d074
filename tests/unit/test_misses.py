from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.cli import misses as cli
from edge.errors import ConfigError
from edge.misses import expand_logs, load, parse_line, parse_since
from edge.watchdog.misslog import JOURNAL_PREFIX, MissLog
from edge.watchdog.record import MissRecord, RunRecord
from tests.tools import require_tool

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
CAUSES = ("infer", "infer", "decode", "queue", "infer", "publish", "gap")


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def make_misses(n: int, start: datetime = T0, step_s: float = 7.0) -> list[MissRecord]:
    rng = np.random.default_rng(3)
    out = []
    consecutive = 0
    for i in range(n):
        consecutive = consecutive + 1 if i % 10 else 1  # runs of up to 10
        infer = float(rng.uniform(20, 60))
        over = float(rng.uniform(0.1, 30))
        out.append(
            MissRecord(
                frame=1000 + 3 * i,
                source="vtest.avi",
                budget_ms=33.333,
                latency_ms=33.333 + over,
                over_ms=over,
                stages={"wait": 0.2, "decode": 2.5 + i % 3, "infer": infer},
                cause=CAUSES[i % len(CAUSES)],
                action="completed-late",
                consecutive=min(consecutive, 7 if i < 50 else 10),
                ts=iso(start + timedelta(seconds=step_s * i)),
                run="r1",
            )
        )
    return out


def run_record(event: str, t: datetime, processed: int, missed: int, run: str = "r1") -> RunRecord:
    return RunRecord(
        run=run,
        event=event,
        source="vtest.avi",
        budget_ms=33.333,
        captured=processed + 10,
        processed=processed,
        dropped=10,
        skipped_stale=processed // 100,
        missed=missed,
        ts=iso(t),
    )


def write_log(path: Path, records: list[Any], max_bytes: int = 5 << 20, backups: int = 3) -> None:
    log = MissLog(path, max_bytes=max_bytes, backups=backups)
    for r in records:
        assert log.write(r)
    assert log.close(10)
    assert log.lost == 0


def cli_run(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str | None = None,
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="edge")
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["misses", *argv])
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_from_a_rotated_log_matches_the_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recs = make_misses(60)
    path = tmp_path / "misses.jsonl"
    runs = [run_record("start", T0 - timedelta(seconds=1), 0, 0)]
    runs.append(run_record("exit", T0 + timedelta(minutes=8), 30_000, 61))
    write_log(path, [runs[0], *recs, runs[1]], max_bytes=4000, backups=20)
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert len(rotated) > 3  # the records really are spread over rotated files
    gz = path.with_name("misses.jsonl.2")
    gz.with_name("misses.jsonl.2.gz").write_bytes(gzip.compress(gz.read_bytes()))
    gz.unlink()

    code, out, err = cli_run([str(path), "--json"], capsys, monkeypatch)
    assert code == 0 and err == ""
    r = json.loads(out)
    assert r["misses"] == 60
    assert r["by_cause"] == dict(Counter(x.cause for x in recs).most_common())
    infer = [x.stages["infer"] for x in recs]
    p50, p95, p99 = np.percentile(infer, [50, 95, 99])
    assert r["stages_ms"]["infer"]["p50"] == pytest.approx(p50, abs=1e-3)
    assert r["stages_ms"]["infer"]["p99"] == pytest.approx(p99, abs=1e-3)
    assert r["stages_ms"]["infer"]["p95"] == pytest.approx(p95, abs=1e-3)
    assert list(r["stages_ms"]) == ["wait", "decode", "infer"]
    assert r["longest_run"] == 10
    worst = sorted(recs, key=lambda x: -x.over_ms)[:5]
    assert [w["frame"] for w in r["worst"]] == [x.frame for x in worst]
    minutes = Counter(x.ts[:16] + "Z" for x in recs)
    assert r["per_minute"] == dict(sorted(minutes.items()))
    assert sum(r["per_minute"].values()) == 60
    assert r["frames"]["frames"] == 30_000 + 300
    assert r["frames"]["missed"] == 61
    assert r["miss_rate"] == pytest.approx(61 / 30_300, abs=1e-6)
    assert (r["first"], r["last"]) == (recs[0].ts, recs[-1].ts)
    assert r["bad_lines"] == 0


def test_text_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    recs = make_misses(14)
    write_log(path, recs)
    code, out, _ = cli_run([str(path)], capsys, monkeypatch)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("14 deadline misses from 2024-05-01T12:00:00.000+00:00")
    assert lines[1].startswith("miss rate: unknown")
    assert lines[2] == (
        "by cause: infer 6 (42.9%), decode 2 (14.3%), gap 2 (14.3%), publish 2 (14.3%),"
        " queue 2 (14.3%)"
    )
    assert "longest run of consecutive misses: 7" in lines
    worst = max(recs, key=lambda x: x.over_ms)
    assert f"  +{worst.over_ms:.1f} ms  frame {worst.frame}" in out
    minutes = [line.split() for line in lines if line.startswith("  2024-05-01T12:0")]
    assert minutes == [["2024-05-01T12:00Z", "9", "#" * 40], ["2024-05-01T12:01Z", "5", "#" * 22]]


def test_since_relative_and_iso_with_run_deltas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(timezone.utc)
    old = make_misses(5, start=now - timedelta(hours=3))
    new = make_misses(3, start=now - timedelta(minutes=10), step_s=1)
    runs = [
        run_record("tick", now - timedelta(hours=2), 1000, 5),
        run_record("tick", now - timedelta(minutes=5), 1600, 8),
        run_record("start", now - timedelta(minutes=4), 0, 0, run="r2"),
        run_record("tick", now - timedelta(minutes=3), 400, 0, run="r2"),
    ]
    path = tmp_path / "m.jsonl"
    write_log(path, [*old, runs[0], *new, *runs[1:]])
    code, out, _ = cli_run([str(path), "--since", "1h", "--json"], capsys, monkeypatch)
    assert code == 0
    r = json.loads(out)
    assert r["misses"] == 3
    # r1 moved 1000 -> 1600 processed inside the window, r2 0 -> 400
    assert r["frames"]["processed"] == 600 + 400
    assert r["frames"]["missed"] == 3 and r["frames"]["runs"] == 2
    since = iso(now - timedelta(minutes=10, seconds=-0.5))
    code, out, _ = cli_run([str(path), "--since", since, "--json"], capsys, monkeypatch)
    assert json.loads(out)["misses"] == 2


def test_parse_since() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1.5d", now) == now - timedelta(hours=36)
    assert parse_since("2024-05-01T11:00:00Z", now) == now - timedelta(hours=1)
    assert parse_since("2024-05-01 13:00+02:00", now) == now - timedelta(hours=1)
    assert parse_since("2024-05-01T11:00").tzinfo is not None  # naive: local time
    with pytest.raises(ConfigError, match="10m"):
        parse_since("yesterday")


def test_bad_lines_are_counted_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    good = make_misses(4)
    deep = "[" * 100_000 + "]" * 100_000  # json.loads: RecursionError, not ValueError
    bad = ["not json", '{"type":"miss","frame":1}', "[1,2]", '{"type":"miss","fra', "", deep]
    path.write_text("\n".join([good[0].to_json(), *bad, *(g.to_json() for g in good[1:])]))
    code, out, _ = cli_run([str(path), "--json"], capsys, monkeypatch)
    r = json.loads(out)
    assert code == 0 and r["misses"] == 4 and r["bad_lines"] == 5
    assert r["first_bad"].startswith(f"{path}:2:")
    code, out, _ = cli_run([str(path)], capsys, monkeypatch)
    assert f"bad lines skipped: 5 (first: {path}:2:" in out


@pytest.mark.parametrize("kind", ["missing", "directory", "truncated-gzip"])
def test_unreadable_input_is_one_line_and_exit_2(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    if kind == "directory":
        path.mkdir()
    elif kind == "truncated-gzip":
        path.write_bytes(
            gzip.compress(b"\n".join(r.to_json().encode() for r in make_misses(50)))[:300]
        )
    code, out, err = cli_run([str(path)], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("edge misses: cannot read")
    if kind != "truncated-gzip":
        assert str(path) in err


def test_bad_since_and_no_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.jsonl"
    write_log(path, make_misses(1))
    code, _, err = cli_run([str(path), "--since", "soon"], capsys, monkeypatch)
    assert code == 2 and "--since 'soon'" in err and len(err.splitlines()) == 1

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty())  # no LOG and nothing piped: the default log
    code, _, err = cli_run([], capsys, monkeypatch)
    assert code == 2 and err.startswith("edge misses: no miss log at ") and "--journal" in err


def test_expand_logs_orders_rotated_files(tmp_path: Path) -> None:
    base = tmp_path / "m.jsonl"
    for name in ("m.jsonl", "m.jsonl.1", "m.jsonl.2.gz", "m.jsonl.10", "m.jsonl.bak", "m.jsonl.1x"):
        (tmp_path / name).write_text("")
    got = expand_logs([str(base), str(tmp_path / "m.jsonl.1")])
    assert [p.name for p in got] == ["m.jsonl.10", "m.jsonl.2.gz", "m.jsonl.1", "m.jsonl"]
    assert [p.name for p in expand_logs([str(tmp_path / "m.jsonl.1")])] == ["m.jsonl.1"]


def test_parse_line_kinds() -> None:
    rec = make_misses(1)[0]
    assert parse_line(rec.to_json()) == rec
    assert parse_line(JOURNAL_PREFIX + rec.to_json()) == rec
    entry = {"__CURSOR": "s=1", "MESSAGE": list((JOURNAL_PREFIX + rec.to_json()).encode())}
    assert parse_line(json.dumps(entry)) == rec  # journald's byte-array form of MESSAGE
    other = {"__CURSOR": "s=2", "MESSAGE": '{"level": "info", "msg": "hello"}'}
    assert parse_line(json.dumps(other)) is None
    assert parse_line(json.dumps({"__CURSOR": "s=3", "MESSAGE": None})) is None
    with pytest.raises(ValueError):
        parse_line(json.dumps({"__CURSOR": "s=4", "MESSAGE": JOURNAL_PREFIX + "{oops"}))


def journal_export(messages: list[tuple[datetime, str]]) -> bytes:
    """systemd's journal export format, one entry per message."""
    out = []
    for i, (t, msg) in enumerate(messages):
        us = int(t.timestamp() * 1e6)
        out.append(
            f"__REALTIME_TIMESTAMP={us}\n__MONOTONIC_TIMESTAMP={1000 + i}\n"
            f"_BOOT_ID=0123456789abcdef0123456789abcdef\nSYSLOG_IDENTIFIER=edge\n"
            f"MESSAGE={msg}\n\n"
        )
    return "".join(out).encode()


def test_real_journalctl_json_on_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = require_tool("systemd-journal-remote", "systemd-journal-remote")
    require_tool("journalctl", "systemd")
    recs = make_misses(6)
    run = run_record("exit", T0 + timedelta(minutes=1), 600, 6)
    msgs = [(T0, "edge-vision starting")]
    msgs += [(T0, JOURNAL_PREFIX + r.to_json()) for r in recs[:4]]
    msgs += [(T0, r.to_json()) for r in recs[4:]]  # a bare JSON record as the MESSAGE
    msgs += [(T0, "3 deadline misses in the last 1.0 s: infer 3; worst +1.0 ms")]
    msgs += [(T0, JOURNAL_PREFIX + run.to_json())]
    journal = tmp_path / "edge.journal"
    subprocess.run(
        [remote, "-o", str(journal), "-"], input=journal_export(msgs), check=True, timeout=30
    )
    dump = subprocess.run(
        ["journalctl", "--file", str(journal), "-o", "json", "--no-pager"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert dump.count("__CURSOR") == len(msgs)
    code, out, _ = cli_run(["--json"], capsys, monkeypatch, stdin=dump)  # no LOG: stdin
    r = json.loads(out)
    assert code == 0 and r["misses"] == 6 and r["bad_lines"] == 0 and r["ignored"] == 2
    assert r["by_cause"] == dict(Counter(x.cause for x in recs).most_common())
    assert r["miss_rate"] == pytest.approx(6 / 606, abs=1e-6)
    code, out, _ = cli_run(["-", "--json"], capsys, monkeypatch, stdin=dump)
    assert json.loads(out)["misses"] == 6


def test_load_reads_stdin_dash_with_files(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    recs = make_misses(3)
    write_log(path, recs[:2])
    loaded = load([str(path), "-"], io.StringIO(JOURNAL_PREFIX + recs[2].to_json() + "\n"))
    assert [r.frame for _, r in loaded.misses] == [r.frame for r in recs]
    assert loaded.sources == [str(path), "<stdin>"]
