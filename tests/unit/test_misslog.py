from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path

import pytest

from edge.errors import MissLogError
from edge.testing import FakeClock
from edge.watchdog.misslog import JOURNAL_PREFIX, MissLog, MissSummary, format_summary
from edge.watchdog.record import MissRecord, RunRecord

LOGGER = "edge.watchdog.misslog"


def rec(frame: int = 1, cause: str = "infer", over: float = 5.0, **kw: object) -> MissRecord:
    fields: dict[str, object] = {
        "frame": frame,
        "source": "/dev/video0",
        "budget_ms": 33.333,
        "latency_ms": 33.333 + over,
        "over_ms": over,
        "stages": {"wait": 0.5, "decode": 3.25, "infer": 30.0004},
        "cause": cause,
        "action": "completed-late",
        "consecutive": 1,
        "ts": "2024-05-01T12:00:00.000+00:00",
    }
    fields.update(kw)
    return MissRecord(**fields)  # type: ignore[arg-type]


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- the records ---------------------------------------------------------------------------


def test_miss_record_round_trips_through_one_json_line() -> None:
    r = rec(temp_c=61.27, throttled="0x50005", throttle_flags=["under-voltage"], run="ab12")
    line = r.to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[:8] == [
        "type",
        "ts",
        "frame",
        "source",
        "budget_ms",
        "latency_ms",
        "over_ms",
        "stages",
    ]
    assert data["type"] == "miss" and data["schema"] == 1
    assert data["stages"]["infer"] == 30.0  # 3 decimals
    assert data["temp_c"] == 61.3 and data["throttle_flags"] == ["under-voltage"]
    assert MissRecord.from_json(line) == r


def test_miss_record_create_computes_over_and_ms() -> None:
    r = MissRecord.create(
        frame=9,
        source="demo",
        budget_ms=33.3333,
        latency_ms=51.0,
        stages_ns={"infer": 45_123_456, "decode": 2_000_000},
        cause="infer",
        action="skipped",
        consecutive=3,
    )
    assert r.over_ms == 17.667
    assert r.stages == {"infer": 45.123, "decode": 2.0}
    assert r.ts.endswith("+00:00")


@pytest.mark.parametrize(
    ("kw", "err"),
    [
        ({"cause": "gpu"}, ValueError),
        ({"over_ms": float("nan")}, ValueError),
        ({"latency_ms": float("inf")}, ValueError),
        ({"stages": {"infer": float("nan")}}, ValueError),
        ({"stages": [1, 2]}, TypeError),
    ],
)
def test_miss_record_refuses_bad_values(kw: dict[str, object], err: type[Exception]) -> None:
    with pytest.raises(err):
        rec(**kw)


def test_nan_temperature_becomes_null_not_nan() -> None:
    r = rec(temp_c=float("nan"))
    assert json.loads(r.to_json())["temp_c"] is None


def test_from_json_rejects_other_types_and_missing_fields() -> None:
    with pytest.raises(ValueError):
        MissRecord.from_json('{"type":"run"}')
    with pytest.raises(TypeError):
        MissRecord.from_json('{"type":"miss","frame":1}')
    with pytest.raises(ValueError):
        MissRecord.from_json("[1]")
    newer = json.loads(rec().to_json()) | {"gpu_temp_c": 50}
    assert MissRecord.from_json(json.dumps(newer)) == rec()  # unknown keys are ignored


def test_run_record_from_counters_round_trip() -> None:
    counters = {
        "captured": 10,
        "processed": 8,
        "dropped": 2,
        "skipped_stale": 1,
        "missed": 3,
        "missed_by_cause": {"infer": 2, "queue": 1},
        "decode_errors": 5,
    }
    r = RunRecord.from_counters(counters, run="r1", event="tick", source="demo", budget_ms=33.3)
    assert r.frames == 9
    assert RunRecord.from_json(r.to_json()) == r
    assert json.loads(r.to_json())["type"] == "run"
    with pytest.raises(ValueError, match="event"):
        RunRecord(run="r", event="middle", source="s", budget_ms=1.0)


# -- the miss log --------------------------------------------------------------------------


def test_writes_json_lines_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "state" / "misses.jsonl"
    log = MissLog(path)
    try:
        for i in range(20):
            assert log.write(rec(frame=i))
        log.write(RunRecord(run="r", event="exit", source="s", budget_ms=1.0))
        assert log.flush(5)
        lines = lines_of(path)
        assert [MissRecord.from_json(x).frame for x in lines[:20]] == list(range(20))
        assert json.loads(lines[20])["type"] == "run"
        assert log.stats() == {
            "written": 21,
            "lost": 0,
            "write_errors": 0,
            "rotations": 0,
            "queued": 0,
        }
    finally:
        assert log.close()
    assert not log.write(rec())  # after close: counted lost, no exception
    assert log.lost == 1


def test_rotation_keeps_backups_in_order_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "misses.jsonl"
    size = len(rec(frame=100).to_json()) + 1
    log = MissLog(path, max_bytes=size * 10, backups=2)
    for i in range(100, 145):
        log.write(rec(frame=i))
    assert log.close(5)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["misses.jsonl", "misses.jsonl.1", "misses.jsonl.2", "misses.jsonl.lock"]
    frames = []
    for p in (path.with_name("misses.jsonl.2"), path.with_name("misses.jsonl.1"), path):
        assert p.stat().st_size <= size * 10
        frames += [MissRecord.from_json(x).frame for x in lines_of(p)]
    assert frames == list(range(120, 145))  # 10 lines a file: the newest 25, oldest first
    assert log.stats()["rotations"] == 4


def test_zero_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    size = len(rec(frame=10).to_json()) + 1
    log = MissLog(path, max_bytes=size * 4, backups=0)
    for i in range(10, 19):
        log.write(rec(frame=i))
    assert log.close(5)
    assert [MissRecord.from_json(x).frame for x in lines_of(path)] == [18]
    assert sorted(tmp_path.iterdir()) == [path, tmp_path / "m.jsonl.lock"]


def test_deleted_directory_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "state" / "m.jsonl"
    log = MissLog(path)
    log.write(rec(frame=1))
    assert log.flush(5)
    shutil.rmtree(path.parent)
    log.write(rec(frame=2))
    assert log.close(5)
    assert [MissRecord.from_json(x).frame for x in lines_of(path)] == [2]
    assert log.lost == 0


def test_renamed_by_logrotate_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    log = MissLog(path)
    log.write(rec(frame=1))
    assert log.flush(5)
    path.rename(tmp_path / "m.jsonl.old")
    log.write(rec(frame=2))
    assert log.close(5)
    assert [MissRecord.from_json(x).frame for x in lines_of(path)] == [2]
    assert len(lines_of(tmp_path / "m.jsonl.old")) == 1


def test_half_written_line_is_ended_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(rec(frame=1).to_json() + "\n" + '{"type":"miss","fra')
    log = MissLog(path)
    log.write(rec(frame=2))
    assert log.close(5)
    lines = lines_of(path)
    assert lines[1] == '{"type":"miss","fra'
    assert MissRecord.from_json(lines[2]).frame == 2


def test_full_disk_never_raises_counts_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a directory that is /dev, so the log is /dev/full (every write: ENOSPC) until it is
    # replaced by a real directory (the disk "comes back"); the log itself is no link
    disk = tmp_path / "disk"
    disk.symlink_to("/dev")
    path = disk / "full"
    clock = FakeClock()
    log = MissLog(path, clock=clock, retry_s=1.0, error_log_interval_s=60.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert log.write(rec(frame=1))  # queued: the caller never sees the disk
        assert log.flush(5)
        assert (log.lost, log.write_errors, log.written) == (1, 1, 0)
        for i in range(2, 5):  # within retry_s: not even tried
            log.write(rec(frame=i))
        assert log.flush(5)
        assert (log.lost, log.write_errors) == (4, 1)
        clock.advance(1_500_000_000)  # retried, still full: counted, not logged again
        log.write(rec(frame=5))
        assert log.flush(5)
        assert (log.lost, log.write_errors) == (5, 2)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "No space left on device" in errors[0].getMessage()
        clock.advance(61_000_000_000)  # a minute later, still failing: logged once more
        log.write(rec(frame=6))
        assert log.flush(5)
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
        disk.unlink()  # the disk "comes back"
        disk.mkdir()
        clock.advance(1_500_000_000)
        log.write(rec(frame=7))
        assert log.close(5)
    assert [MissRecord.from_json(x).frame for x in lines_of(path)] == [7]
    assert (log.written, log.lost, log.write_errors) == (1, 6, 3)
    assert any("writable again; 6 miss records" in r.getMessage() for r in caplog.records)


def test_unusable_directory_counts_lost(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    log = MissLog(blocker / "m.jsonl", open_now=False)  # as when the disk fails later
    log.write(rec())
    assert log.close(5)
    assert (log.lost, log.write_errors, log.written) == (1, 1, 0)


def test_full_queue_counts_lost_while_the_disk_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for writing blocks until a reader comes: a stalled disk
    log = MissLog(fifo, queue_size=4)
    accepted = sum(log.write(rec(frame=i)) for i in range(1000))
    # the writer holds at most one batch (256) while blocked, the queue 4 more
    assert accepted <= 260
    assert log.lost == 1000 - accepted
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert log.close(10)
    reader.join(10)
    lines = got[0].decode().splitlines()
    assert len(lines) == log.written == accepted
    assert [MissRecord.from_json(x).frame for x in lines] == sorted(
        MissRecord.from_json(x).frame for x in lines
    )


def test_dash_writes_prefixed_lines_to_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    log = MissLog("-")
    log.write(rec(frame=3))
    assert log.close(5)
    out = capfd.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(JOURNAL_PREFIX)
    assert MissRecord.from_json(out[0][len(JOURNAL_PREFIX) :]).frame == 3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MissLog("/tmp/x", max_bytes=0)


# -- only our own file (issue 18) ------------------------------------------------------------

NOTES = "my notes\n" * 1000  # 9 KB of someone's file


@pytest.mark.parametrize("backups", [0, 3])
def test_a_file_that_is_not_a_miss_log_is_refused_and_left_alone(
    tmp_path: Path, backups: int
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(NOTES)
    with pytest.raises(MissLogError, match="not a miss log .* give another --miss-log path"):
        MissLog(path, max_bytes=4096, backups=backups)
    assert path.read_text() == NOTES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "notes.txt.lock"]


def test_a_symbolic_link_is_refused_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text(NOTES)
    path = tmp_path / "misses.jsonl"
    path.symlink_to(victim)
    with pytest.raises(MissLogError, match="is a symbolic link: refused"):
        MissLog(path, max_bytes=4096, backups=0)
    assert path.is_symlink() and victim.read_text() == NOTES


def test_a_miss_log_is_adopted_even_when_its_last_line_was_cut(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(rec(frame=1).to_json() + "\n")
    with MissLog(path) as log:
        log.write(rec(frame=2))
    assert [MissRecord.from_json(x).frame for x in lines_of(path)] == [1, 2]
    cut = tmp_path / "cut.jsonl"
    cut.write_text(rec(frame=1).to_json()[:40])  # the disk filled during the first record
    with MissLog(cut) as log:
        log.write(rec(frame=2))
    assert MissRecord.from_json(lines_of(cut)[1]).frame == 2


def test_a_foreign_file_put_in_place_at_run_time_is_not_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    log = MissLog(path)
    log.write(rec(frame=1))
    assert log.flush(5)
    path.rename(tmp_path / "m.jsonl.old")  # logrotate ...
    path.write_text(NOTES)  # ... and someone else's file where the log was
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        log.write(rec(frame=2))
        assert log.close(5)
    assert path.read_text() == NOTES
    assert (log.written, log.lost) == (1, 1)
    assert any("is not a miss log" in r.getMessage() for r in caplog.records)


def test_a_second_writer_of_one_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    first = MissLog(path)
    try:
        with pytest.raises(MissLogError, match=f"in use by another process \\(pid {os.getpid()}"):
            MissLog(path)
    finally:
        assert first.close(5)
    MissLog(path).close(5)  # released at close


def test_a_lock_file_name_taken_by_someone_elses_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    (tmp_path / "m.jsonl.lock").write_text(NOTES)
    with pytest.raises(MissLogError, match="is not its lock file"):
        MissLog(path)
    assert (tmp_path / "m.jsonl.lock").read_text() == NOTES and not path.exists()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.parent.write_text("x"), "a part of its path is a file, not a directory"),
        (lambda p: p.mkdir(parents=True), "Is a directory.*give a file path"),
    ],
)
def test_a_path_that_cannot_be_a_log_is_an_error_at_start(
    tmp_path: Path, make: object, needle: str
) -> None:
    path = tmp_path / "state" / "m.jsonl"
    make(path)  # type: ignore[operator]
    with pytest.raises(MissLogError, match=needle) as e:
        MissLog(path)
    assert "free space" not in str(e.value)


# -- the stderr summary --------------------------------------------------------------------


def test_summary_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    s = MissSummary(clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(10):
            s.add(rec(frame=i, over=1.0 + i))
            clock.advance(50_000_000)
        s.add(rec(cause="queue", over=18.3))
        s.add(rec(cause="queue", over=2.0))
        assert s.tick() is None  # 0.5 s since the first miss
        clock.advance(500_000_000)
        msg = s.tick()
        assert msg == "12 deadline misses in the last 1.0 s: infer 10, queue 2; worst +18.3 ms"
        assert s.tick() is None
        clock.advance(5_000_000_000)
        assert s.tick() is None  # nothing new: silent
        s.add(rec(cause="gap", over=0.5))
        assert s.flush() == "1 deadline miss in the last 0.0 s: gap 1; worst +0.5 ms"
    assert [r.getMessage() for r in caplog.records] == [
        "12 deadline misses in the last 1.0 s: infer 10, queue 2; worst +18.3 ms",
        "1 deadline miss in the last 0.0 s: gap 1; worst +0.5 ms",
    ]
    assert s.total == 13


def test_format_summary_orders_by_count() -> None:
    got = format_summary({"decode": 1, "infer": 3, "wait": 1}, 7.25, 1.04)
    assert got == "5 deadline misses in the last 1.0 s: infer 3, decode 1, wait 1; worst +7.2 ms"
