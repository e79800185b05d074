"""systemd liveness from the watchdog: READY after the first frame, WATCHDOG only while frames
finish, STATUS with fps / p99 / miss rate, run records in the miss log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.testing import RecordingNotifier
from edge.testing.pipeline import MS, TIMEOUT_S
from edge.watchdog.settings import WatchdogConfig
from tests.pipeline.rig import Rig

SECOND = 1_000_000_000


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier(watchdog_usec=2_000_000)  # WatchdogSec=2: ping every 1 s


@pytest.fixture
def rig(notifier: RecordingNotifier) -> Iterator[Rig]:
    cfg = WatchdogConfig(stuck_ms=100.0, status_interval_s=5.0, run_record_s=60.0)
    r = Rig(notifier=notifier, watchdog=cfg)
    yield r
    r.close()


def advance_and_settle(rig: Rig, ns: int) -> None:
    rig.clock.advance(ns)
    now = rig.clock.now_ns()
    assert rig.watchdog.wait_for(lambda w: w.seen_ns >= now, TIMEOUT_S)


def test_ready_after_the_first_frame_only(rig: Rig, notifier: RecordingNotifier) -> None:
    advance_and_settle(rig, 3 * SECOND)
    assert notifier.count("READY") == 0 and notifier.count("WATCHDOG") == 0
    rig.process(1)
    assert notifier.wait_for("READY", 1, TIMEOUT_S)
    rig.process(3)
    assert notifier.count("READY") == 1


def test_watchdog_pings_stop_while_the_worker_is_stuck(
    rig: Rig, notifier: RecordingNotifier
) -> None:
    rig.process(1)
    advance_and_settle(rig, SECOND)
    assert notifier.count("WATCHDOG") == 1
    rig.process(1)
    advance_and_settle(rig, SECOND)
    assert notifier.count("WATCHDOG") == 2

    rig.det.hang("infer")
    worker = rig.in_thread()
    assert rig.det.entered.wait(TIMEOUT_S)
    for _ in range(3):  # 3 s stuck: no pings, so systemd's WatchdogSec=2 would restart us
        advance_and_settle(rig, SECOND)
    assert notifier.count("WATCHDOG") == 2
    assert rig.watchdog.withheld == 3
    (rec,) = rig.sink.wait_misses(1)
    assert (rec.cause, rec.action) == ("infer", "stuck")

    rig.det.release()  # the delegate comes back: frames finish, pings resume
    worker.join(TIMEOUT_S)
    rig.settle()
    advance_and_settle(rig, SECOND)
    assert notifier.count("WATCHDOG") == 3


def test_status_reports_fps_p99_and_miss_rate(rig: Rig, notifier: RecordingNotifier) -> None:
    rig.det.durations_for = lambda seq: {"infer": 40 * MS} if seq == 3 else {}
    rig.process(10)  # 10 frames in 10 ms of fake time each, one late
    advance_and_settle(rig, 5 * SECOND - 100 * MS)  # 10 frames in 5 s of fake time
    assert notifier.wait_for("STATUS", 1, TIMEOUT_S)
    status = [m["STATUS"] for m in notifier.messages if "STATUS" in m][-1]
    assert status.startswith("fps 2.0, p99 ")
    assert status.endswith("misses 10.00% (1 of 10)")


def test_run_records_tick_with_the_counters(rig: Rig) -> None:
    rig.process(3, age_ms=50.0)  # three stale frames
    rig.process(2)
    advance_and_settle(rig, 60 * SECOND)
    (tick,) = rig.sink.runs
    assert tick.event == "tick" and tick.run == "r1"
    assert (tick.processed, tick.skipped_stale, tick.missed) == (2, 3, 3)
    assert tick.missed_by_cause == {"queue": 3}
