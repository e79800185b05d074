"""The detector's three ways into a frame give the same boxes in frame pixels: a decoded image,
MJPEG bytes decoded at reduced size, and picamera2's ISP-scaled ``lores`` image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli.detect import read_image
from edge.config import ModelConfig
from edge.detector import load_detector
from edge.frame import Frame
from edge.sources.base import CameraFrame

pytestmark = pytest.mark.usefixtures("models_ready")


def run(det, frame: Frame) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The most confident face's box in frame pixels."""
    img, factor = det.decode(frame)
    t = det.preprocess(img)
    det.infer()
    d = det.postprocess(t, factor)
    assert len(d) >= 1
    return d.boxes[int(np.argmax(d.scores))].copy()  # type: ignore[no-any-return]


def test_jpeg_and_lores_paths_agree_with_the_full_image(megamind_pngs: list[Path]) -> None:
    det = load_detector(ModelConfig(name="face"))
    # 1440x1056: large enough that the reduced JPEG decode really kicks in (factor 8)
    big = cv2.resize(read_image(str(megamind_pngs[2])), (1440, 1056), interpolation=cv2.INTER_AREA)
    full = run(det, Frame(0, 0, image=big))
    ok, jpg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    img, factor = det.decode(Frame(1, 0, jpeg=jpg.tobytes()))
    assert factor == 8 and img.shape[:2] == (132, 180)
    via_jpeg = run(det, Frame(1, 0, jpeg=jpg.tobytes()))
    lores = cv2.resize(big, (360, 264), interpolation=cv2.INTER_AREA)
    via_lores = run(det, CameraFrame(2, 0, image=big, lores=lores))
    for other in (via_jpeg, via_lores):
        # the same face, within a few percent of its size of the full-resolution answer
        np.testing.assert_allclose(other, full, atol=0.05 * (full[2] - full[0]))


def test_the_interpreter_leaves_the_pad_rows_of_its_input_alone(megamind_pngs: list[Path]) -> None:
    # the detector writes the letterbox's pad rows once (keep_pad): that holds only because
    # invoke() never writes its input tensor; checked here on the real model and runtime
    det = load_detector(ModelConfig(name="face"))
    img = cv2.resize(read_image(str(megamind_pngs[2])), (320, 240), interpolation=cv2.INTER_AREA)
    first = None
    for _ in range(3):
        t = det.preprocess(img)
        det.infer()
        view = det.interpreter.input_view()
        band = det.pre._fit(320, 240)
        assert band.r0 > 0 and np.all(view[: band.r0] == -1.0) and np.all(view[band.r1 :] == -1.0)
        del view
        d = det.postprocess(t)
        first = d.boxes.copy() if first is None else first
        np.testing.assert_array_equal(d.boxes, first)
