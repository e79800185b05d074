"""A worker and a running deadline watchdog on a fake clock, driven frame by frame by a test."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from edge.outputs.records import MissLogOutput
from edge.outputs.systemd import SystemdOutput
from edge.pipeline.degrade import Degrader
from edge.pipeline.handoff import LatestSlot
from edge.pipeline.inflight import InFlight
from edge.pipeline.output import Broadcast
from edge.pipeline.settings import DegradeConfig
from edge.pipeline.worker import Timing, Worker
from edge.stats import Counters, LatencyStats
from edge.testing.pipeline import MS, TIMEOUT_S, FakeDetector, ListSink, TickClock, frame
from edge.watchdog.deadline import DeadlineWatchdog, Reporting
from edge.watchdog.misslog import MissSummary
from edge.watchdog.notify import Notifier
from edge.watchdog.record import MissRecord
from edge.watchdog.settings import WatchdogConfig

FAST = {"decode": 2 * MS, "preprocess": 2 * MS, "infer": 5 * MS, "postprocess": 1 * MS}


class Rig:
    """Worker (called directly, in the test's thread) + watchdog thread + fake clock."""

    def __init__(
        self,
        *,
        budget_ms: float = 33.0,
        durations: Mapping[str, int] = FAST,
        skip_stale: bool = True,
        degrade: DegradeConfig | None = None,
        watchdog: WatchdogConfig | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.clock = TickClock()
        self.budget_ns = round(budget_ms * MS)
        self.det = FakeDetector(self.clock, durations)
        self.inflight = InFlight()
        self.clock.listeners.append(self.inflight.poke)
        self.counters, self.stats, self.sink = Counters(), LatencyStats(), ListSink()
        self.slot = LatestSlot()
        self.degrader = Degrader(degrade or DegradeConfig(policy="off"), self.budget_ns)
        self.worker = Worker(
            self.slot,
            self.det,
            self.inflight,
            Timing(self.budget_ns, self.budget_ns, skip_stale),
            clock=self.clock,
            counters=self.counters,
            stats=self.stats,
            degrader=self.degrader,
        )
        outputs = Broadcast([MissLogOutput(self.sink)])
        if notifier is not None:
            outputs.add(SystemdOutput(notifier))
        out = Reporting(outputs, MissSummary(self.clock), self.counters, self.stats, run_id="r1")
        self.watchdog = DeadlineWatchdog(
            self.inflight,
            out,
            watchdog or WatchdogConfig(),
            clock=self.clock,
            budget_ns=self.budget_ns,
            source="fake",
        )
        self.watchdog.start()
        self.seq = 0
        self.handled = 0

    def next_frame(self, age_ms: float = 0.0):  # type: ignore[no-untyped-def]
        f = frame(self.seq, self.clock.now_ns() - round(age_ms * MS))
        self.seq += 1
        return f

    def process(self, n: int = 1, age_ms: float = 0.0) -> None:
        """Hand ``n`` fresh frames (``age_ms`` old) to the worker, then let the watchdog see
        them all."""
        for _ in range(n):
            self.worker.handle(self.next_frame(age_ms))
            self.handled += 1
        self.settle()

    def settle(self) -> None:
        done = self.handled
        assert self.watchdog.wait_for(lambda w: w.completed >= done, TIMEOUT_S)

    def in_thread(self, age_ms: float = 0.0) -> threading.Thread:
        f = self.next_frame(age_ms)
        t = threading.Thread(target=self.worker.handle, args=(f,), daemon=True)
        t.start()
        self.handled += 1
        return t

    def misses(self) -> list[MissRecord]:
        return self.sink.misses

    def close(self) -> None:
        self.det.release()
        self.watchdog.stop(TIMEOUT_S)
