"""Wiring a :class:`~edge.serve.server.Server` to a :class:`~edge.pipeline.runner.Pipeline`
from the outside, without the pipeline knowing about HTTP.

    server = Server(cfg.serve)
    out = Outputs(MissTee(miss_log, server.record_miss), notifier, thermal, path)
    pipeline = Pipeline(source, detector, settings, out)
    attach(server, pipeline, delegate=cfg.model.delegate)
    server.start()
    try:
        summary = pipeline.run()
    finally:
        server.stop()
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge.serve.provider import PipelineStats
from edge.watchdog.misslog import JsonRecord
from edge.watchdog.record import MissRecord

if TYPE_CHECKING:
    from edge.pipeline.runner import FlushableSink, Pipeline
    from edge.serve.server import Server

log = logging.getLogger(__name__)


class MissTee:
    """A record sink that passes every record on and copies the miss records to ``on_miss``.

    Same interface as :class:`~edge.watchdog.misslog.MissLog` as the watchdog uses it
    (``write`` never blocks or raises, ``lost``, ``flush``)."""

    def __init__(self, sink: FlushableSink, on_miss: Callable[[MissRecord], None]) -> None:
        self.sink, self.on_miss = sink, on_miss
        self._failed = False

    def write(self, record: JsonRecord | str) -> bool:
        if isinstance(record, MissRecord):
            try:
                self.on_miss(record)
            except Exception:  # the viewer must never cost the miss log a record
                if not self._failed:
                    self._failed = True
                    log.exception("copying a miss record to the viewer failed (logged once)")
        return self.sink.write(record)

    @property
    def lost(self) -> int:
        return self.sink.lost

    def flush(self, timeout_s: float = 1.0) -> bool:
        return self.sink.flush(timeout_s)


def attach(server: Server, pipeline: Pipeline, *, delegate: str = "cpu") -> None:
    """Feed ``server`` from ``pipeline``: its stats, its budget and clock, and its results
    (through the worker's ``overlay`` hook, which also hands over the decoded image)."""
    if pipeline.worker.overlay is not None:
        raise ValueError("the pipeline's worker already has an overlay hook; attach one server")
    server.attach_stats(
        PipelineStats.of(pipeline, delegate=delegate),
        pipeline.budget_ns,
        period_ns=pipeline.worker.timing.period_ns,
        clock=pipeline.clock,
    )
    pipeline.worker.overlay = server.overlay_hook
