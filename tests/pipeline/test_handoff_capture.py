"""The latest-frame handoff and the capture thread: which frames are dropped, and counted."""

from __future__ import annotations

import threading

import pytest

from edge.pipeline.capture import Capture
from edge.pipeline.handoff import END, LatestSlot
from edge.sources.base import CorruptFrame
from edge.stats import Counters
from edge.testing.pipeline import TIMEOUT_S, FakeSource, frame


def test_latest_frame_wins_and_overwrites_are_counted() -> None:
    slot = LatestSlot()
    dropped = [slot.put(frame(i, i)) for i in range(5)]
    assert dropped[0] is None
    assert [f.seq for f in dropped[1:] if f is not None] == [0, 1, 2, 3]
    got = slot.get(TIMEOUT_S)
    assert got is not END and got is not None and got.seq == 4
    assert (slot.offered, slot.dropped, slot.taken) == (5, 4, 1)
    assert slot.get(0.0) is None  # empty, not closed: timeout


def test_close_hands_over_the_last_frame_then_end() -> None:
    slot = LatestSlot()
    slot.put(frame(7, 0))
    slot.close()
    got = slot.get(TIMEOUT_S)
    assert got is not None and got is not END and got.seq == 7
    assert slot.get(TIMEOUT_S) is END
    assert slot.get(TIMEOUT_S) is END
    with pytest.raises(RuntimeError):
        slot.put(frame(8, 0))


def test_get_wakes_on_put_from_another_thread() -> None:
    slot = LatestSlot()
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(slot.get(TIMEOUT_S)))
    t.start()
    slot.put(frame(3, 0))
    t.join(TIMEOUT_S)
    assert [getattr(f, "seq", None) for f in out] == [3]


def test_lossless_slot_refuses_to_overwrite() -> None:
    slot = LatestSlot(lossless=True)
    first, second = frame(0, 0), frame(1, 0)
    assert slot.put(first) is None
    assert slot.put(second, timeout_s=0.0) is second  # not placed, handed back
    assert slot.dropped == 0
    assert slot.get(TIMEOUT_S) is first
    assert slot.put(second, timeout_s=0.0) is None
    assert slot.get(TIMEOUT_S) is second


def test_wait_wanted_needs_an_empty_slot_and_a_waiting_worker() -> None:
    slot = LatestSlot(lossless=True)
    assert not slot.wait_wanted(0.0)  # nobody is asking for a frame
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(slot.get(TIMEOUT_S)))
    worker.start()
    assert slot.wait_wanted(TIMEOUT_S)  # the worker is blocked in get()
    slot.put(frame(1, 0))
    worker.join(TIMEOUT_S)
    assert [getattr(f, "seq", None) for f in got] == [1]
    slot.put(frame(2, 0))
    assert not slot.wait_wanted(0.0)  # a frame is waiting


def test_capture_counts_captured_and_dropped_and_closes_at_end() -> None:
    src = FakeSource()
    src.push(*(frame(i, i) for i in range(5)))
    src.end()
    slot, counters = LatestSlot(), Counters()
    cap = Capture(src, slot, counters, threading.Event(), read_timeout_s=TIMEOUT_S)
    cap.run()  # nobody takes frames: each new one overwrites the last
    assert cap.ended and cap.error is None
    assert (counters.captured, counters.dropped, cap.captured) == (5, 4, 5)
    got = slot.get(TIMEOUT_S)
    assert got is not None and got is not END and got.seq == 4
    assert slot.get(TIMEOUT_S) is END


def test_capture_stops_after_max_frames() -> None:
    src = FakeSource()
    src.push(*(frame(i, i) for i in range(10)))
    slot, counters = LatestSlot(), Counters()
    cap = Capture(src, slot, counters, threading.Event(), max_frames=3)
    cap.run()
    assert counters.captured == 3 and not cap.ended and slot.closed


def test_capture_stops_on_the_stop_event_and_keeps_source_errors() -> None:
    class Broken(FakeSource):
        def read(self, timeout_s: float) -> None:
            self.reads += 1
            if self.reads == 1:
                raise CorruptFrame("truncated", count=2)
            raise OSError("camera unplugged")

    counters = Counters()
    cap = Capture(Broken(), LatestSlot(), counters, threading.Event())
    cap.run()
    assert isinstance(cap.error, OSError)
    assert counters.get("corrupt_frames") == 2
    stop = threading.Event()
    stop.set()
    idle = Capture(FakeSource(), LatestSlot(), Counters(), stop)
    idle.run()
    assert idle.captured == 0 and idle.slot.closed


def test_capture_in_lossless_mode_waits_for_the_worker() -> None:
    src = FakeSource()
    src.push(*(frame(i, i) for i in range(6)))
    src.end()
    slot, counters = LatestSlot(lossless=True), Counters()
    cap = Capture(src, slot, counters, threading.Event(), read_timeout_s=TIMEOUT_S)
    t = threading.Thread(target=cap.run)
    t.start()
    seen = []
    while (item := slot.get(TIMEOUT_S)) is not END:
        assert item is not None, "capture thread stalled"
        seen.append(item.seq)
    t.join(TIMEOUT_S)
    assert seen == [0, 1, 2, 3, 4, 5]
    assert counters.dropped == 0 and counters.captured == 6
