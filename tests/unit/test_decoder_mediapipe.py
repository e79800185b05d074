from __future__ import annotations

import math

import numpy as np
import pytest

from edge.decoders.base import DecodeSpec, TensorInfo
from edge.decoders.mediapipe import MediaPipeDecoder, ssd_anchors
from edge.models import load_manifest


@pytest.mark.parametrize(
    ("name", "count"), [("face", 896), ("face-full", 2304), ("person", 2254), ("hand", 2016)]
)
def test_manifest_anchor_options_give_the_models_anchor_counts(name: str, count: int) -> None:
    spec = load_manifest().get(name)
    a = ssd_anchors(spec.decoder_params, spec.input_w, spec.input_h)
    assert a.shape == (count, 4)
    assert np.all((a[:, :2] > 0) & (a[:, :2] < 1))


def test_blazeface_anchor_layout() -> None:
    p = load_manifest().get("face").decoder_params
    a = ssd_anchors(p, 128, 128)
    # stride 8: 16x16 cells x 2 anchors, centres at (x + 0.5) / 16, row-major, anchors repeated
    assert a[0, 0] == pytest.approx(0.5 / 16) and a[1, 0] == pytest.approx(0.5 / 16)
    assert a[2, 0] == pytest.approx(1.5 / 16)
    # stride 16 layers merged: 8x8 cells x 6 anchors starting at 512
    assert a[512, 0] == pytest.approx(0.5 / 8)
    assert np.all(a[512:518, :2] == a[512, :2])


def _spec(thr: float = 0.5) -> DecodeSpec:
    p = dict(load_manifest().get("face").decoder_params)
    return DecodeSpec(128, 128, p, ("face",), score_threshold=thr, iou_threshold=0.3,
                      nms="weighted")


OUTS = [TensorInfo("regressors", (1, 896, 16), "float32"),
        TensorInfo("classificators", (1, 896, 1), "float32")]


def test_decode_places_a_box_on_its_anchor_and_merges_neighbours() -> None:
    dec = MediaPipeDecoder(OUTS, _spec())
    raw = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -10.0, np.float32)
    i = 16 * 2 * 5 + 2 * 7  # stride-8 cell (x=7, y=5), first anchor
    raw[0, i, :4] = [3.0, -2.0, 20.0, 24.0]  # dx, dy, w, h in input pixels
    raw[0, i, 4:6] = [1.0, 1.0]
    scores[0, i, 0] = 2.0
    scores[0, i + 1, 0] = 1.0  # same cell, same box: merged by weighted NMS
    raw[0, i + 1, :6] = raw[0, i, :6]
    det = dec.decode([raw, scores])
    assert len(det) == 1
    cx, cy = 7.5 * 8 + 3.0, 5.5 * 8 - 2.0
    np.testing.assert_allclose(det.boxes[0], [cx - 10, cy - 12, cx + 10, cy + 12], atol=1e-3)
    assert det.scores[0] == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert det.keypoints is not None and det.keypoints.shape == (1, 6, 2)
    np.testing.assert_allclose(det.keypoints[0, 0], [7.5 * 8 + 1, 5.5 * 8 + 1], atol=1e-3)


def test_threshold_is_applied_before_the_sigmoid_exactly() -> None:
    dec = MediaPipeDecoder(OUTS, _spec(0.5))
    raw = np.zeros((1, 896, 16), np.float32)
    raw[0, :, 2:4] = 10
    scores = np.full((1, 896, 1), -1e-3, np.float32)  # sigmoid just under 0.5
    assert len(dec.decode([raw, scores])) == 0
    scores[0, 100, 0] = 0.0  # exactly 0.5: kept, as MediaPipe's >= does
    assert len(dec.decode([raw, scores])) == 1


def test_mismatch_reasons() -> None:
    spec = _spec()
    assert MediaPipeDecoder.mismatch(OUTS, spec) is None
    wrong = [TensorInfo("a", (1, 900, 16), "float32"), TensorInfo("b", (1, 900, 1), "float32")]
    assert "896" in (MediaPipeDecoder.mismatch(wrong, spec) or "")
    assert MediaPipeDecoder.mismatch(OUTS[:1], spec) is not None
