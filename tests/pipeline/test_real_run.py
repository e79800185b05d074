"""The pipeline with the real detector: a real video file with a real model, the miss log read
back by ``edge misses``' reader, and corrupt JPEG frames that must be counted, not fatal."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.clock import MONOTONIC
from edge.config import Config, ModelConfig, SourceConfig
from edge.detector import load_detector
from edge.frame import Detections, Frame
from edge.launch import run
from edge.misses import analyse, load
from edge.outputs.records import MissLogOutput
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.testing.pipeline import FakeSource, ListSink
from edge.watchdog.settings import WatchdogConfig
from tests.tools import slow_infer_in_process


@pytest.mark.usefixtures("models_ready")
def test_real_video_with_a_real_model(
    samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_infer_in_process(monkeypatch)  # inference 5 ms slower than the model: always late
    log_path = tmp_path / "misses.jsonl"
    cfg = Config(
        model=ModelConfig(name="person"),
        source=SourceConfig(pace=False),
        # a 1 ms budget makes every frame late: each one must be in the log, with a cause
        pipeline=PipelineConfig(budget_ms=1.0, frames=12, policy="process-all", opencv_threads=1),
        degrade=DegradeConfig(policy="off"),
        watchdog=WatchdogConfig(miss_log=str(log_path)),
    )
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        summary = run(cfg, str(samples_dir / "vtest.avi"), environ={}, floor_invokes=5)
        assert cv2.getNumThreads() == 1  # the run sized OpenCV's pool as configured
    finally:
        cv2.setNumThreads(before)
    assert (summary.captured, summary.processed, summary.dropped) == (12, 12, 0)
    assert summary.missed == 12 and summary.stages_ms["infer"]["count"] == 12
    assert summary.invoke_floor_ms is not None and summary.invoke_floor_ms["p50"] > 0
    report = analyse(load([str(log_path)]))
    assert report["misses"] == summary.missed  # the log agrees with the run's counters
    assert report["frames"]["missed"] == summary.missed
    assert report["frames"]["processed"] == 12 and report["frames"]["exited"] == 1
    assert sum(report["by_cause"].values()) == 12
    assert set(report["by_cause"]) <= {"queue", "decode", "preprocess", "infer"}


@pytest.mark.usefixtures("models_ready")
def test_corrupt_jpeg_frames_are_counted_and_skipped(samples_dir: Path) -> None:
    detector = load_detector(ModelConfig(name="face"))
    good = (samples_dir / "messi5.jpg").read_bytes()
    assert cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR) is not None
    jpegs = [good, b"\xff\xd8\xff\xe0garbage", good, good[:20], good]  # 1, 3: corrupt
    src = FakeSource(fps=30.0)
    now = MONOTONIC.now_ns()
    src.push(*(Frame(seq=i, t_capture_ns=now, jpeg=j, source="jpeg") for i, j in enumerate(jpegs)))
    src.end()
    sink = ListSink()
    settings = Settings(PipelineConfig(budget_ms=60_000.0, policy="process-all", gc=False))
    pipe = Pipeline(src, detector, settings, [MissLogOutput(sink)])
    results: list[int] = []
    lock = threading.Lock()

    def on_result(f: Frame, d: Detections, stale: bool) -> None:
        with lock:
            results.append(f.seq)

    pipe.subscribe(on_result)
    summary = pipe.run()
    assert results == [0, 2, 4]
    assert summary.count("decode_errors") == 2 and summary.processed == 3
    assert summary.missed == 0 and sink.misses == []
