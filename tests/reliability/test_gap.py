"""A source outage is one ``gap`` miss, not one record per missing frame.

The whole pipeline with its threads on a fake clock: the test feeds frames, then stops feeding
and moves the clock on; the worker, waiting for a frame, reports the gap once; the watchdog
records it (counted once) and again, uncounted, with its length when frames come back. A
hung stage is not a gap, a camera that has not delivered its first frame is not a gap, and a
slow camera is not silent between its frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.frame import Detections, Frame
from edge.misses import analyse, load
from edge.outputs.records import MissLogOutput
from edge.outputs.systemd import SystemdOutput
from edge.pipeline.degrade import Degrader
from edge.pipeline.handoff import LatestSlot
from edge.pipeline.inflight import InFlight
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.pipeline.worker import GAP_MIN_NS, GAP_PERIODS, Timing, Worker
from edge.stats import Counters, LatencyStats
from edge.testing import RecordingNotifier
from edge.testing.pipeline import MS, TIMEOUT_S, FakeDetector, FakeSource, ListSink, TickClock
from edge.testing.pipeline import frame as make_frame
from edge.watchdog.record import MissRecord
from tests.pipeline.rig import FAST

SECOND = 1_000_000_000


class IdleProbe:
    """Wraps the worker's idle check: counts its passes, so a test can wait for the worker to
    have looked at the clock after the test moved it (a Condition, not a sleep)."""

    def __init__(self, worker: Worker) -> None:
        self.inner: Callable[[], None] = worker._idle
        self.passes = 0
        self.cond = threading.Condition()
        worker.get_timeout_s = 0.005  # idle passes every 5 ms of real time
        setattr(worker, "_idle", self)  # noqa: B010 - replace the bound method on this instance

    def __call__(self) -> None:
        self.inner()
        with self.cond:
            self.passes += 1
            self.cond.notify_all()

    def wait_passes(self, n: int = 3) -> None:
        """Block until the worker has been idle ``n`` more times."""
        with self.cond:
            target = self.passes + n
            assert self.cond.wait_for(lambda: self.passes >= target, TIMEOUT_S)


@dataclass
class Live:
    pipe: Pipeline
    clock: TickClock
    src: FakeSource
    det: FakeDetector
    sink: ListSink
    notifier: RecordingNotifier
    probe: IdleProbe
    results: list[int]
    cond: threading.Condition
    thread: threading.Thread

    def feed(self, seq: int) -> None:
        """One frame captured now; returns when the worker has published it."""
        self.src.push(make_frame(seq, self.clock.now_ns()))
        with self.cond:
            assert self.cond.wait_for(lambda: seq in self.results, TIMEOUT_S)
        self.clock.advance(round(1e9 / 30) - 10 * MS)  # the rest of the frame period

    def gaps(self) -> list[MissRecord]:
        return [m for m in self.sink.misses if m.cause == "gap"]


@pytest.fixture
def live() -> Iterator[Live]:
    clock = TickClock()
    det, src, sink = FakeDetector(clock, FAST), FakeSource(fps=30.0), ListSink()
    notifier = RecordingNotifier(watchdog_usec=2_000_000)  # a ping due every 1 s
    settings = Settings(PipelineConfig(gc=False), DegradeConfig(policy="off"))
    outputs = [MissLogOutput(sink, "mem"), SystemdOutput(notifier)]
    pipe = Pipeline(src, det, settings, outputs, clock=clock)
    clock.listeners.append(pipe.inflight.poke)
    probe = IdleProbe(pipe.worker)
    results: list[int] = []
    cond = threading.Condition()

    def on_result(f: Frame, _d: Detections, _s: bool) -> None:
        with cond:
            results.append(f.seq)
            cond.notify_all()

    pipe.subscribe(on_result)
    thread = threading.Thread(target=pipe.run, daemon=True)
    thread.start()
    lv = Live(pipe, clock, src, det, sink, notifier, probe, results, cond, thread)
    try:
        yield lv
    finally:
        det.release()
        pipe.request_stop()
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()


def test_an_outage_is_one_gap_miss_and_its_end_carries_the_length(
    live: Live, tmp_path: Path
) -> None:
    for seq in range(4):
        live.feed(seq)
    t_last = live.clock.now_ns()  # frame 4's capture
    live.feed(4)
    for _ in range(12):  # 12 s of silence, in steps: the worker checks after each one
        live.clock.advance(SECOND)
        live.probe.wait_passes()
    (opened,) = live.sink.wait_misses(1)
    assert (opened.cause, opened.action, opened.frame) == ("gap", "source-silent", 5)
    assert opened.stages == {} and 1000.0 < opened.latency_ms <= 2100.0
    assert live.pipe.counters.missed_by_cause == {"gap": 1}
    assert live.pipe.counters.get("gaps") == 1 and live.pipe.watchdog.gaps == 1
    assert len(live.gaps()) == 1  # 12 s of nothing: still one record, not 360
    t_back = live.clock.now_ns()
    live.feed(5)  # the camera is back
    for seq in range(6, 9):
        live.feed(seq)
    live.pipe.request_stop()
    live.thread.join(TIMEOUT_S)
    opened, closed = live.gaps()
    assert (closed.action, closed.frame) == ("source-back", 5)
    # capture to capture across the gap: the 12 s and frame 4's period
    assert closed.latency_ms == pytest.approx((t_back - t_last) / 1e6, abs=0.001)
    assert 12_000.0 < closed.latency_ms < 12_100.0
    assert live.pipe.counters.missed_by_cause == {"gap": 1}  # the end is not a second miss
    assert [m.cause for m in live.sink.misses] == ["gap", "gap"]  # frames on time: no others
    assert live.results == list(range(9))
    # the reader's tool counts the outage once too, as the run did
    log = tmp_path / "misses.jsonl"
    log.write_text("".join(m.to_json() + "\n" for m in live.sink.misses))
    report = analyse(load([str(log)]))
    assert report["misses"] == 1 and report["by_cause"] == {"gap": 1}


def test_no_pings_during_a_gap(live: Live) -> None:
    for seq in range(3):
        live.feed(seq)
    live.clock.advance(SECOND)
    assert live.notifier.wait_for("WATCHDOG", 1, TIMEOUT_S)  # frames finished: one ping
    for _ in range(4):  # a second at a time, each seen by the worker and by the watchdog
        live.clock.advance(SECOND)
        now = live.clock.now_ns()
        assert live.pipe.watchdog.wait_for(lambda w, t=now: w.seen_ns >= t, TIMEOUT_S)
        live.probe.wait_passes()
    assert live.pipe.watchdog.wait_for(lambda w: w.gaps == 1, TIMEOUT_S)
    assert live.pipe.watchdog.wait_for(lambda w: w.withheld >= 3, TIMEOUT_S)
    assert live.notifier.count("WATCHDOG") == 1  # the gap report earned no ping


def test_a_hung_stage_is_stuck_not_a_gap(live: Live) -> None:
    live.feed(0)
    live.det.hang("infer")
    live.src.push(make_frame(1, live.clock.now_ns()))
    assert live.det.entered.wait(TIMEOUT_S)
    live.clock.advance(5 * SECOND)  # 5 s in infer, no frame coming either
    (stuck,) = live.sink.wait_misses(1)
    assert (stuck.cause, stuck.action) == ("infer", "stuck")
    live.det.release()
    live.probe.wait_passes()  # the worker is back and idle: silence counts from now
    assert live.gaps() == []


def test_no_gap_before_the_first_frame(live: Live) -> None:
    for _ in range(5):
        live.clock.advance(SECOND)
        live.probe.wait_passes()
    assert live.sink.misses == [] and live.pipe.watchdog.gaps == 0


def test_a_slow_camera_is_not_silent_between_its_frames() -> None:
    # the threshold follows the frame period: 10 periods, never under 1 s
    def gap_ns(budget_ms: float, fps: float) -> int:
        budget = round(budget_ms * MS)
        clock = TickClock()
        worker = Worker(
            LatestSlot(),
            FakeDetector(clock),
            InFlight(),
            Timing(budget, round(1e9 / fps)),
            clock=clock,
            counters=Counters(),
            stats=LatencyStats(),
            degrader=Degrader(DegradeConfig(policy="off"), budget),
        )
        return worker.gap_ns

    assert gap_ns(33.3, 30.0) == GAP_MIN_NS == SECOND
    assert gap_ns(2000.0, 0.5) == GAP_PERIODS * 2 * SECOND  # 0.5 fps: silent after 20 s
    assert gap_ns(50.0, 0.5) == GAP_PERIODS * 2 * SECOND  # a tight budget does not shorten it
    assert gap_ns(500.0, 30.0) == GAP_PERIODS * 500 * MS  # nor a long budget on a fast camera
