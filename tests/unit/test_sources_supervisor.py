"""The supervisor around a scripted fake source: backoff sequence, counters, log lines, and
``close()`` ending a backoff at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
import pytest

from edge.clock import MONOTONIC, Clock
from edge.errors import SourceError
from edge.frame import Frame
from edge.sources import CorruptFrame, EndOfStream, SourceOptions, SupervisedSource
from edge.testing import FakeClock

S = 1_000_000_000
Step = Callable[[], Frame | None]


class ScriptedSource:
    """Plays a script of steps: a frame, None (timeout), or an exception to raise."""

    fps: float | None = 25.0

    def __init__(self, name: str, script: list[object], clock: Clock) -> None:
        self.name = name
        self.script = list(script)
        self.clock = clock
        self.closed = False
        self.dropped = 3  # a counter the supervisor carries over when it closes this source

    def read(self, timeout_s: float) -> Frame | None:
        if not self.script:
            return None
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return Frame(0, self.clock.now_ns(), image=np.zeros((2, 2, 3), np.uint8), source=self.name)

    def close(self) -> None:
        self.closed = True


class Factory:
    """Reopens: fails ``fail`` times (recording when), then returns sources with ``script``."""

    def __init__(self, clock: Clock, fail: int, script: list[object]) -> None:
        self.clock, self.fail, self.script = clock, fail, script
        self.attempts_ns: list[int] = []
        self.made: list[ScriptedSource] = []

    def __call__(self) -> ScriptedSource:
        self.attempts_ns.append(self.clock.now_ns())
        if len(self.attempts_ns) <= self.fail:
            raise SourceError("connection refused")
        source = ScriptedSource("cam", list(self.script), self.clock)
        self.made.append(source)
        return source


def _opts(lo: float = 1.0, hi: float = 8.0) -> SourceOptions:
    return SourceOptions(reconnect_min_s=lo, reconnect_max_s=hi)


def test_backoff_doubles_up_to_the_maximum_and_counters_follow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(start_ns=0)
    first = ScriptedSource("cam", ["frame", SourceError("USB unplugged")], clock)
    factory = Factory(clock, fail=5, script=["frame", "frame"])
    src = SupervisedSource(first, _opts(), clock, reopen=factory)
    with caplog.at_level(logging.DEBUG, logger="edge.sources.supervisor"):
        assert src.read(0) is not None
        assert src.connected
        assert src.read(0) is None  # the failure: lost at t=0
        assert not src.connected and first.closed
        frames = []
        while not frames and clock.now_ns() < 60 * S:
            clock.advance(S // 4)
            got = src.read(0)
            if got is not None:
                frames.append(got)
    # lost at 0; attempts after 1, 2, 4, 8, 8 s of backoff, the 6th succeeds
    assert [t // (S // 4) for t in factory.attempts_ns] == [4, 12, 28, 60, 92, 124]
    assert [src.backoff_s(k) for k in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert frames and src.connected
    stats = src.stats()
    assert (stats.read_errors, stats.reconnect_attempts, stats.reconnects) == (1, 6, 1)
    assert stats.frames == 2
    assert stats.dropped == 3 + 3  # carried from the closed first source, plus the current one
    src.close()
    assert src.stats().dropped == 6 and not src.stats().connected  # kept after close
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "source cam lost: USB unplugged; reconnecting in 1.0 s",
        "source cam back after 31.0 s, 6 attempt(s)",
    ]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 5 and all("connection refused" in m for m in debug)


def test_a_source_failing_before_its_first_frame_is_a_failed_attempt() -> None:
    clock = FakeClock(start_ns=0)
    first = ScriptedSource("cam", [SourceError("stalled")], clock)
    # the reopened source opens, then fails before delivering; the next one works
    scripts = [[SourceError("no frame after open")], ["frame"]]
    made: list[int] = []

    def reopen() -> ScriptedSource:
        made.append(clock.now_ns())
        return ScriptedSource("cam", scripts.pop(0), clock)

    src = SupervisedSource(first, _opts(lo=0.5, hi=4.0), clock, reopen=reopen)
    assert src.read(0) is None
    got = None
    while got is None and clock.now_ns() < 20 * S:
        clock.advance(S // 2)
        got = src.read(0)
    assert got is not None
    assert made == [S // 2, S // 2 + S]  # second attempt after a doubled backoff
    stats = src.stats()
    assert (stats.read_errors, stats.reconnect_attempts, stats.reconnects) == (1, 2, 1)


def test_end_of_a_live_stream_reconnects() -> None:
    clock = FakeClock(start_ns=0)
    first = ScriptedSource("cam", [EndOfStream("cam")], clock)
    factory = Factory(clock, fail=0, script=["frame"])
    src = SupervisedSource(first, _opts(lo=0.25), clock, reopen=factory)
    assert src.read(0) is None
    clock.advance(S // 4)
    assert src.read(0) is not None
    assert src.reconnects == 1


def test_close_interrupts_the_backoff_at_once() -> None:
    first = ScriptedSource("cam", [SourceError("gone")], MONOTONIC)
    factory = Factory(MONOTONIC, fail=0, script=["frame"])
    src = SupervisedSource(first, _opts(lo=600.0, hi=600.0), MONOTONIC, reopen=factory)
    assert src.read(0) is None  # lost; next attempt in 10 minutes
    result: list[Frame | None] = []
    reader = threading.Thread(target=lambda: result.append(src.read(timeout_s=300.0)))
    reader.start()
    src.close()
    reader.join(timeout=5.0)
    assert not reader.is_alive()
    assert result == [None] and factory.attempts_ns == []


def test_read_honours_its_timeout_during_a_backoff() -> None:
    first = ScriptedSource("cam", [SourceError("gone")], MONOTONIC)
    src = SupervisedSource(first, _opts(lo=600.0, hi=600.0), MONOTONIC, reopen=lambda: first)
    assert src.read(0) is None
    t0 = MONOTONIC.now_ns()
    assert src.read(0.05) is None
    assert MONOTONIC.now_ns() - t0 >= 40_000_000  # it blocked (not spun) for its timeout
    src.close()


def test_corrupt_frames_are_skipped_within_one_read() -> None:
    clock = FakeClock()
    script: list[object] = [CorruptFrame("bad", "jpeg", count=2)] * 3 + ["frame"]
    src = SupervisedSource(ScriptedSource("cam", script, clock), _opts(), clock)
    assert src.read(1.0) is not None
    assert src.corrupt_frames == 6 and src.frames == 1


def test_files_do_not_reconnect() -> None:
    clock = FakeClock()
    src = SupervisedSource(ScriptedSource("f", [SourceError("bad file")], clock), _opts(), clock)
    with pytest.raises(SourceError, match="bad file"):
        src.read(0)
    assert src.read_errors == 1
    src2 = SupervisedSource(ScriptedSource("f", [EndOfStream("f")], clock), _opts(), clock)
    with pytest.raises(EndOfStream):
        src2.read(0)


def test_a_source_opened_while_closing_is_closed() -> None:
    clock = FakeClock(start_ns=0)
    made: list[ScriptedSource] = []
    src: SupervisedSource

    def reopen() -> ScriptedSource:
        s = ScriptedSource("cam", ["frame"], clock)
        made.append(s)
        src.close()  # another thread closes the supervisor while this open is in progress
        return s

    src = SupervisedSource(ScriptedSource("cam", [SourceError("x")], clock), _opts(), clock, reopen)
    assert src.read(0) is None
    clock.advance(S)
    assert src.read(0) is None
    assert made and made[0].closed
