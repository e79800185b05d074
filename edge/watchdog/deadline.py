"""The deadline watchdog: a thread of its own that holds every frame to its deadline.

It does not trust the worker to report its own lateness: a worker stuck in a delegate that
never returns reports nothing. So the worker only publishes what it is doing
(:class:`~edge.pipeline.inflight.InFlight`: the frame, its deadline, the stage) and this
thread waits, on that Condition with a timeout set to the next thing it has to do, never
polling, and acts:

* a frame still in a stage ``stuck_ms`` after its deadline is recorded *then*, naming the stage
  it is stuck in, with the stages done so far and the one under way (action ``stuck``), so a
  hung delegate or a blocked decode is in the log while it hangs;
* a frame that finishes late is recorded when it finishes, with all its stages and the stage
  during which its deadline passed (action ``completed-late``, or ``degraded:every-K`` when
  its miss made the worker shed load); a frame skipped as stale is recorded with cause
  ``queue`` (action ``skipped``);
* each missed frame gets exactly one record: a frame reported stuck is not reported again
  when it finally finishes;
* a source that went silent (the worker reports a ``gap``: no frame for many frame periods,
  see :mod:`edge.pipeline.worker`) is one miss with cause ``gap`` (action ``source-silent``),
  recorded while it lasts, not one per missing frame; when frames come back a second record
  with the same frame number carries the whole gap (action ``source-back``, ``latency_ms``
  from the last capture before to the first after) and is not counted again: one outage, one
  miss. A gap finishes no frame, so it never earns a ``WATCHDOG=1``.

Records go to the run's outputs (:class:`~edge.pipeline.output.Broadcast`: the miss log,
which never blocks, and any other output's ``on_miss``) and the stderr summary (at most a line
a second), and are counted in the run's counters by cause. The watchdog also tells the outputs
how the run goes, and so speaks for the process to systemd
(:class:`~edge.outputs.systemd.SystemdOutput`): ``on_ready`` (``READY=1``) when the first frame
is done; ``on_alive`` (``WATCHDOG=1``) every half interval *only if a frame finished since the
last ping* (a stuck worker stops the pings and systemd restarts the service); ``on_status``
(``STATUS=``) with fps, p99 latency and miss rate every ``status_interval_s``; and a
``{"type": "run"}`` counters record (``on_run_record``, to the miss log) every
``run_record_s``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.clock import Clock
from edge.frame import STAGES, Frame
from edge.pipeline.inflight import ERROR, GAP, GAP_OUTCOMES, SKIPPED, Current, Done, InFlight
from edge.pipeline.output import Broadcast
from edge.stats import Counters, LatencyStats
from edge.watchdog.misslog import MissSummary
from edge.watchdog.record import MissRecord, RunRecord
from edge.watchdog.settings import WatchdogConfig
from edge.watchdog.thermal import ThermalState

log = logging.getLogger(__name__)

#: the longest the watchdog sleeps with nothing scheduled (the stderr summary's period)
_MAX_WAIT_NS = 1_000_000_000


ThermalReader = Callable[[int], ThermalState]


def cause_of(stages_ns: Mapping[str, int], t_capture_ns: int, deadline_ns: int) -> str:
    """The stage during which the deadline passed, from a frame's contiguous stage times.

    Walks the stages in pipeline order from the capture time; the deadline passing during
    ``wait`` (the frame sat in the handoff) is cause ``queue``.
    """
    t, last = t_capture_ns, "publish"
    for stage in STAGES:
        ns = stages_ns.get(stage)
        if ns is None:
            continue
        t, last = t + ns, stage
        if t > deadline_ns:
            break
    return "queue" if last == "wait" else last


def action_of(done: Done) -> str:
    if done.outcome == SKIPPED:
        return "skipped"
    if done.degraded_to is not None:
        return f"degraded:every-{done.degraded_to}"
    if done.outcome == ERROR:
        return "decode-error"
    return "completed-late"


@dataclass(frozen=True)
class Reporting:
    """Where the watchdog's findings go: the outputs (miss and run records, ready, alive,
    status), the stderr summary, the counters."""

    outputs: Broadcast
    summary: MissSummary
    counters: Counters
    stats: LatencyStats | None = None
    thermal: ThermalReader | None = None
    run_id: str | None = None


class DeadlineWatchdog:
    """The watchdog thread; :meth:`start`, then :meth:`stop` (which joins) when done."""

    def __init__(
        self,
        inflight: InFlight,
        out: Reporting,
        cfg: WatchdogConfig,
        *,
        clock: Clock,
        budget_ns: int,
        source: str,
    ) -> None:
        self.inflight, self.out, self.cfg, self.clock = inflight, out, cfg, clock
        self.budget_ns, self.source = budget_ns, source
        self.records = 0  # miss records made
        self.completed = 0  # frames the worker finished (any outcome)
        self.pings = 0  # WATCHDOG=1 sent
        self.withheld = 0  # WATCHDOG=1 not sent: no frame finished since the last one
        self.ready = False
        self.seen_ns = 0  # the clock at the start of the last pass
        self._seen_gen = -1  # the in-flight generation the last pass took
        self._stuck_ns = round(cfg.stuck_ms * 1e6)
        self._stuck_seq: int | None = None
        self._consecutive = 0
        self._progress = False
        self._stall_warned = False
        self._stopping = False
        self.gaps = 0  # source outages reported by the worker
        self._thread: threading.Thread | None = None
        self._passes = threading.Condition()
        now = self._t0 = clock.now_ns()
        self._arm_outputs()
        self._status_ns = round(cfg.status_interval_s * 1e9)
        self._next_status = now + self._status_ns
        self._status_mark = (now, 0)
        self._run_ns = round(cfg.run_record_s * 1e9)
        self._next_run = now + self._run_ns

    # -- lifecycle ----------------------------------------------------------------------------
    def _arm_outputs(self) -> None:
        """What the outputs want of the watchdog: pings (their shortest interval), status."""
        interval = self.out.outputs.alive_interval_s
        self._ping_ns = round(interval * 1e9) if interval else None
        self._next_ping = self._t0 + (self._ping_ns or 0)
        self._status_on = self.out.outputs.wants_status

    def start(self) -> None:
        self._arm_outputs()  # outputs may have been added since __init__
        self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> bool:
        """Account for what is left (finished frames, a frame stuck past its deadline), flush
        the summary and join; False when the thread did not end within ``timeout_s``."""
        self._stopping = True
        self.inflight.poke()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                gen, done, cur = self.inflight.take()
                now = self.clock.now_ns()
                for d in done:
                    self._on_done(d)
                if cur is not None:
                    self._check(cur, now)
                self._housekeeping(now)
                if self._stopping:
                    self._final(now)
                    return
                with self._passes:
                    self.seen_ns, self._seen_gen = now, gen
                    self._passes.notify_all()
                self.inflight.wait(gen, self._timeout_s(cur, now))
        except Exception:
            log.exception("deadline watchdog failed; misses are no longer recorded")
        finally:
            with self._passes:
                self._passes.notify_all()

    def sync(self, timeout_s: float) -> bool:
        """Return once a pass has taken in everything the worker finished before this call
        (``READY=1`` for a first frame done just before a stop goes out before ``STOPPING=1``);
        False when no pass did within ``timeout_s`` or the watchdog is not running."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        gen = self.inflight.poke()
        return self.wait_for(lambda w: w._seen_gen >= gen or not thread.is_alive(), timeout_s)

    def wait_for(self, predicate: Callable[[DeadlineWatchdog], bool], timeout_s: float) -> bool:
        """Block until ``predicate(self)`` holds after one of the watchdog's passes."""
        with self._passes:
            return self._passes.wait_for(lambda: predicate(self), timeout_s)

    def _timeout_s(self, cur: Current | None, now: int) -> float:
        wake = min(now + _MAX_WAIT_NS, self._next_run)
        if cur is not None and cur.frame.seq != self._stuck_seq:
            wake = min(wake, cur.deadline_ns + self._stuck_ns + 1)
        if self._ping_ns is not None and self.ready:
            wake = min(wake, self._next_ping)
        if self._status_on:
            wake = min(wake, self._next_status)
        return max(0.0, (wake - now) / 1e9)

    # -- frames ---------------------------------------------------------------------------
    def _on_done(self, d: Done) -> None:
        if d.outcome in GAP_OUTCOMES:
            self._on_gap(d)
            return
        self.completed += 1
        self._progress = True
        if not self.ready:
            self.ready = True
            self.out.outputs.on_ready()
        seq = d.frame.seq
        if seq == self._stuck_seq:
            self._stuck_seq = None
            over = (d.end_ns - d.deadline_ns) / 1e6
            log.warning("frame %d finished %.1f ms past its deadline (reported stuck)", seq, over)
            return
        if not d.late:
            self._consecutive = 0
            return
        self._consecutive += 1
        frame = d.frame
        stages = dict(frame.stages_ns)
        cause = (
            "queue" if d.outcome == SKIPPED else cause_of(stages, frame.t_capture_ns, d.deadline_ns)
        )
        self._record(frame, cause, action_of(d), d.end_ns, stages)

    def _on_gap(self, d: Done) -> None:
        """The worker's gap reports: ``d.frame`` stands for the frame that did not come (its
        seq; its capture time is that of the last frame before the gap)."""
        frame, opened = d.frame, d.outcome == GAP
        if opened:
            self.gaps += 1
            self._consecutive += 1
        action = "source-silent" if opened else "source-back"
        self._record(frame, "gap", action, d.end_ns, {}, count=opened)
        silent_s = (d.end_ns - frame.t_capture_ns) / 1e9
        what = (
            "no frame from %s for %.1f s: recorded as a gap (frame %d); waiting for the source"
            if opened
            else "frames from %s again after %.1f s without any (the gap at frame %d)"
        )
        log.warning(what, frame.source or self.source, silent_s, frame.seq)

    def _check(self, cur: Current, now: int) -> None:
        """Report the frame in flight once it is more than ``stuck_ms`` past its deadline."""
        if cur.frame.seq != self._stuck_seq and now - cur.deadline_ns > self._stuck_ns:
            self._report_stuck(cur, now)

    def _report_stuck(self, cur: Current, now: int) -> None:
        frame = cur.frame
        stages = dict(frame.stages_ns)  # a C-level copy: atomic against the worker's writes
        stages[cur.stage] = stages.get(cur.stage, 0) + max(0, now - cur.stage_start_ns)
        self._stuck_seq = frame.seq
        self._consecutive += 1
        cause = cause_of(stages, frame.t_capture_ns, cur.deadline_ns)
        self._record(frame, cause, "stuck", now, stages)
        log.warning(
            "frame %d is stuck in %s: %.1f ms past its deadline",
            frame.seq,
            cur.stage,
            (now - cur.deadline_ns) / 1e6,
        )

    def _record(
        self,
        frame: Frame,
        cause: str,
        action: str,
        t_ns: int,
        stages_ns: Mapping[str, int],
        *,
        count: bool = True,
    ) -> None:
        """Write a miss record; ``count`` it (counters, stderr summary) unless it only closes
        a miss already counted (the end of a gap)."""
        out = self.out
        extra: dict[str, Any] = {} if out.thermal is None else out.thermal(t_ns).record_fields()
        rec = MissRecord.create(
            frame=frame.seq,
            source=frame.source or self.source,
            budget_ms=self.budget_ns / 1e6,
            latency_ms=(t_ns - frame.t_capture_ns) / 1e6,
            stages_ns=stages_ns,
            cause=cause,
            action=action,
            consecutive=self._consecutive,
            run=out.run_id,
            **extra,
        )
        out.outputs.on_miss(rec)
        self.records += 1
        if count:
            out.counters.miss(cause)
            out.summary.add(rec, t_ns)

    def _final(self, now: int) -> None:
        """At stop: a frame still in flight past its deadline is a miss too."""
        _, done, cur = self.inflight.take()
        for d in done:
            self._on_done(d)
        if cur is not None and cur.frame.seq != self._stuck_seq and now > cur.deadline_ns:
            self._report_stuck(cur, now)
        self.out.summary.flush(now)

    # -- systemd and the periodic records ---------------------------------------------------
    def _housekeeping(self, now: int) -> None:
        self.out.summary.tick(now)
        if self._ping_ns is not None and self.ready and now >= self._next_ping:
            self._ping(now)
        if self._status_on and now >= self._next_status:
            self.out.outputs.on_status(self.status_text(now))
            self._next_status = now + self._status_ns
        if now >= self._next_run:
            self.write_run_record("tick")
            self._next_run = now + self._run_ns

    def _ping(self, now: int) -> None:
        assert self._ping_ns is not None
        self._next_ping = now + self._ping_ns
        if self._progress:
            self._progress, self._stall_warned = False, False
            self.out.outputs.on_alive()
            self.pings += 1
            return
        self.withheld += 1
        if not self._stall_warned:
            self._stall_warned = True
            log.error(
                "no frame finished in the last %.1f s: withholding WATCHDOG=1, systemd will "
                "restart the service if this lasts",
                self._ping_ns / 1e9,
            )

    def status_text(self, now: int) -> str:
        """``fps 29.9, p99 18.2 ms, misses 0.12% (3 of 2500)`` for systemd's STATUS."""
        t0, n0 = self._status_mark
        self._status_mark = (now, self.completed)
        fps = (self.completed - n0) / ((now - t0) / 1e9) if now > t0 else 0.0
        counts = self.out.counters.snapshot()
        held, missed = counts.held, counts.missed
        rate = 100.0 * counts.miss_rate
        p99 = ""
        if self.out.stats is not None:
            p = self.out.stats.percentiles("total", (99,)).get("p99")
            p99 = "" if p is None else f", p99 {p:.1f} ms"
        return f"fps {fps:.1f}{p99}, misses {rate:.2f}% ({missed} of {held})"

    def write_run_record(self, event: str) -> None:
        """A ``{"type": "run"}`` record of the counters so far (``start``, ``tick``, ``exit``)."""
        if self.out.run_id is None:
            return
        rec = RunRecord.from_counters(
            self.out.counters.as_dict(),
            run=self.out.run_id,
            event=event,
            source=self.source,
            budget_ms=self.budget_ns / 1e6,
            lost=self.out.outputs.records_lost,
        )
        self.out.outputs.on_run_record(rec)
