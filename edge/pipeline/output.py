"""Outputs: what a run reports to. One protocol for all of them.

The miss log (:class:`~edge.outputs.records.MissLogOutput`), systemd
(:class:`~edge.outputs.systemd.SystemdOutput`), the HTTP viewer
(:class:`~edge.serve.server.Server`), MQTT (:class:`~edge.outputs.mqtt.MqttOutput`) and
whatever comes next are each an :class:`Output`, registered with :meth:`Pipeline.add_output
<edge.pipeline.runner.Pipeline.add_output>`; the pipeline then hands each of them every
result (on the worker thread, in the ``overlay`` stage), and the deadline watchdog hands them
every deadline miss, every run record and the run's lifecycle (ready, alive, status; stopping
from the pipeline's end) through a :class:`Broadcast`. The pipeline asks them for their
figures (:meth:`Output.stats`, shown by the outputs that show figures: ``/api/stats``,
``/metrics``). Each output overrides the hooks it needs (:class:`OutputBase` has do-nothing
defaults) and only those are called: the worker calls no hook per frame for an output that
takes no results. Starting and stopping them is the launcher's job (:mod:`edge.launch`),
around the run.

This module knows no output: the pipeline package imports neither :mod:`edge.serve` nor
:mod:`edge.outputs`; they import this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from edge.clock import Clock
from edge.frame import Detections, Frame, Image
from edge.stats import Counters, LatencyStats
from edge.watchdog.record import MissRecord, RunRecord

log = logging.getLogger(__name__)


class RunView(Protocol):
    """What an output reads of a running pipeline (:class:`~edge.pipeline.runner.Pipeline`)."""

    counters: Counters
    stats: LatencyStats
    budget_ns: int
    clock: Clock

    @property
    def period_ns(self) -> int: ...  # the source's frame period (the budget when unknown)

    @property
    def degrader(self) -> Any: ...  # .every

    @property
    def source(self) -> Any: ...  # .name

    @property
    def detector(self) -> Any: ...  # .name

    def output_stats(self) -> dict[str, Any]: ...


class Output(Protocol):
    """Something a run reports to. Hooks run on the pipeline's threads: they must only hand
    off (O(1), never block); one that raises is logged once and counted, never allowed to stop
    the pipeline."""

    #: the key its :meth:`stats` appear under (``/api/stats``: ``"mqtt": {...}``)
    name: str

    def attach(self, run: RunView) -> None:
        """Called once by ``add_output``, before the run: what the output reads of the run."""

    def on_result(
        self, frame: Frame, detections: Detections, stale: bool, image: Image | None = None
    ) -> None:
        """Every result (worker thread); ``image`` is the decoded image when there is one."""

    def on_miss(self, record: MissRecord) -> None:
        """Every deadline-miss record (watchdog thread)."""

    def on_run_record(self, record: RunRecord) -> None:
        """Every ``{"type": "run"}`` counters record: start, tick, exit (watchdog thread;
        start and exit on the pipeline's own)."""

    def on_ready(self) -> None:
        """The first frame is done (watchdog thread)."""

    def on_alive(self) -> None:
        """Frames kept completing for :attr:`alive_interval_s` (watchdog thread)."""

    def on_status(self, text: str) -> None:
        """``fps ..., p99 ... ms, misses ...`` every status interval (watchdog thread)."""

    def on_stopping(self) -> None:
        """The run is stopping, after the watchdog took in the frames already finished."""

    def flush(self, timeout_s: float = 1.0) -> bool:
        """At the end of the run, after the exit run record: write out what is queued."""

    @property
    def alive_interval_s(self) -> float | None: ...

    @property
    def wants_status(self) -> bool: ...

    @property
    def records_lost(self) -> int: ...

    @property
    def record_log(self) -> str | None: ...

    def start(self) -> None: ...

    def stop(self) -> object: ...

    def stats(self) -> Mapping[str, Any] | None:
        """The output's own figures for the others to show; None: nothing to show."""


class OutputBase:
    """Do-nothing defaults for every hook of :class:`Output`: an output overrides the ones it
    needs. A hook left at its default is never called (the pipeline registers only the hooks an
    output overrides), so an output without results costs the worker nothing per frame."""

    name: str = "output"
    #: where the output keeps the run's records, for the summary (the miss log's path)
    record_log: str | None = None

    @property
    def alive_interval_s(self) -> float | None:
        """How often it wants :meth:`on_alive` while frames complete (systemd's half
        interval); None: never."""
        return None

    @property
    def wants_status(self) -> bool:
        """Whether it wants :meth:`on_status` every ``watchdog.status_interval_s``."""
        return False

    @property
    def records_lost(self) -> int:
        """Records it had to drop (the ``lost`` of run records and the summary)."""
        return 0

    def attach(self, run: RunView) -> None:
        pass

    def on_result(
        self, frame: Frame, detections: Detections, stale: bool, image: Image | None = None
    ) -> None:
        pass

    def on_miss(self, record: MissRecord) -> None:
        pass

    def on_run_record(self, record: RunRecord) -> None:
        pass

    def on_ready(self) -> None:
        pass

    def on_alive(self) -> None:
        pass

    def on_status(self, text: str) -> None:
        pass

    def on_stopping(self) -> None:
        pass

    def flush(self, timeout_s: float = 1.0) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> object:
        return None

    def stats(self) -> Mapping[str, Any] | None:
        return None


#: the hooks :class:`Broadcast` hands on, each to the outputs that override it
_HOOKS = ("on_miss", "on_run_record", "on_ready", "on_alive", "on_status", "on_stopping")


def overrides(output: object, hook: str) -> bool:
    """Whether ``output`` has its own ``hook`` (not :class:`OutputBase`'s do-nothing one)."""
    return getattr(type(output), hook, None) is not getattr(OutputBase, hook)


class Broadcast:
    """The registered outputs, as the watchdog and the pipeline's end see them: each hook
    goes to every output that overrides it, in the order they were added. A hook that raises
    is logged once and counted (``errors``), never allowed to cost the others a call."""

    def __init__(self, outputs: Iterable[Output] = ()) -> None:
        self.outputs: list[Output] = []
        self.errors = 0
        self._hooks: dict[str, list[Callable[..., object]]] = {h: [] for h in _HOOKS}
        for o in outputs:
            self.add(o)

    def add(self, output: Output) -> None:
        self.outputs.append(output)
        for hook, calls in self._hooks.items():
            if overrides(output, hook):
                calls.append(getattr(output, hook))

    def _call(self, hook: str, *args: object) -> None:
        for call in self._hooks[hook]:
            try:
                call(*args)
            except Exception:  # an output must never cost the others (or the run) a record
                self.errors += 1
                if self.errors == 1:
                    log.exception("an output's %s failed (logged once, then counted)", hook)

    def on_miss(self, record: MissRecord) -> None:
        self._call("on_miss", record)

    def on_run_record(self, record: RunRecord) -> None:
        self._call("on_run_record", record)

    def on_ready(self) -> None:
        self._call("on_ready")

    def on_alive(self) -> None:
        self._call("on_alive")

    def on_status(self, text: str) -> None:
        self._call("on_status", text)

    def on_stopping(self) -> None:
        self._call("on_stopping")

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Flush every output that keeps records, each within ``timeout_s``."""
        ok = True
        for o in self.outputs:
            ok = o.flush(timeout_s) and ok
        return ok

    @property
    def alive_interval_s(self) -> float | None:
        """The shortest :attr:`OutputBase.alive_interval_s`; None when no output wants pings."""
        wanted = [o.alive_interval_s for o in self.outputs if o.alive_interval_s]
        return min(wanted) if wanted else None

    @property
    def wants_status(self) -> bool:
        return any(o.wants_status for o in self.outputs)

    @property
    def records_lost(self) -> int:
        return sum(o.records_lost for o in self.outputs)

    @property
    def record_log(self) -> str | None:
        return next((o.record_log for o in self.outputs if o.record_log is not None), None)


__all__ = ["Broadcast", "Output", "OutputBase", "RunView", "overrides"]
