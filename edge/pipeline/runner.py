"""Wiring one run: source -> capture thread -> latest-frame handoff -> worker, watched by the
deadline watchdog, reported to its outputs (the miss log, systemd, the viewer, MQTT).

Threads: ``capture`` (reads the source), ``worker`` (the stages), ``deadline-watchdog``, and
the miss log's writer. The calling (main) thread only waits: it joins the worker in short
slices, so a SIGTERM, SIGINT or SIGHUP (whose handler just sets the stop event) is acted on
at once. SIGHUP stops the run like SIGTERM (a terminal that went away); it does not reload the
config: a restart does that, and the unit has no ``ExecReload=``.
A source that keeps only its newest frame itself (a paced file, an OpenCV live source with its
own reader thread) is read by the worker directly
(:class:`~edge.pipeline.handoff.PullSlot`): no capture thread, no thread wake-up between a
frame's arrival and its processing. The threads start with a 1 us timer slack (Linux), so a
timed wait (a paced source's next frame) ends when due rather than up to 50 us later.
Every blocking call in every thread has a timeout, so after a stop request the capture thread
ends within its read timeout and the worker after the frame in hand; the run is over within
about a second even when a stage hangs (the threads are daemons, a hung delegate cannot hold
the process), and the logs are flushed on the way out.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.clock import MONOTONIC, Clock
from edge.pipeline.capture import Capture
from edge.pipeline.degrade import Degrader
from edge.pipeline.gcslack import GcDiscipline
from edge.pipeline.handoff import Handoff, LatestSlot, PullSlot, reads_newest_only
from edge.pipeline.inflight import InFlight
from edge.pipeline.output import Broadcast, Output, overrides
from edge.pipeline.settings import DegradeConfig, PipelineConfig, budget_ns
from edge.pipeline.summary import RunSummary
from edge.pipeline.worker import DetectorLike, ResultCallback, Timing, Worker
from edge.sources.base import Source
from edge.sources.supervisor import SupervisedSource
from edge.stats import Counters, LatencyStats
from edge.watchdog.deadline import DeadlineWatchdog, Reporting, ThermalReader
from edge.watchdog.misslog import MissSummary
from edge.watchdog.record import new_run_id
from edge.watchdog.settings import WatchdogConfig

log = logging.getLogger(__name__)

#: how long shutdown may take before threads still running are abandoned (they are daemons)
STOP_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Settings:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)


class Pipeline:
    """One run of the real-time pipeline. Build with its outputs (the miss log, systemd),
    :meth:`add_output` more (or :meth:`subscribe` a plain callback), then :meth:`run`."""

    def __init__(
        self,
        source: Source,
        detector: DetectorLike,
        settings: Settings,
        outputs: Iterable[Output] = (),
        *,
        thermal: ThermalReader | None = None,
        clock: Clock = MONOTONIC,
        stop: threading.Event | None = None,
        direct: bool | None = None,
        timer_slack_ns: int | None = 1_000,
    ) -> None:
        """``direct`` None picks the handoff from the source (:func:`reads_newest_only`);
        True/False force it (benchmarks compare them). ``timer_slack_ns`` None leaves the
        threads' timer slack alone. ``thermal`` annotates the miss records."""
        self.source, self.detector, self.settings = source, detector, settings
        self.thermal = thermal
        self.clock = clock
        self.stop = stop or threading.Event()
        pcfg = settings.pipeline
        self.budget_ns = budget_ns(pcfg, source.fps)
        self.period_ns = round(1e9 / source.fps) if source.fps else self.budget_ns
        self.counters, self.stats, self.inflight = Counters(), LatencyStats(), InFlight()
        self.slot = LatestSlot(lossless=pcfg.policy == "process-all")
        self.gc = GcDiscipline(clock, enabled=pcfg.gc)
        self.degrader = Degrader(settings.degrade, self.budget_ns)
        timing = Timing(self.budget_ns, self.period_ns, skip_stale=pcfg.policy == "skip-stale")
        self.capture = Capture(
            source, self.slot, self.counters, self.stop, max_frames=pcfg.frames, clock=self.clock
        )
        #: the worker reads the source itself when the source keeps only its newest frame
        self.direct = reads_newest_only(source) if direct is None else direct
        self.timer_slack_ns = timer_slack_ns
        self.handoff: Handoff = PullSlot(self.capture.pull) if self.direct else self.slot
        self.worker = self._worker(timing)
        #: the watchdog's way to the outputs: misses, run records, ready, alive, status
        self.broadcast = Broadcast()
        self.outputs = self.broadcast.outputs
        self.run_id = new_run_id()
        self.watchdog = self._watchdog()
        self.signal: int | None = None
        for o in outputs:
            self.add_output(o)

    def _worker(self, timing: Timing) -> Worker:
        return Worker(
            self.handoff,
            self.detector,
            self.inflight,
            timing,
            clock=self.clock,
            counters=self.counters,
            stats=self.stats,
            degrader=self.degrader,
            gc=self.gc,
            stop=self.stop,
        )

    def _watchdog(self) -> DeadlineWatchdog:
        reporting = Reporting(
            self.broadcast,
            MissSummary(self.clock),
            self.counters,
            self.stats,
            self.thermal,
            self.run_id,
        )
        return DeadlineWatchdog(
            self.inflight,
            reporting,
            self.settings.watchdog,
            clock=self.clock,
            budget_ns=self.budget_ns,
            source=self.source.name,
        )

    def subscribe(self, callback: ResultCallback) -> None:
        """Call ``callback(frame, detections, stale)`` on the worker thread for every result."""
        self.worker.subscribers.append(callback)

    def add_output(self, output: Output) -> None:
        """Report to ``output``: its results, its misses and the run's lifecycle (the hooks
        it overrides), its figures (before :meth:`run`; starting and stopping it is the
        caller's)."""
        if any(o is output for o in self.outputs):
            raise ValueError(f"output {output.name!r} is already added to this pipeline")
        output.attach(self)
        self.broadcast.add(output)
        if overrides(output, "on_result"):  # no per-frame call for an output without results
            self.worker.outputs.append(output.on_result)

    def output_stats(self) -> dict[str, Any]:
        """``{output name: its figures}`` for the outputs that have any."""
        out: dict[str, Any] = {}
        for o in self.outputs:
            figures = o.stats()
            if figures is not None:
                out[o.name] = figures
        return out

    def request_stop(self, signum: int | None = None) -> None:
        """Ask the run to end (safe from a signal handler: one store and an Event.set)."""
        self.signal = signum
        self.stop.set()

    def run(self) -> RunSummary:
        """Run until end of stream, ``frames``, or :meth:`request_stop`; the summary."""
        t0 = self.clock.now_ns()
        log.info(
            "running %s on %s: budget %.1f ms, policy %s, degrade %s",
            self.detector.name,
            self.source.name,
            self.budget_ns / 1e6,
            self.settings.pipeline.policy,
            self.settings.degrade.policy,
        )
        self.watchdog.write_run_record("start")
        threads = [threading.Thread(target=self.worker.run, name="worker", daemon=True)]
        if not self.direct:
            threads.append(threading.Thread(target=self.capture.run, name="capture", daemon=True))
        self.gc.start()
        self.watchdog.start()
        try:
            slack = None  # the threads started here inherit the slack
            if self.timer_slack_ns is not None:
                slack = set_timer_slack_ns(self.timer_slack_ns)
            try:
                for t in threads:
                    t.start()
            finally:
                if slack is not None:
                    set_timer_slack_ns(slack)
            self._wait(threads[0])
        finally:
            self._shutdown(threads)
        summary = self._summary((self.clock.now_ns() - t0) / 1e9)
        for error in (self.capture.error, self.worker.error):
            if error is not None:
                log.warning("the run ended on an error; so far:\n%s", summary.format())
                raise error
        return summary

    def _wait(self, worker: threading.Thread) -> None:
        # short join slices: the main thread runs signal handlers between them
        while worker.is_alive() and not self.stop.is_set():
            worker.join(0.2)
        if self.signal is not None:
            log.warning("%s received: stopping", signal.Signals(self.signal).name)

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        # a run that ends right after its first frame (a short file) still says READY first
        self.watchdog.sync(STOP_TIMEOUT_S / 4)
        self.broadcast.on_stopping()
        until = time.monotonic() + STOP_TIMEOUT_S  # a real-time bound on blocking, not a duration
        for t in reversed(threads):  # capture first: it closes the handoff for the worker
            if t.ident is not None:  # started
                t.join(max(0.0, until - time.monotonic()))
        cur = self.inflight.peek() if threads[0].is_alive() else None
        if cur is not None:
            log.error(
                "the worker is still in %s for frame %d after the stop; leaving it behind",
                cur.stage,
                cur.frame.seq,
            )
        self.watchdog.stop(max(0.1, until - time.monotonic()))
        self.gc.stop()
        self.watchdog.write_run_record("exit")
        self.broadcast.flush(1.0)
        try:
            self.source.close()
        except Exception as e:  # closing a dead camera must not hide the summary
            log.warning("closing %s failed: %s", self.source.name, e)

    def _summary(self, elapsed_s: float) -> RunSummary:
        counts = self.counters.snapshot()
        src: dict[str, Any] = {}
        if isinstance(self.source, SupervisedSource):
            src = asdict(self.source.stats())
        return RunSummary(
            source=self.source.name,
            model=self.detector.name,
            budget_ms=self.budget_ns / 1e6,
            elapsed_s=elapsed_s,
            counters=dict(counts.values),
            missed_by_cause=dict(counts.missed_by_cause),
            stages_ms=self.stats.snapshot(),
            miss_log=self.broadcast.record_log,
            lost_records=self.broadcast.records_lost,
            degrade_every=self.degrader.every,
            source_stats=src,
        )


@contextlib.contextmanager
def stop_on_signals(pipeline: Pipeline) -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP stop ``pipeline`` (main thread only; elsewhere a no-op).

    SIGHUP's default action would end the process on the spot, losing the queued miss
    records, the exit run record and the summary; stopping cleanly keeps them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        pipeline.request_stop(signum)

    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, handler) for s in stops}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30


def set_timer_slack_ns(ns: int) -> int | None:
    """Set the calling thread's timer slack (Linux ``prctl``; threads it starts inherit it);
    the previous value, or None where there is no such thing. The default, 50 us, lets the
    kernel end a timed wait up to 50 us late to batch wake-ups: a paced frame, stamped at its
    due time, then sat that long before anyone picked it up (the ``wait`` stage)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        old = int(libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0))
        if old < 0 or libc.prctl(_PR_SET_TIMERSLACK, ns, 0, 0, 0) != 0:
            return None
        return old
    except (OSError, AttributeError):
        return None


__all__ = [
    "Pipeline",
    "Settings",
    "set_timer_slack_ns",
    "stop_on_signals",
]
