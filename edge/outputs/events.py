"""From per-frame detections to the few events a broker should carry: a class appearing or
leaving (debounced), per-class tallies for the periodic summary, and health changes.

Pure state machines, no threads, no I/O, no clock of their own: every method takes the time
it is about (a frame's ``t_capture_ns``, or the caller's clock for health), so tests drive
them with plain numbers or a :class:`~edge.testing.FakeClock`.

Debounce (:class:`PresenceTracker`): a class is reported ``appeared`` once it has been in every
inferred frame for ``appear_ns``, and ``left`` once it has been in none for ``leave_ns``. A
single frame that disagrees restarts the wait, so a detector that flickers for one frame
neither reports a visitor nor loses one. Zero means "at the first frame that shows it".
The state is a few arrays indexed by class id, updated with one ``bincount`` per frame, so a
COCO model's 80 classes cost the same as one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.frame import Detections

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: ``pending_ns`` value of a class whose observations agree with its reported state
_NONE = -1

APPEARED = "appeared"
LEFT = "left"


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A debounced change of one class's presence.

    kind        ``appeared`` or ``left``
    class_id    the model's class id; ``label`` its name (the id as text when unnamed)
    t_ns        capture time of the frame that confirmed the change
    frame       that frame's seq
    count       instances of the class in that frame (0 for ``left``)
    score       the best score among them (0.0 for ``left``)
    since_ns    ``appeared``: the first frame of the run of sightings; ``left``: the first
                frame without the class (so ``left.since_ns - appeared.since_ns`` is how
                long it was there)
    peak        the most instances in one frame since ``since_ns`` of the ``appeared`` event
    first_seen_ns  ``left`` only: the ``since_ns`` of the ``appeared`` event it ends
    """

    kind: str
    class_id: int
    label: str
    t_ns: int
    frame: int
    count: int
    score: float
    since_ns: int
    peak: int
    first_seen_ns: int = 0

    @property
    def present_s(self) -> float:
        """For ``left``: seconds from the first sighting to the first frame without it."""
        return 0.0 if self.kind == APPEARED else (self.since_ns - self.first_seen_ns) / 1e9


def label_of(labels: Sequence[str], class_id: int) -> str:
    """The name of ``class_id``, as :meth:`edge.frame.Detections.label` names it."""
    return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)


class PresenceTracker:
    """Debounced presence per class; one instance per stream of frames, one thread."""

    def __init__(self, appear_ns: int, leave_ns: int, labels: Sequence[str] = ()) -> None:
        if appear_ns < 0 or leave_ns < 0:
            raise ValueError(f"debounce must be >= 0 ns, got {appear_ns} and {leave_ns}")
        self.appear_ns, self.leave_ns = appear_ns, leave_ns
        self.labels: tuple[str, ...] = tuple(labels)
        n = max(1, len(self.labels))
        self.present: BoolArray = np.zeros(n, np.bool_)
        self.count: IntArray = np.zeros(n, np.int64)  # instances in the last frame
        self.pending_ns: IntArray = np.full(n, _NONE, np.int64)
        self.first_seen_ns: IntArray = np.zeros(n, np.int64)
        self.peak: IntArray = np.zeros(n, np.int64)
        self.known: BoolArray = np.zeros(n, np.bool_)  # named by the model or seen once

    @property
    def size(self) -> int:
        return int(self.present.shape[0])

    def set_labels(self, labels: Sequence[str]) -> bool:
        """Adopt the model's class names; every named class becomes known (state: absent).
        True when they changed (a consumer should then be told every class's state)."""
        if len(labels) == len(self.labels) and tuple(labels) == self.labels:
            return False
        self.labels = tuple(labels)
        self._grow(len(self.labels))
        self.known[: len(self.labels)] = True
        return True

    def _grow(self, n: int) -> None:
        extra = n - self.size
        if extra <= 0:
            return
        self.present = np.concatenate([self.present, np.zeros(extra, np.bool_)])
        self.count = np.concatenate([self.count, np.zeros(extra, np.int64)])
        self.pending_ns = np.concatenate([self.pending_ns, np.full(extra, _NONE, np.int64)])
        self.first_seen_ns = np.concatenate([self.first_seen_ns, np.zeros(extra, np.int64)])
        self.peak = np.concatenate([self.peak, np.zeros(extra, np.int64)])
        self.known = np.concatenate([self.known, np.zeros(extra, np.bool_)])

    def counts_of(self, class_ids: npt.NDArray[np.integer]) -> IntArray:
        """Instances per class id in one frame (``bincount``), growing the state to fit."""
        ids = np.asarray(class_ids, np.int64)
        if ids.size and int(ids.min()) < 0:
            raise ValueError(f"class ids must be >= 0, got {int(ids.min())}")
        if ids.size:
            self._grow(int(ids.max()) + 1)
        counts: IntArray = np.bincount(ids, minlength=self.size).astype(np.int64)
        return counts

    def update(
        self,
        t_ns: int,
        frame: int,
        class_ids: npt.NDArray[np.integer],
        scores: npt.NDArray[np.floating] | None = None,
    ) -> list[PresenceEvent]:
        """Account for one inferred frame; the changes it confirms, by class id."""
        counts = self.counts_of(class_ids)
        seen = counts > 0
        self.known |= seen
        self.count = counts
        disagree = seen != self.present
        starting = disagree & (self.pending_ns == _NONE)
        self.pending_ns[starting] = t_ns
        self.pending_ns[~disagree] = _NONE
        # a run of sightings that may become a presence starts its peak and first-seen here
        arriving = starting & seen
        self.first_seen_ns[arriving] = t_ns
        self.peak[arriving] = 0
        self.peak = np.where(seen, np.maximum(self.peak, counts), self.peak)
        waited = t_ns - self.pending_ns
        appear = disagree & seen & (waited >= self.appear_ns)
        leave = disagree & ~seen & (waited >= self.leave_ns)
        if not (appear.any() or leave.any()):
            return []
        return self._confirm(t_ns, frame, appear, leave, class_ids, scores)

    def _confirm(
        self,
        t_ns: int,
        frame: int,
        appear: BoolArray,
        leave: BoolArray,
        class_ids: npt.NDArray[np.integer],
        scores: npt.NDArray[np.floating] | None,
    ) -> list[PresenceEvent]:
        events: list[PresenceEvent] = []
        for c in np.flatnonzero(appear | leave).tolist():
            if appear[c]:
                events.append(self._appeared(c, t_ns, frame, class_ids, scores))
            else:
                events.append(self._left(c, t_ns, frame))
        self.present[appear] = True
        self.present[leave] = False
        self.pending_ns[appear | leave] = _NONE
        return events

    def _appeared(
        self,
        c: int,
        t_ns: int,
        frame: int,
        class_ids: npt.NDArray[np.integer],
        scores: npt.NDArray[np.floating] | None,
    ) -> PresenceEvent:
        best = 0.0
        if scores is not None and len(scores):
            best = float(np.max(np.asarray(scores)[np.asarray(class_ids) == c]))
        return PresenceEvent(
            APPEARED,
            c,
            label_of(self.labels, c),
            t_ns,
            frame,
            int(self.count[c]),
            round(best, 4),
            int(self.first_seen_ns[c]),
            int(self.peak[c]),
        )

    def _left(self, c: int, t_ns: int, frame: int) -> PresenceEvent:
        return PresenceEvent(
            LEFT,
            c,
            label_of(self.labels, c),
            t_ns,
            frame,
            0,
            0.0,
            int(self.pending_ns[c]),
            int(self.peak[c]),
            first_seen_ns=int(self.first_seen_ns[c]),
        )

    def snapshot(self) -> list[tuple[int, str, bool, int]]:
        """``(class_id, label, present, count)`` of every known class, by class id.

        ``count`` is the instances in the last frame while present, else 0. This is the
        state a consumer that has just (re)subscribed needs (the retained presence topics).
        """
        ids = np.flatnonzero(self.known).tolist()
        return [
            (c, label_of(self.labels, c), bool(self.present[c]), int(self.count[c]))
            if self.present[c]
            else (c, label_of(self.labels, c), False, 0)
            for c in ids
        ]


class ClassTally:
    """Detections per class over a summary interval: total instances, frames with the class,
    most in one frame. :meth:`take` returns them and starts the next interval."""

    def __init__(self) -> None:
        self.frames = 0
        self.detections: IntArray = np.zeros(0, np.int64)
        self.with_class: IntArray = np.zeros(0, np.int64)
        self.most: IntArray = np.zeros(0, np.int64)

    def add(self, counts: IntArray) -> None:
        """One inferred frame's instances per class id (from :meth:`PresenceTracker.counts_of`)."""
        n = counts.shape[0]
        if n > self.detections.shape[0]:
            pad = n - self.detections.shape[0]
            self.detections = np.concatenate([self.detections, np.zeros(pad, np.int64)])
            self.with_class = np.concatenate([self.with_class, np.zeros(pad, np.int64)])
            self.most = np.concatenate([self.most, np.zeros(pad, np.int64)])
        self.frames += 1
        self.detections[:n] += counts
        self.with_class[:n] += counts > 0
        self.most[:n] = np.maximum(self.most[:n], counts)

    def take(self, labels: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{label: {detections, frames, max}}`` for classes seen in the interval; resets."""
        out = {
            label_of(labels, c): {
                "detections": int(self.detections[c]),
                "frames": int(self.with_class[c]),
                "max": int(self.most[c]),
            }
            for c in np.flatnonzero(self.detections).tolist()
        }
        self.frames = 0
        self.detections[:] = 0
        self.with_class[:] = 0
        self.most[:] = 0
        return out


@dataclass(frozen=True, slots=True)
class Health:
    """What the status topic says about the pipeline.

    ok      frames are completing, and nobody outside (``on_health``) said otherwise
    reason  why not, in words; empty when ok
    mode    ``normal`` or ``degraded`` (shedding inference); ``unknown`` before any stats
    """

    ok: bool = True
    reason: str = ""
    mode: str = "unknown"

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "reason": self.reason, "mode": self.mode}


class HealthMonitor:
    """Health from three inputs: results arriving (a stall is no result for ``stall_ns``), the
    pipeline's mode, and an external verdict; :meth:`check` returns the new state on change.
    """

    def __init__(self, stall_ns: int, start_ns: int) -> None:
        self.stall_ns = stall_ns
        self.last_result_ns = start_ns
        self.mode = "unknown"
        self.external: tuple[bool, str] = (True, "")
        self.state = Health()
        self._started = False

    def result(self, now_ns: int) -> None:
        self.last_result_ns, self._started = now_ns, True

    def check(self, now_ns: int) -> Health | None:
        quiet_ns = now_ns - self.last_result_ns
        ok, reason = self.external
        if ok and quiet_ns >= self.stall_ns:
            # the reason must not change while the stall lasts: each change is a message
            what = "no frame completed" if self._started else "no first frame"
            ok, reason = False, f"{what} for {self.stall_ns / 1e9:g} s"
        new = Health(ok, reason, self.mode)
        if new == self.state:
            return None
        self.state = new
        return new

    def next_check_ns(self) -> int:
        """When a stall would begin, if no result comes before."""
        return self.last_result_ns + self.stall_ns


@dataclass(frozen=True)
class Interval:
    """What the output saw over one summary interval (see :class:`Digest`)."""

    seconds: float
    results: int  # results the worker delivered, stale ones included (fps = results / s)
    classes: Mapping[str, Mapping[str, int]]  # {label: {detections, frames, max, present}}
    misses: int
    misses_by_cause: Mapping[str, int]
    worst_over_ms: float | None


class Digest:
    """Everything the MQTT output's thread keeps between messages: presence, the interval's
    tallies, health, and when the next summary is due. One thread; times are the caller's
    monotonic ns (so a :class:`~edge.testing.FakeClock` drives it in tests)."""

    def __init__(
        self, *, appear_ns: int, leave_ns: int, stall_ns: int, interval_ns: int, now_ns: int
    ) -> None:
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be > 0, got {interval_ns}")
        self.tracker = PresenceTracker(appear_ns, leave_ns)
        self.tally = ClassTally()
        self.health = HealthMonitor(stall_ns, now_ns)
        self.interval_ns = interval_ns
        self.begin(now_ns)

    def begin(self, now_ns: int) -> None:
        """Start the schedule (and the stall timer) at ``now_ns``."""
        self.health.last_result_ns = now_ns
        self._new_interval(now_ns)

    def _new_interval(self, now_ns: int) -> None:
        self.interval_start_ns = now_ns
        self.next_summary_ns = now_ns + self.interval_ns
        self.results = self.misses = 0
        self.by_cause: dict[str, int] = {}
        self.worst_over_ms: float | None = None

    def result(
        self,
        now_ns: int,
        t_ns: int,
        frame: int,
        detections: Detections,
        stale: bool,
    ) -> tuple[list[PresenceEvent], bool]:
        """One result from the worker: (the presence changes it confirms, whether the model's
        labels were new). Stale results (shed frames reusing the last boxes) carry nothing new
        and only count towards the frame rate and liveness."""
        self.health.result(now_ns)
        self.results += 1
        if stale:
            return [], False
        relabelled = self.tracker.set_labels(detections.labels)
        events = self.tracker.update(t_ns, frame, detections.class_ids, detections.scores)
        self.tally.add(self.tracker.count)
        return events, relabelled

    def miss(self, cause: str, over_ms: float) -> None:
        self.misses += 1
        self.by_cause[cause] = self.by_cause.get(cause, 0) + 1
        if self.worst_over_ms is None or over_ms > self.worst_over_ms:
            self.worst_over_ms = round(float(over_ms), 3)

    def take_interval(self, now_ns: int) -> Interval:
        """The interval ending now (classes seen in it, or present now); starts the next."""
        classes: dict[str, dict[str, int]] = dict(self.tally.take(self.tracker.labels))
        for _, label, present, count in self.tracker.snapshot():
            if present or label in classes:
                entry = classes.setdefault(label, {"detections": 0, "frames": 0, "max": 0})
                entry["present"] = count
        iv = Interval(
            (now_ns - self.interval_start_ns) / 1e9,
            self.results,
            classes,
            self.misses,
            dict(self.by_cause),
            self.worst_over_ms,
        )
        self._new_interval(now_ns)
        return iv

    def next_wake_ns(self, now_ns: int, tick_ns: int) -> int:
        """When the thread must look again: the next summary, the moment a stall would begin,
        and at least every ``tick_ns`` (to re-read the mode)."""
        t = min(self.next_summary_ns, now_ns + tick_ns)
        if self.health.state.ok:
            t = min(t, self.health.next_check_ns())
        return t
