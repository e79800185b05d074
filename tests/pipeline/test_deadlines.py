"""Worker + deadline watchdog on a fake clock: misses, their cause, stale frames, hangs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge.frame import STAGES
from edge.testing.pipeline import MS, TIMEOUT_S
from edge.watchdog.deadline import cause_of
from edge.watchdog.settings import WatchdogConfig
from tests.pipeline.rig import FAST, Rig

MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig() -> Iterator[MakeRig]:
    rigs: list[Rig] = []

    def make(**kw: Any) -> Rig:
        rigs.append(Rig(**kw))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def test_on_time_frames_make_no_records_and_stages_add_up(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.process(5)
    assert rig.misses() == []
    assert rig.counters.processed == 5 and rig.counters.missed == 0
    snap = rig.stats.snapshot()
    assert snap["total"]["p50"] == pytest.approx(10.0)  # 2 + 2 + 5 + 1 ms
    assert snap["infer"]["count"] == 5
    assert set(snap) == {*STAGES, "total"}


@pytest.mark.parametrize("slow", ["decode", "preprocess", "infer", "postprocess"])
def test_a_slow_stage_makes_a_miss_naming_it(make_rig: MakeRig, slow: str) -> None:
    rig = make_rig(durations={**FAST, slow: 40 * MS})
    rig.process(2)
    recs = rig.sink.wait_misses(2)
    assert [r.cause for r in recs] == [slow, slow]
    assert [r.action for r in recs] == ["completed-late"] * 2
    assert [r.consecutive for r in recs] == [1, 2]
    rec = recs[0]
    expected_latency = (sum(FAST.values()) - FAST[slow] + 40 * MS) / MS
    assert rec.latency_ms == pytest.approx(expected_latency)
    assert rec.over_ms == pytest.approx(expected_latency - 33.0)
    assert set(rec.stages) == set(STAGES)  # completed late: every stage, with its time
    assert rec.stages[slow] == pytest.approx(40.0)
    assert sum(rec.stages.values()) == pytest.approx(rec.latency_ms)
    assert rec.frame == 0 and rec.source == "fake" and rec.run == "r1"
    assert rig.counters.missed_by_cause == {slow: 2}


def test_consecutive_count_restarts_after_an_on_time_frame(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.det.durations_for = lambda seq: {"infer": 40 * MS} if seq in (0, 1, 3) else {}
    rig.process(4)
    recs = rig.sink.wait_misses(3)
    assert [(r.frame, r.consecutive) for r in recs] == [(0, 1), (1, 2), (3, 1)]


def test_a_hung_stage_is_reported_while_it_hangs(make_rig: MakeRig) -> None:
    rig = make_rig(watchdog=WatchdogConfig(stuck_ms=100.0))
    rig.process(1)
    rig.det.hang("infer")
    worker = rig.in_thread()
    assert rig.det.entered.wait(TIMEOUT_S)
    rig.clock.advance(128 * MS)  # from 4 ms into the frame to 132: 99 ms past the deadline
    now = rig.clock.now_ns()
    assert rig.watchdog.wait_for(lambda w: w.seen_ns >= now, TIMEOUT_S)
    assert rig.misses() == []
    rig.clock.advance(5 * MS)  # 104 ms past the deadline, still in infer
    (rec,) = rig.sink.wait_misses(1)
    assert worker.is_alive()  # reported while it hangs
    assert (rec.cause, rec.action, rec.frame) == ("infer", "stuck", 1)
    assert rec.latency_ms == pytest.approx(137.0) and rec.over_ms == pytest.approx(104.0)
    assert rec.stages["infer"] == pytest.approx(133.0)  # under way
    assert "postprocess" not in rec.stages
    rig.det.release()
    worker.join(TIMEOUT_S)
    rig.settle()
    assert len(rig.misses()) == 1  # finishing later does not record it again
    assert rig.counters.missed == 1
    rig.process(1)
    assert len(rig.misses()) == 1


def test_with_stuck_ms_zero_a_hang_is_reported_the_moment_the_deadline_passes(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(watchdog=WatchdogConfig(stuck_ms=0.0))
    rig.det.hang("decode")
    worker = rig.in_thread()
    assert rig.det.entered.wait(TIMEOUT_S)
    rig.clock.advance(33 * MS)  # exactly at the deadline: not late yet
    now = rig.clock.now_ns()
    assert rig.watchdog.wait_for(lambda w: w.seen_ns >= now, TIMEOUT_S)
    assert rig.misses() == []
    rig.clock.advance(1)
    (rec,) = rig.sink.wait_misses(1)
    assert (rec.cause, rec.action, rec.stages) == ("decode", "stuck", {"wait": 0.0, "decode": 33.0})
    rig.det.release()
    worker.join(TIMEOUT_S)
    rig.settle()
    assert len(rig.misses()) == 1


def test_stale_frames_are_skipped_as_queue_misses(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.process(1, age_ms=40.0)
    (rec,) = rig.sink.wait_misses(1)
    assert (rec.cause, rec.action) == ("queue", "skipped")
    assert rec.stages == {"wait": pytest.approx(40.0)}
    assert rig.det.calls == []  # the model never saw it
    assert rig.counters.skipped_stale == 1 and rig.counters.processed == 0
    rig.process(1, age_ms=10.0)  # 10 + 10 ms: on time
    assert len(rig.misses()) == 1 and rig.counters.processed == 1


def test_process_all_keeps_stale_frames_and_blames_the_queue(make_rig: MakeRig) -> None:
    rig = make_rig(skip_stale=False)
    rig.process(1, age_ms=40.0)
    (rec,) = rig.sink.wait_misses(1)
    assert (rec.cause, rec.action) == ("queue", "completed-late")
    assert rec.latency_ms == pytest.approx(50.0)
    assert rig.det.inferred() == [0] and rig.counters.processed == 1


def test_corrupt_frames_are_counted_and_skipped(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.det.corrupt = {1}
    results: list[int] = []
    rig.worker.subscribers.append(lambda f, d, stale: results.append(f.seq))
    rig.process(3)
    assert results == [0, 2]
    assert rig.counters.get("decode_errors") == 1 and rig.misses() == []


def test_a_failing_subscriber_does_not_stop_the_worker(make_rig: MakeRig) -> None:
    rig = make_rig()

    def bad(*_: object) -> None:
        raise ValueError("viewer went away")

    seen: list[bool] = []
    rig.worker.subscribers += [bad, lambda f, d, stale: seen.append(stale)]
    rig.process(2)
    assert seen == [False, False] and rig.counters.get("hook_errors") == 2


def test_stop_records_a_frame_stuck_past_its_deadline(make_rig: MakeRig) -> None:
    rig = make_rig(watchdog=WatchdogConfig(stuck_ms=1000.0))
    rig.det.hang("preprocess")
    rig.in_thread()
    assert rig.det.entered.wait(TIMEOUT_S)
    rig.clock.advance(50 * MS)
    assert rig.watchdog.stop(TIMEOUT_S)
    (rec,) = rig.misses()
    assert (rec.cause, rec.action) == ("preprocess", "stuck")


def test_cause_of_walks_the_stages_in_order() -> None:
    stages = {"wait": 5, "decode": 10, "preprocess": 10, "infer": 10, "publish": 1}
    assert cause_of(stages, 0, 4) == "queue"
    assert cause_of(stages, 0, 5) == "decode"  # at the boundary: not yet late
    assert cause_of(stages, 0, 24) == "preprocess"
    assert cause_of(stages, 0, 35) == "publish"
    assert cause_of(stages, 0, 1000) == "publish"
