"""The whole pipeline with its threads: fake source and detector, fake clock, real threads,
real signals, a real sd_notify socket."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.frame import Detections, Frame
from edge.outputs.records import MissLogOutput
from edge.outputs.systemd import SystemdOutput
from edge.pipeline.runner import Pipeline, Settings, stop_on_signals
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.state import default_miss_log
from edge.testing import RecordingNotifier
from edge.testing.pipeline import (
    MS,
    TIMEOUT_S,
    FakeDetector,
    FakeSource,
    ListSink,
    TickClock,
    frame,
)
from edge.watchdog.notify import Notifier
from tests.pipeline.rig import FAST

NO_DEGRADE = DegradeConfig(policy="off")


class ClosedLoop:
    """Feeds frame k+1 when frame k's result is published, stamped with the fake clock, so
    nothing but the fake stages moves time and every run is the same."""

    def __init__(self, clock: TickClock, source: FakeSource, n: int | None) -> None:
        self.clock, self.source, self.n = clock, source, n
        self.seen: list[tuple[int, bool]] = []

    def start(self) -> None:
        self.source.push(frame(0, self.clock.now_ns()))

    def on_result(self, f: Frame, _det: Detections, stale: bool) -> None:
        self.seen.append((f.seq, stale))
        if self.n is not None and f.seq + 1 >= self.n:
            self.source.end()
        else:
            self.source.push(frame(f.seq + 1, self.clock.now_ns()))


def build(
    settings: Settings, n: int | None, notifier: Notifier | None = None
) -> tuple[Pipeline, FakeDetector, ListSink, ClosedLoop]:
    clock = TickClock()
    det, src, sink = FakeDetector(clock, FAST), FakeSource(fps=30.0), ListSink()
    out = [MissLogOutput(sink, "mem"), SystemdOutput(notifier or RecordingNotifier())]
    pipe = Pipeline(src, det, settings, out, clock=clock)
    clock.listeners.append(pipe.inflight.poke)
    loop = ClosedLoop(clock, src, n)
    pipe.subscribe(loop.on_result)
    loop.start()
    return pipe, det, sink, loop


def test_a_run_counts_every_frame_and_logs_each_miss_once() -> None:
    pipe, det, sink, loop = build(Settings(PipelineConfig(gc=True), NO_DEGRADE), n=8)
    det.durations_for = lambda seq: {"infer": 40 * MS} if seq == 3 else {}
    summary = pipe.run()
    assert (summary.captured, summary.processed, summary.dropped, summary.missed) == (8, 8, 0, 1)
    assert summary.missed_by_cause == {"infer": 1}
    assert [seq for seq, _ in loop.seen] == list(range(8))
    (miss,) = sink.misses
    assert (miss.frame, miss.cause, miss.action) == (3, "infer", "completed-late")
    assert [r.event for r in sink.runs] == ["start", "exit"]
    exit_rec = sink.runs[-1]
    assert (exit_rec.processed, exit_rec.missed, exit_rec.captured) == (8, 1, 8)
    assert summary.stages_ms["total"]["count"] == 8
    assert summary.latency_ms["max"] == pytest.approx(45.0)
    assert summary.budget_ms == pytest.approx(1000 / 30, abs=1e-3)  # the source's fps
    assert pipe.source.closed  # type: ignore[attr-defined]
    d = summary.to_dict()
    assert d["frames"]["missed"] == 1 and set(d["stages_ms"]["infer"]) >= {"p50", "p99"}
    assert "miss rate 12.50%" in summary.format()


def test_frames_limit_ends_the_run() -> None:
    pipe, _, _, loop = build(Settings(PipelineConfig(frames=5, gc=False), NO_DEGRADE), n=None)
    summary = pipe.run()
    assert summary.captured == 5 and summary.processed == 5
    assert len(loop.seen) == 5


def test_budget_override_and_process_all() -> None:
    cfg = PipelineConfig(budget_ms=8.0, policy="process-all", gc=False)
    pipe, _, sink, _ = build(Settings(cfg, NO_DEGRADE), n=4)
    summary = pipe.run()
    assert summary.budget_ms == 8.0 and summary.missed == 4  # 10 ms per frame > 8 ms
    assert {m.cause for m in sink.misses} == {"infer"}  # 8 ms passes during 4 .. 9 ms


def test_sigterm_stops_the_run_and_restores_the_handlers() -> None:
    notifier = RecordingNotifier()
    pipe, _, _, loop = build(Settings(PipelineConfig(gc=False), NO_DEGRADE), None, notifier)

    def kill_at_3(f: Frame, _d: Detections, _s: bool) -> None:
        if f.seq == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    pipe.subscribe(kill_at_3)
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(pipe):
        summary = pipe.run()
    assert signal.getsignal(signal.SIGTERM) is before
    assert pipe.signal == signal.SIGTERM
    assert summary.processed >= 4 and summary.missed == 0
    assert notifier.count("STOPPING") == 1


def test_sigterm_mid_frame_with_a_hung_stage() -> None:
    pipe, det, sink, _ = build(Settings(PipelineConfig(gc=False), NO_DEGRADE), n=None)
    det.hang("infer")

    def hang_then_kill() -> None:
        assert det.entered.wait(TIMEOUT_S)
        pipe.clock.advance(200 * MS)  # type: ignore[attr-defined]
        sink.wait_misses(1)  # reported while the stage hangs
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=hang_then_kill)
    killer.start()
    try:
        with stop_on_signals(pipe):
            summary = pipe.run()  # returns although the worker never comes back
    finally:
        det.release()
        killer.join(TIMEOUT_S)
    (miss,) = sink.misses
    assert (miss.frame, miss.cause, miss.action) == (0, "infer", "stuck")
    assert summary.missed == 1 and sink.runs[-1].event == "exit"


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = f"@edge-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name[1:])
    sock.settimeout(TIMEOUT_S)
    try:
        yield sock, name
    finally:
        sock.close()


def test_sd_notify_on_a_real_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, name = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": name})
    pipe, *_ = build(Settings(PipelineConfig(gc=False), NO_DEGRADE), n=5, notifier=notifier)
    pipe.run()
    messages: list[bytes] = []
    while not messages or messages[-1] != b"STOPPING=1":
        messages.append(sock.recv(4096))
    assert messages[0] == b"READY=1"
    assert messages.count(b"READY=1") == 1 and messages.count(b"STOPPING=1") == 1
    notifier.close()


def test_default_miss_log_location() -> None:
    assert default_miss_log({"HOME": "/home/u"}) == Path(
        "/home/u/.local/state/edge-vision/misses.jsonl"
    )
    env = {"STATE_DIRECTORY": "/var/lib/edge-vision:/var/lib/other"}
    assert default_miss_log(env) == Path("/var/lib/edge-vision/misses.jsonl")
