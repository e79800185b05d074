"""The worker: takes the newest frame, runs it through the stages, times each one.

Stages, in order (``edge.frame.STAGES``): ``wait`` (capture to pick-up: how long the frame
sat in the handoff), ``decode``, ``preprocess``, ``infer``, ``postprocess``, ``overlay`` and
``publish``. Each stage is timed with the pipeline's one monotonic clock, and the stamps are
contiguous (a stage ends at the exact stamp the next one starts), so the stage durations of a
frame add up to its capture-to-result latency and the watchdog can tell from them in which
stage the deadline passed.

Deadline = capture time + budget. A frame already past it when picked up is skipped under
``skip-stale`` (a miss with cause ``queue``: processing it would only make the next frame
late too); ``process-all`` processes it anyway. Frames the degradation policy sheds skip the
model and are delivered with the last detections, marked stale.

A source that goes silent (a camera unplugged, a stream down: the supervisor is reconnecting)
is reported once, not frame by frame: when no frame has come for ``GAP_PERIODS`` frame
periods (or budgets, whichever is longer; never under ``GAP_MIN_NS``) the worker tells the
watchdog through :class:`~edge.pipeline.inflight.InFlight` (a ``Done`` with outcome ``gap``
that stands for the frame that did not come), and once more (``gap-end``) when frames flow
again. The watchdog makes one miss record of each (cause ``gap``) and counts the outage once.

``overlay`` and ``publish`` are hooks: in ``overlay`` the outputs'
``on_result(frame, detections, stale, image)`` (:class:`~edge.pipeline.output.Output`: the
HTTP viewer draws from there), in ``publish`` the subscribers' ``callback(frame, detections,
stale)``, called in order on the worker thread, so they must be quick (hand off, do not
work). A hook that raises is logged and counted, never allowed to stop the pipeline.

A frame that cannot be used (:class:`~edge.errors.ImageError`: a corrupt JPEG, an image of the
wrong shape) is counted in ``decode_errors`` and skipped; the log gets one line per kind of
error per second, with the number held back since the last (:mod:`edge.ratelog`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge.clock import Clock
from edge.errors import ImageError
from edge.frame import Detections, Frame, Image
from edge.pipeline.degrade import Degrader, ModeChange
from edge.pipeline.gcslack import GcDiscipline
from edge.pipeline.handoff import END, Handoff
from edge.pipeline.inflight import ERROR, GAP, GAP_END, OK, SHED, SKIPPED, Done, InFlight, Outcome
from edge.ratelog import RateLimitedLog
from edge.stats import Counters, LatencyStats

log = logging.getLogger(__name__)

#: no frame for this many frame periods (or budgets, whichever is longer) is a gap ...
GAP_PERIODS = 10
#: ... but never sooner than this: a hiccup of a few frames is not an outage
GAP_MIN_NS = 1_000_000_000

ResultCallback = Callable[[Frame, Detections, bool], None]
OutputHook = Callable[[Frame, Detections, bool, Image | None], None]


class DetectorLike(Protocol):
    """The stages of :class:`edge.detector.Detector` the worker drives, one by one."""

    name: str

    def decode(self, frame: Frame) -> tuple[Image, float]: ...

    def preprocess(self, image: Image) -> Any: ...

    def infer(self) -> None: ...

    def postprocess(self, t: Any, reduction: float = 1) -> Detections: ...


@dataclass(frozen=True)
class Timing:
    """The worker's deadline rules.

    budget_ns   deadline after capture
    period_ns   time between frames from the source (when the next one is expected: the
                slack that GC may use)
    skip_stale  skip frames already past their deadline when picked up
    """

    budget_ns: int
    period_ns: int
    skip_stale: bool = True


class Worker:
    """The worker thread's body; :meth:`run` is the thread target."""

    def __init__(
        self,
        slot: Handoff,
        detector: DetectorLike,
        inflight: InFlight,
        timing: Timing,
        *,
        clock: Clock,
        counters: Counters,
        stats: LatencyStats,
        degrader: Degrader,
        gc: GcDiscipline | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.slot, self.detector, self.inflight, self.timing = slot, detector, inflight, timing
        self.clock, self.counters, self.stats = clock, counters, stats
        self.degrader, self.gc = degrader, gc
        self.stop = stop or threading.Event()
        self.subscribers: list[ResultCallback] = []
        self.outputs: list[OutputHook] = []
        self.error: BaseException | None = None
        self.get_timeout_s = 0.25
        self._last: Detections | None = None
        self.gap_ns = max(GAP_MIN_NS, GAP_PERIODS * max(timing.budget_ns, timing.period_ns))
        # the last frame handled (seq, capture time, source), kept as plain fields: no record is
        # allocated per frame and the frame's image is not held
        self._prev_seq = -1
        self._prev_t_ns = 0
        self._prev_source = ""
        self._idle_since_ns = 0  # when the worker finished it
        self._gap: Frame | None = None  # stands for the missing frame while a gap is open
        # bad frames: one line per kind of error per second, not one per frame
        self._decode_log = RateLimitedLog(log, clock)

    def run(self) -> None:
        """Take frames until end of stream or stop; an unexpected error is kept in ``error``."""
        try:
            while not self.stop.is_set():
                item = self.slot.get(self.get_timeout_s)
                if item is END:
                    break
                if item is not None:
                    self.handle(item)
                    self._idle_since_ns = self.clock.now_ns()
                else:
                    self._idle()
        except BaseException as e:
            self.error = e
            log.error("worker failed: %s", e, exc_info=True)
            self.stop.set()

    def handle(self, frame: Frame) -> None:
        """One frame, from pick-up to publish."""
        t = self.clock.now_ns()
        if self._gap is not None:
            self._end_gap(frame)
        self._prev_seq, self._prev_t_ns = frame.seq, frame.t_capture_ns
        self._prev_source = frame.source
        deadline = frame.t_capture_ns + self.timing.budget_ns
        frame.add_stage("wait", max(0, t - frame.t_capture_ns))
        if t > deadline and self.timing.skip_stale:
            self._skip(frame, deadline, t)
            return
        infer = self._last is None or self.degrader.should_infer()
        self.inflight.begin(frame, deadline, "decode" if infer else "overlay", t)
        image: Image | None = None
        if infer:
            try:
                image, dets, t = self._detect(frame, t)
            except ImageError as e:
                self._corrupt(frame, deadline, t, e)
                return
            self._last = dets
        else:
            assert self._last is not None
            dets = self._last
        end = self._deliver(frame, image, dets, not infer, t)
        self._finish(frame, deadline, end, OK if infer else SHED, inferred=infer)

    def _idle(self) -> None:
        """No frame within ``get_timeout_s``: open a gap once the worker has waited ``gap_ns``
        since it finished the last frame (only after a first frame: a camera still starting
        is not an outage)."""
        if self._prev_seq < 0 or self._gap is not None:
            return
        now = self.clock.now_ns()
        if now - self._idle_since_ns > self.gap_ns:
            self._gap = Frame(self._prev_seq + 1, self._prev_t_ns, source=self._prev_source)
            deadline = self._prev_t_ns + self.timing.budget_ns
            self.inflight.finish(Done(self._gap, deadline, now, GAP, self.degrader.every))
            self.counters.inc("gaps")

    def _end_gap(self, back: Frame) -> None:
        gap, self._gap = self._gap, None
        assert gap is not None
        end = max(back.t_capture_ns, gap.t_capture_ns)
        deadline = gap.t_capture_ns + self.timing.budget_ns
        self.inflight.finish(Done(gap, deadline, end, GAP_END, self.degrader.every))

    def _lap(self, frame: Frame, stage: str, t0: int, next_stage: str | None) -> int:
        """End ``stage`` now (started at ``t0``), start ``next_stage``; the stamp."""
        t1 = self.clock.now_ns()
        frame.add_stage(stage, t1 - t0)
        if next_stage is not None:
            self.inflight.enter(next_stage, t1)
        return t1

    def _detect(self, frame: Frame, t: int) -> tuple[Image, Detections, int]:
        det = self.detector
        image, reduction = det.decode(frame)
        t = self._lap(frame, "decode", t, "preprocess")
        transform = det.preprocess(image)
        t = self._lap(frame, "preprocess", t, "infer")
        det.infer()
        t = self._lap(frame, "infer", t, "postprocess")
        dets = det.postprocess(transform, reduction)
        t = self._lap(frame, "postprocess", t, "overlay")
        return image, dets, t

    def _deliver(
        self, frame: Frame, image: Image | None, dets: Detections, stale: bool, t: int
    ) -> int:
        for output in self.outputs:
            self._call(output, frame, dets, stale, image)
        t = self._lap(frame, "overlay", t, "publish")
        for callback in self.subscribers:
            self._call(callback, frame, dets, stale)
        return self._lap(frame, "publish", t, None)

    def _call(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self.counters.inc("hook_errors")
            if self.counters.get("hook_errors") == 1:
                log.exception("a result hook failed (logged once; counted as hook_errors)")

    def _finish(
        self, frame: Frame, deadline: int, end: int, outcome: Outcome, *, inferred: bool
    ) -> None:
        latency = end - frame.t_capture_ns
        every = self.degrader.every
        change = self.degrader.observe(missed=end > deadline, inferred=inferred, latency_ns=latency)
        self.inflight.finish(Done(frame, deadline, end, outcome, every, _down_to(change)))
        self.counters.inc("processed")
        if outcome == SHED:
            self.counters.inc("shed")
        self._count_change(change)
        self.stats.add_all(frame.stages_ns)
        self.stats.add("total", latency)
        self._slack(frame)

    def _skip(self, frame: Frame, deadline: int, t: int) -> None:
        every = self.degrader.every
        change = self.degrader.observe(
            missed=True, inferred=False, latency_ns=t - frame.t_capture_ns
        )
        self.inflight.finish(Done(frame, deadline, t, SKIPPED, every, _down_to(change)))
        self.counters.inc("skipped_stale")
        self._count_change(change)

    def _corrupt(self, frame: Frame, deadline: int, t: int, err: ImageError) -> None:
        end = self._lap(frame, "decode", t, None)
        self.inflight.finish(Done(frame, deadline, end, ERROR, self.degrader.every))
        self.counters.inc("decode_errors")
        more = self._decode_log.due(err)
        if more is not None:
            n = self.counters.get("decode_errors")
            log.warning(
                "frame %d cannot be decoded, skipped (%d so far): %s%s", frame.seq, n, err, more
            )

    def _count_change(self, change: ModeChange | None) -> None:
        if change is not None:
            self.counters.inc("degrade_down" if change.down else "degrade_up")

    def _slack(self, frame: Frame) -> None:
        """Spend the time before the next frame on a deferred GC, if one is due and fits."""
        if self.gc is None or not self.gc.due():
            return
        nxt = None if self.slot.pending() else frame.t_capture_ns + self.timing.period_ns
        if self.gc.after_frame(nxt):
            self.counters.inc("gc_collections")


def _down_to(change: ModeChange | None) -> int | None:
    return change.new_every if change is not None and change.down else None
