"""The person demo as ``scripts/demo --model person --source demo:person`` runs it: the real
pipeline on the looped, paced vtest.avi (unzoomed, 768x576), the live stream served, a real HTTP
client reading it. The pedestrians must be boxed: several per frame, and drawn on the stream."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge.config import ModelConfig
from edge.detector import load_detector
from edge.frame import Detections, Frame
from edge.outputs.records import MissLogOutput
from edge.overlay import PALETTE
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import PipelineConfig
from edge.pipeline.summary import RunSummary
from edge.serve import ServeConfig, Server
from edge.sources.base import SourceOptions
from edge.sources.registry import open_source
from edge.watchdog.misslog import MissLog
from tests.integration.serve_rig import TIMEOUT_S, MjpegReader

FRAMES = 20  # two seconds of the clip at its own 10 fps


@pytest.mark.usefixtures("models_ready", "samples_dir")
def test_demo_person_boxes_the_pedestrians(tmp_path: Path) -> None:
    detector = load_detector(ModelConfig(name="person"))
    source = open_source("demo:person", SourceOptions())
    log = MissLog(tmp_path / "misses.jsonl")
    server = Server(ServeConfig(http="127.0.0.1:0"))
    settings = Settings(PipelineConfig(frames=FRAMES))
    pipeline = Pipeline(source, detector, settings, [MissLogOutput(log)])
    counts: list[int] = []
    boxes: list[np.ndarray] = []

    def record(frame: Frame, det: Detections, stale: bool) -> None:
        if not stale:
            counts.append(len(det))
            boxes.append(det.boxes.copy())

    pipeline.subscribe(record)
    pipeline.add_output(server)
    server.start()
    result: list[RunSummary] = []
    runner = threading.Thread(target=lambda: result.append(pipeline.run()), daemon=True)
    try:
        runner.start()
        reader = MjpegReader(server)
        parts = reader.take(2)
        reader.close()
        runner.join(TIMEOUT_S)
        assert not runner.is_alive() and result, "the pipeline did not finish"
    finally:
        pipeline.request_stop()
        runner.join(TIMEOUT_S)
        server.stop()
        source.close()
        log.close()
    # vtest.avi's opening seconds: 2-4 people walking in view; the old `person` (MediaPipe's
    # pose detector, now `pose`) finds none on these frames
    assert len(counts) >= FRAMES // 2 and min(counts) >= 1 and np.mean(counts) >= 2
    for b in boxes:  # in frame pixels, inside the 768x576 frame, person-shaped (taller)
        assert np.all(b >= 0) and np.all(b[:, [0, 2]] <= 768) and np.all(b[:, [1, 3]] <= 576)
        assert np.all(b[:, 3] - b[:, 1] > b[:, 2] - b[:, 0])
    # and the viewer sees them: the person colour drawn on the stream
    colour = np.array(PALETTE[0], np.int16)
    for _, img, _ in parts:
        near = np.abs(img.astype(np.int16) - colour).max(axis=2) <= 40
        assert near.sum() > 200, "no box drawn on the streamed frame"
