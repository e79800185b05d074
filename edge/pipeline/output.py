"""Outputs: what a run reports to, besides its miss log. One protocol for all of them.

The HTTP viewer (:class:`~edge.serve.server.Server`), MQTT
(:class:`~edge.outputs.mqtt.MqttOutput`) and whatever comes next are each an
:class:`Output`, registered with :meth:`Pipeline.add_output
<edge.pipeline.runner.Pipeline.add_output>`; the pipeline then hands each of them every
result (on the worker thread, in the ``overlay`` stage), every deadline miss (on the watchdog
thread, through :class:`MissTap` on the way to the miss log) and asks them for their figures
(:meth:`Output.stats`, shown by the outputs that show figures: ``/api/stats``, ``/metrics``).
Starting and stopping them is the launcher's job (:mod:`edge.launch`), around the run.

This module knows no output: the pipeline package imports neither :mod:`edge.serve` nor
:mod:`edge.outputs`; they import this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from edge.clock import Clock
from edge.frame import Detections, Frame, Image
from edge.stats import Counters, LatencyStats
from edge.watchdog.misslog import JsonRecord
from edge.watchdog.record import MissRecord

log = logging.getLogger(__name__)

MissListener = Callable[[MissRecord], None]


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

    def start(self) -> None: ...

    def stop(self) -> object: ...

    def stats(self) -> Mapping[str, Any] | None:
        """The output's own figures for the others to show; None: nothing to show."""


class _Sink(Protocol):
    def write(self, record: JsonRecord | str) -> bool: ...

    @property
    def lost(self) -> int: ...

    def flush(self, timeout_s: float = 1.0) -> bool: ...


class MissTap:
    """The watchdog's record sink in front of the miss log: copies each miss record to the
    outputs' ``on_miss`` on the way. Same interface as :class:`~edge.watchdog.misslog.MissLog`
    as the watchdog uses it: ``write`` never blocks or raises (a listener that raises is
    logged once and ignored), ``lost``, ``flush``."""

    def __init__(self, sink: _Sink, *listeners: MissListener) -> None:
        self.sink = sink
        self.listeners = list(listeners)
        self.listener_errors = 0

    def write(self, record: JsonRecord | str) -> bool:
        if isinstance(record, MissRecord):
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:  # an output must never cost the miss log a record
                    self.listener_errors += 1
                    if self.listener_errors == 1:
                        log.exception("a miss listener failed (logged once, then counted)")
        return self.sink.write(record)

    @property
    def lost(self) -> int:
        return self.sink.lost

    def flush(self, timeout_s: float = 1.0) -> bool:
        return self.sink.flush(timeout_s)


__all__ = ["MissListener", "MissTap", "Output", "RunView"]
