"""The MQTT output's pure parts: debounced presence (against a plain per-class reference
loop), per-class tallies, health, the summary schedule on a fake clock, the bounded outbox."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.frame import Detections
from edge.outputs.events import (
    APPEARED,
    LEFT,
    ClassTally,
    Digest,
    HealthMonitor,
    PresenceEvent,
    PresenceTracker,
)
from edge.outputs.outbox import REJECTED, Message, Outbox
from edge.testing import FakeClock

MS = 1_000_000


def ids(*xs: int) -> np.ndarray:
    return np.array(xs, np.int32)


def dets(class_ids: Sequence[int], labels: Sequence[str] = ("person", "car")) -> Detections:
    n = len(class_ids)
    scores = np.linspace(0.5, 0.9, n, dtype=np.float32) if n else np.zeros(0, np.float32)
    return Detections(np.zeros((n, 4), np.float32), scores, np.array(class_ids, np.int32), None,
                      tuple(labels))  # fmt: skip


def run(tracker: PresenceTracker, frames: Sequence[tuple[int, Sequence[int]]]) -> list[Any]:
    """Feed (t_ms, class ids) frames with seq = index; the events as (kind, class, seq, count)."""
    out = []
    for seq, (t_ms, cs) in enumerate(frames):
        for ev in tracker.update(t_ms * MS, seq, ids(*cs)):
            out.append((ev.kind, ev.class_id, seq, ev.count))
    return out


# -- debounce ------------------------------------------------------------------------------
def test_appears_only_after_being_in_every_frame_for_the_debounce() -> None:
    tr = PresenceTracker(appear_ns=250 * MS, leave_ns=0)
    frames = [(0, []), (100, [0]), (200, [0, 0]), (300, [0]), (400, [0, 0, 0]), (500, [0])]
    # first sighting at 100 ms; 250 ms later is 350 ms: the frame at 400 ms confirms it
    assert run(tr, frames) == [(APPEARED, 0, 4, 3)]
    assert tr.present[0] and tr.first_seen_ns[0] == 100 * MS and tr.peak[0] == 3


def test_one_frame_without_the_class_restarts_the_appear_wait() -> None:
    tr = PresenceTracker(appear_ns=200 * MS, leave_ns=0)
    frames = [(0, [0]), (100, [0]), (150, []), (200, [0]), (300, [0]), (400, [0])]
    assert run(tr, frames) == [(APPEARED, 0, 5, 1)]  # 200 ms after the sighting at 200 ms


def test_leaves_after_leave_s_without_it_and_reports_how_long_it_stayed() -> None:
    tr = PresenceTracker(appear_ns=0, leave_ns=300 * MS)
    seen: list[PresenceEvent] = []
    frames = [(0, [1]), (100, [1, 1]), (200, []), (300, [1]), (400, []), (600, []), (700, [])]
    for seq, (t, cs) in enumerate(frames):
        seen += tr.update(t * MS, seq, ids(*cs))
    assert [(e.kind, e.frame) for e in seen] == [(APPEARED, 0), (LEFT, 6)]
    left = seen[1]
    # absent from 400 ms (the sighting at 300 ms restarted the wait); confirmed at 700 ms
    assert left.since_ns == 400 * MS and left.first_seen_ns == 0
    assert left.present_s == pytest.approx(0.4) and left.peak == 2 and left.count == 0


def test_zero_debounce_reports_at_the_first_frame_that_shows_the_change() -> None:
    tr = PresenceTracker(0, 0)
    assert run(tr, [(0, [0]), (10, []), (20, [0])]) == [
        (APPEARED, 0, 0, 1), (LEFT, 0, 1, 0), (APPEARED, 0, 2, 1)
    ]  # fmt: skip


def test_classes_are_independent_and_the_state_grows_to_new_ids() -> None:
    tr = PresenceTracker(0, 100 * MS, labels=("person", "car"))
    scores = np.array([0.6, 0.8, 0.7], np.float32)
    evs = tr.update(0, 0, ids(7, 0, 7), scores)
    assert tr.size == 8
    assert [(e.kind, e.class_id, e.label, e.count, e.score) for e in evs] == [
        (APPEARED, 0, "person", 1, pytest.approx(0.8)),
        (APPEARED, 7, "7", 2, pytest.approx(0.7)),  # unnamed: the id as text
    ]
    evs = tr.update(50 * MS, 1, ids(7))
    assert evs == [] and bool(tr.present[0])  # absent for 50 ms only
    evs = tr.update(150 * MS, 2, ids(7))
    assert [(e.kind, e.class_id, e.present_s) for e in evs] == [(LEFT, 0, pytest.approx(0.05))]


def test_snapshot_lists_every_known_class_with_its_state() -> None:
    tr = PresenceTracker(0, 0)
    assert tr.snapshot() == []
    assert tr.set_labels(("person", "car", "dog")) is True
    assert tr.set_labels(["person", "car", "dog"]) is False  # same names: nothing new
    tr.update(0, 0, ids(1, 1, 4))
    assert tr.snapshot() == [
        (0, "person", False, 0), (1, "car", True, 2), (2, "dog", False, 0), (4, "4", True, 1)
    ]  # fmt: skip


def test_negative_class_ids_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        PresenceTracker(0, 0).update(0, 0, ids(0, -1))


def reference(frames: list[tuple[int, list[int]]], appear_ns: int, leave_ns: int) -> list[Any]:
    """The debounce rule written as the plain per-class loop it means."""
    state: dict[int, dict[str, Any]] = {}
    out = []
    for seq, (t, cs) in enumerate(frames):
        counts = Counter(cs)
        for c in sorted(set(state) | set(counts)):
            s = state.setdefault(c, {"present": False, "pending": None, "first": 0, "peak": 0})
            seen = counts[c] > 0
            if seen == s["present"]:
                s["pending"] = None
            elif s["pending"] is None:
                s["pending"] = t
                if seen:
                    s["first"], s["peak"] = t, 0
            if seen:
                s["peak"] = max(s["peak"], counts[c])
            wait = appear_ns if seen else leave_ns
            if s["pending"] is not None and t - s["pending"] >= wait:
                since = s["first"] if seen else s["pending"]
                out.append((APPEARED if seen else LEFT, c, seq, counts[c], since, s["peak"]))
                s["present"], s["pending"] = seen, None
    return out


frame_lists = st.lists(
    st.tuples(st.integers(0, 300), st.lists(st.integers(0, 5), max_size=4)), max_size=60
)


@settings(max_examples=150, deadline=None)
@given(frame_lists, st.integers(0, 500), st.integers(0, 500))
def test_vectorised_tracker_matches_the_reference_loop(
    steps: list[tuple[int, list[int]]], appear_ms: int, leave_ms: int
) -> None:
    t, frames = 0, []
    for dt, cs in steps:
        t += dt * MS
        frames.append((t, cs))
    tr = PresenceTracker(appear_ms * MS, leave_ms * MS)
    got = []
    for seq, (t_ns, cs) in enumerate(frames):
        for e in tr.update(t_ns, seq, ids(*cs)):
            got.append((e.kind, e.class_id, e.frame, e.count, e.since_ns, e.peak))
    assert got == reference(frames, appear_ms * MS, leave_ms * MS)


# -- tallies, health, the summary schedule -------------------------------------------------
def test_class_tally_sums_an_interval_and_starts_over() -> None:
    tally, tr = ClassTally(), PresenceTracker(0, 0)
    for cs in ([0, 0], [], [0, 2], [2, 2, 2]):
        tally.add(tr.counts_of(ids(*cs)))
    assert tally.frames == 4
    assert tally.take(("person", "car", "dog")) == {
        "person": {"detections": 3, "frames": 2, "max": 2},
        "dog": {"detections": 4, "frames": 2, "max": 3},
    }
    assert tally.take(("person",)) == {} and tally.frames == 0


def test_health_turns_bad_on_a_stall_and_back_on_a_result() -> None:
    clock = FakeClock()
    h = HealthMonitor(stall_ns=2000 * MS, start_ns=clock.now_ns())
    h.mode = "normal"
    first = h.check(clock.now_ns())
    assert first is not None and first.ok and first.mode == "normal"
    clock.advance(1999 * MS)
    assert h.check(clock.now_ns()) is None
    clock.advance(1 * MS)
    bad = h.check(clock.now_ns())
    assert bad is not None and not bad.ok and bad.reason == "no first frame for 2 s"
    clock.advance(5000 * MS)
    assert h.check(clock.now_ns()) is None  # the same stall: no new message
    h.result(clock.now_ns())
    back = h.check(clock.now_ns())
    assert back is not None and back.ok and back.reason == ""
    assert h.next_check_ns() == clock.now_ns() + 2000 * MS


def test_health_reports_mode_changes_and_outside_verdicts() -> None:
    h = HealthMonitor(stall_ns=10**12, start_ns=0)
    h.mode = "degraded"
    assert h.check(1) == h.state and h.state.mode == "degraded" and h.state.ok
    h.external = (False, "camera unplugged")
    changed = h.check(2)
    assert changed is not None and (changed.ok, changed.reason) == (False, "camera unplugged")
    assert h.check(3) is None


def test_digest_schedules_summaries_and_counts_each_interval_once() -> None:
    clock = FakeClock()
    d = Digest(appear_ns=0, leave_ns=0, stall_ns=5000 * MS, interval_ns=1000 * MS,
               now_ns=clock.now_ns())  # fmt: skip
    t0 = clock.now_ns()
    assert d.next_wake_ns(t0, 10**12) == t0 + 1000 * MS  # the summary comes before a stall
    evs, relabelled = d.result(t0, t0, 0, dets([0, 0]), False)
    assert relabelled and [e.kind for e in evs] == [APPEARED]
    d.result(t0, t0, 1, dets([0]), True)  # stale: counts as a result, not as detections
    d.miss("infer", 12.5)
    d.miss("queue", 40.0)
    clock.advance(1000 * MS)
    iv = d.take_interval(clock.now_ns())
    assert iv.seconds == 1.0 and iv.results == 2 and iv.misses == 2
    assert iv.misses_by_cause == {"infer": 1, "queue": 1} and iv.worst_over_ms == 40.0
    assert iv.classes == {"person": {"detections": 2, "frames": 1, "max": 2, "present": 2}}
    assert d.next_summary_ns == clock.now_ns() + 1000 * MS
    d.result(clock.now_ns(), clock.now_ns(), 2, dets([]), False)
    clock.advance(500 * MS)
    iv2 = d.take_interval(clock.now_ns())
    assert iv2.misses == 0 and iv2.results == 1 and iv2.seconds == 0.5
    # only classes seen in the interval or present at its end: person left, car never came
    assert iv2.classes == {} and not d.tracker.present.any()


# -- the outbox ------------------------------------------------------------------------------
@dataclass
class FakeHandle:
    published: bool = False

    def is_published(self) -> bool:
        return self.published


class FakeLibrary:
    """Follows paho's publish contract as the link maps it: a handle when taken, None when
    the message must wait (no connection for QoS 0, a full window), REJECTED when refused."""

    def __init__(self) -> None:
        self.taken: list[tuple[Message, FakeHandle]] = []
        self.accept = True
        self.refuse: set[str] = set()

    def publish(self, msg: Message) -> Any:
        if msg.topic in self.refuse:
            return REJECTED
        if not self.accept:
            return None
        h = FakeHandle()
        self.taken.append((msg, h))
        return h


def msg(i: int, qos: int = 1) -> Message:
    return Message(f"t/{i}", str(i).encode(), qos)


def test_outbox_drops_the_oldest_when_full_and_counts_it() -> None:
    box, lib = Outbox(size=3, inflight=10), FakeLibrary()
    for i in range(5):
        box.put(msg(i))
    assert len(box) == 3 and box.dropped["queue_full"] == 2
    box.put_first([msg(90), msg(91)])  # ahead of the queue; the oldest of the rest make room
    assert box.dropped["queue_full"] == 4
    assert box.pump(lib.publish, epoch=0) == 3
    assert [m.topic for m, _ in lib.taken] == ["t/90", "t/91", "t/4"]


def test_outbox_keeps_messages_the_library_cannot_take_and_bounds_inflight() -> None:
    box, lib = Outbox(size=100, inflight=2), FakeLibrary()
    for i in range(5):
        box.put(msg(i))
    assert box.pump(lib.publish, 0) == 2 and box.inflight == 2 and len(box) == 3
    assert box.pump(lib.publish, 0) == 0  # the window is full until something is confirmed
    lib.taken[0][1].published = True
    lib.accept = False
    assert box.pump(lib.publish, 0) == 0 and len(box) == 3 and box.inflight == 1
    lib.accept = True
    lib.refuse.add("t/2")
    assert box.pump(lib.publish, 0) == 1 and box.dropped["rejected"] == 1
    assert [m.topic for m, _ in lib.taken] == ["t/0", "t/1", "t/3"]
    assert len(box) == 1 and not box.idle()


def test_qos0_in_flight_when_the_connection_dropped_is_counted_lost() -> None:
    box, lib = Outbox(size=10, inflight=10), FakeLibrary()
    box.put(msg(0, qos=0))
    box.put(msg(1, qos=1))
    box.pump(lib.publish, epoch=0)
    box.prune(epoch=1)  # a disconnect: QoS 1 stays with the library (resent), QoS 0 is gone
    assert box.dropped["lost"] == 1 and box.inflight == 1
    lib.taken[1][1].published = True
    box.prune(epoch=1)
    assert box.idle() and box.dropped_total == 1


def test_abandon_counts_everything_undelivered() -> None:
    box, lib = Outbox(size=10, inflight=1), FakeLibrary()
    for i in range(3):
        box.put(msg(i))
    box.pump(lib.publish, 0)
    assert box.abandon() == 3 and box.dropped["shutdown"] == 3 and box.idle()
