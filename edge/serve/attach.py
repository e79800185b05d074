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
from typing import TYPE_CHECKING

from edge.outputs.tap import MissTap
from edge.serve.provider import PipelineStats

if TYPE_CHECKING:
    from edge.pipeline.runner import Pipeline
    from edge.serve.server import Server

log = logging.getLogger(__name__)


#: the viewer hears of misses through the same tap as every other output
MissTee = MissTap


def attach(server: Server, pipeline: Pipeline, *, delegate: str = "cpu") -> None:
    """Feed ``server`` from ``pipeline``: its stats (and the page's per-second series of
    them), its budget and clock, and its results (through the worker's ``overlay`` hook,
    which also hands over the decoded image)."""
    if pipeline.worker.overlay is not None:
        raise ValueError("the pipeline's worker already has an overlay hook; attach one server")
    stats = PipelineStats.of(pipeline, delegate=delegate)
    server.attach_stats(
        stats,
        pipeline.budget_ns,
        period_ns=pipeline.worker.timing.period_ns,
        clock=pipeline.clock,
    )
    server.app.attach_series(stats.recorder())  # /api/series: folded only while watched
    pipeline.worker.overlay = server.overlay_hook
