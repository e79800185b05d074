"""End to end: the real pipeline (paced sample clip, real model, watchdog, miss log) with the
server attached as the runner attaches it; a viewer reads the stream while it runs, and after
the run ``/api/stats``, ``/metrics`` and ``/api/misses`` agree with the run's own summary."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.config import ModelConfig
from edge.detector import load_detector
from edge.outputs.records import MissLogOutput
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import PipelineConfig
from edge.pipeline.summary import RunSummary
from edge.serve import ServeConfig, Server
from edge.sources.base import SourceOptions
from edge.sources.registry import open_source
from edge.watchdog.misslog import MissLog
from tests.integration.serve_rig import TIMEOUT_S, MjpegReader, get, get_json
from tests.tools import slow_infer_in_process

FRAMES = 48  # two seconds of the clip at its own 24 fps


@pytest.mark.usefixtures("models_ready")
def test_a_real_run_served_end_to_end(
    samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_infer_in_process(monkeypatch)  # inference 5 ms slower: past the 2 ms budget anywhere
    detector = load_detector(ModelConfig(name="face"))
    source = open_source(
        str(samples_dir / "Megamind.avi"),
        SourceOptions(),
    )
    # a 2 ms budget: inference (delayed) takes longer, so frames miss, the policy degrades and
    # reuses boxes (stale frames reach the viewer too), and every miss is in the records
    settings = Settings(PipelineConfig(budget_ms=2.0, frames=FRAMES))
    server = Server(ServeConfig(http="127.0.0.1:0", misses_kept=1000))
    result: list[RunSummary] = []
    with MissLog(tmp_path / "misses.jsonl") as log:
        pipeline = Pipeline(source, detector, settings, [MissLogOutput(log)])
        pipeline.add_output(server)
        server.start()
        runner = threading.Thread(target=lambda: result.append(pipeline.run()), daemon=True)
        try:
            runner.start()
            reader = MjpegReader(server)
            parts = reader.take(3)
            reader.close()
            assert get(server, "/healthz")[0] == 200
            runner.join(TIMEOUT_S)
            assert not runner.is_alive() and result, "the pipeline did not finish"
            check_agreement(server, result[0], parts)
        finally:
            pipeline.request_stop()
            runner.join(TIMEOUT_S)
            server.stop()


def check_agreement(
    server: Server, summary: RunSummary, parts: list[tuple[int, object, bytes]]
) -> None:
    assert len(parts) == 3 and [p[0] for p in parts] == sorted({p[0] for p in parts})
    assert summary.captured == FRAMES and summary.missed > 0
    stats = get_json(server, "/api/stats")
    for name in ("captured", "processed", "dropped", "skipped_stale", "missed"):
        assert stats["frames"][name] == summary.count(name), name
    assert stats["missed_by_cause"] == dict(summary.missed_by_cause)
    assert stats["model"] == "face" and stats["budget_ms"] == 2.0
    text = get(server, "/metrics")[2].decode()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    for name in ("captured", "processed", "dropped", "skipped_stale"):
        assert values[(f"edge_frames_{name}_total", ())] == summary.count(name), name
    by_cause = {
        dict(k[1])["cause"]: v for k, v in values.items() if k[0] == "edge_frames_missed_total"
    }
    assert {c: n for c, n in by_cause.items() if n} == dict(summary.missed_by_cause)
    # every processed frame went through publish once, so the histogram saw each one
    assert values[("edge_frame_latency_seconds_count", (("stage", "total"),))] == summary.processed
    misses = get_json(server, "/api/misses?limit=1000")["misses"]
    assert len(misses) == summary.missed
    causes: dict[str, int] = {}
    for m in misses:
        causes[m["cause"]] = causes.get(m["cause"], 0) + 1
    assert causes == dict(summary.missed_by_cause)
