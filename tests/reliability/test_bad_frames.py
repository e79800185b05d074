"""Frames of the wrong size, channel count or type in the middle of a stream, through the
whole pipeline with the real face model: what can be converted is detected on (and on *that*
frame: the model must never see the previous frame again), what cannot is counted as a
decode error and skipped, and the run goes on.

(Corrupt JPEG parts are covered by ``tests/pipeline/test_real_run.py`` through the worker
and ``tests/integration/test_sources_http.py`` through a real MJPEG stream; a damaged video
by ``tests/integration/test_sources_files.py``.)
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np
import pytest
import skimage.data

from edge.clock import MONOTONIC
from edge.config import ModelConfig
from edge.detector import load_detector
from edge.frame import Detections, Frame
from edge.outputs.records import MissLogOutput
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.testing.pipeline import FakeSource, ListSink


@pytest.mark.usefixtures("models_ready")
def test_wrong_sizes_channels_and_types_mid_stream(caplog: pytest.LogCaptureFixture) -> None:
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)  # 512x512, one face
    h, w = face.shape[:2]
    frames = {
        0: face,
        1: np.zeros((h, w), np.uint8),  # gray, black: no face (not the last frame's face)
        2: face,
        3: np.zeros((h, w, 4), np.uint8),  # BGRA, black
        4: cv2.resize(face, (w // 2, h // 2)),  # half size: the face, boxes at half scale
        5: np.zeros((h, w, 5), np.uint8),  # 5 channels: refused
        6: np.zeros((0, 0, 3), np.uint8),  # empty: refused
        7: np.zeros((1, h, w, 3), np.uint8),  # a batch of one: refused
        8: cv2.cvtColor(face, cv2.COLOR_BGR2GRAY),  # gray face: found
        9: face.astype(np.float32) / 255.0,  # float 0..1: found
        10: np.zeros((h, w, 3), np.float32),  # float, black: none
        11: face,
    }
    src = FakeSource(fps=30.0)
    now = MONOTONIC.now_ns()
    src.push(
        *(Frame(seq=i, t_capture_ns=now, image=im, source="mixed") for i, im in frames.items())
    )
    src.end()
    settings = Settings(
        PipelineConfig(budget_ms=60_000.0, policy="process-all", gc=False),
        DegradeConfig(policy="off"),
    )
    det = load_detector(ModelConfig(name="face"))
    pipe = Pipeline(src, det, settings, [MissLogOutput(ListSink())])
    found: dict[int, Detections] = {}
    lock = threading.Lock()

    def on_result(f: Frame, d: Detections, _stale: bool) -> None:
        with lock:
            found[f.seq] = d

    pipe.subscribe(on_result)
    with caplog.at_level(logging.WARNING, logger="edge.pipeline.worker"):
        summary = pipe.run()
    assert sorted(found) == [0, 1, 2, 3, 4, 8, 9, 10, 11]
    faces = {seq: len(d.scores) for seq, d in found.items()}
    assert faces == {0: 1, 1: 0, 2: 1, 3: 0, 4: 1, 8: 1, 9: 1, 10: 0, 11: 1}
    box, half = found[0].boxes[0], found[4].boxes[0]
    np.testing.assert_allclose(half, box / 2, atol=4.0)  # in the half-size frame's pixels
    assert summary.count("decode_errors") == 3 and summary.processed == 9
    assert summary.missed == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert all("cannot be decoded" in w for w in warnings)
    # once per kind, not per frame: 5 channels and 4-D are one kind (frames 5 and 7, a
    # second apart only on a machine stalled that long), the empty image another
    layout = [w for w in warnings if "unsupported image layout" in w]
    empty = [w for w in warnings if "empty image" in w]
    assert layout[0].startswith("frame 5 ") and len(layout) <= 2
    assert len(empty) == 1 and len(warnings) == len(layout) + 1
