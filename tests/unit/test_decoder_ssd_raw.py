"""The ssd-raw decoder (TF Object Detection API SSD outputs before post-processing) on
hand-built tensors: box coder, background column, sigmoid, NMS at the graph's IoU, mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.heads import build_decoder
from edge.heads.base import DecodeSpec, TensorInfo
from edge.heads.ssd_raw import SSDRawDecoder, tf_ssd_anchors
from edge.models import load_manifest
from edge.preprocess import Transform

PARAMS = dict(load_manifest().get("person").decoder_params)
N = 1917
OUTS = [TensorInfo("concat", (1, N, 1, 4), "float32", 0), TensorInfo("concat_1", (1, N, 2), "f", 1)]


def spec(thr: float = 0.5, iou: float = 0.6) -> DecodeSpec:
    return DecodeSpec(300, 300, PARAMS, ("person",), score_threshold=thr, iou_threshold=iou)


def blank() -> tuple[np.ndarray, np.ndarray]:
    enc = np.zeros((1, N, 1, 4), np.float32)
    logits = np.full((1, N, 2), -8.0, np.float32)  # nobody, anywhere
    return enc, logits


def encode(box: tuple[float, float, float, float], anchor: np.ndarray) -> list[float]:
    """The inverse of FasterRcnnBoxCoder.decode (scales 10, 10, 5, 5): box and anchor as
    [ymin, xmin, ymax, xmax] normalised."""
    ya, xa = (anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2
    ha, wa = anchor[2] - anchor[0], anchor[3] - anchor[1]
    y, x = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    h, w = box[2] - box[0], box[3] - box[1]
    return [10 * (y - ya) / ha, 10 * (x - xa) / wa, 5 * math.log(h / ha), 5 * math.log(w / wa)]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_anchor_options_give_the_ssdlite_layout() -> None:
    a = tf_ssd_anchors(PARAMS)
    assert a.shape == (N, 4)
    # 19x19 cells x 3 boxes (reduced lowest layer), then 10x10, 5x5, 3x3, 2x2, 1x1 x 6 boxes
    assert 19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6 == N
    # first cell of the first layer: centre 0.5/19, the 0.1 box (aspect 1) first
    c = 0.5 / 19
    np.testing.assert_allclose(a[0], [c - 0.05, c - 0.05, c + 0.05, c + 0.05], atol=1e-7)
    # the last anchor: the single 1x1 cell, interpolated scale sqrt(0.95 * 1.0), aspect 1
    s = math.sqrt(0.95)
    lo, hi = 0.5 - s / 2, 0.5 + s / 2
    np.testing.assert_allclose(a[-1], [lo, lo, hi, hi], atol=1e-6)


def test_decodes_the_box_coder_and_sigmoid() -> None:
    d = build_decoder(OUTS, spec())
    assert isinstance(d, SSDRawDecoder)  # picked from the outputs and the options
    anchors = tf_ssd_anchors(PARAMS)
    enc, logits = blank()
    k = 1200
    want = (0.2, 0.3, 0.8, 0.5)  # ymin, xmin, ymax, xmax
    enc[0, k, 0] = encode(want, anchors[k])
    logits[0, k] = [-3.0, logit(0.9)]
    det = d.decode([enc, logits])
    assert len(det) == 1 and det.class_ids.tolist() == [0]
    np.testing.assert_allclose(det.boxes[0], [90, 60, 150, 240], atol=1e-3)  # x1 y1 x2 y2 px
    assert det.scores[0] == pytest.approx(0.9, abs=1e-6)


def test_background_column_is_ignored_and_threshold_applies() -> None:
    d = SSDRawDecoder(OUTS, spec(thr=0.5))
    enc, logits = blank()
    logits[0, 10] = [9.0, logit(0.4)]  # confident background, person below the threshold
    logits[0, 20] = [9.0, logit(0.6)]  # background high too, but the person passes: kept
    det = d.decode([enc, logits])
    assert len(det) == 1 and det.scores[0] == pytest.approx(0.6, abs=1e-6)


def test_greedy_nms_at_the_graphs_iou() -> None:
    d = SSDRawDecoder(OUTS, spec(iou=0.6))
    anchors = tf_ssd_anchors(PARAMS)
    enc, logits = blank()
    a = (0.2, 0.2, 0.6, 0.6)
    over = (0.2, 0.25, 0.6, 0.65)  # IoU 0.8 / 1.2 = 0.78 with a: suppressed
    apart = (0.2, 0.4, 0.6, 0.8)  # IoU 0.2 / 0.6 = 0.33: kept
    for k, box, p in ((1300, a, 0.9), (1301, over, 0.8), (1500, apart, 0.7)):
        enc[0, k, 0] = encode(box, anchors[k])
        logits[0, k, 1] = logit(p)
    det = d.decode([enc, logits])
    assert det.scores.tolist() == pytest.approx([0.9, 0.7], abs=1e-6)
    # boxes are clipped to the image after NMS (the graph's ClipToWindow)
    enc, logits = blank()
    enc[0, 1300, 0] = encode((-0.1, 0.5, 0.4, 1.2), anchors[1300])
    logits[0, 1300, 1] = 3.0
    np.testing.assert_allclose(d.decode([enc, logits]).boxes[0], [150, 0, 300, 120], atol=1e-3)


def test_mapped_to_frame_pixels_by_the_stretch() -> None:
    d = SSDRawDecoder(OUTS, spec())
    anchors = tf_ssd_anchors(PARAMS)
    enc, logits = blank()
    for k in (400, 900, 1700):
        enc[0, k, 0] = encode((0.1, 0.1, 0.7, 0.4), anchors[k]) if k != 900 else [0, 0, 0, 0]
        logits[0, k, 1] = 2.0
    plain = d.decode([enc.copy(), logits])
    t = Transform(300 / 768, 300 / 576, 0.0, 0.0, 768, 576)  # what stretch-tf gives
    mapped = d.decode_mapped([enc.copy(), logits], t)
    want = t.boxes_to_frame(plain.boxes.copy())
    np.testing.assert_allclose(mapped.boxes, want, atol=1e-3)
    np.testing.assert_allclose(mapped.scores, plain.scores)
    # the raw outputs are the interpreter's: decoding must not write them
    enc2 = enc.copy()
    d.decode_mapped([enc2, logits], t)
    assert np.array_equal(enc2, enc)


def test_mismatches_say_why() -> None:
    assert "2 outputs" in (SSDRawDecoder.mismatch(OUTS[:1], spec()) or "")
    few = [TensorInfo("b", (1, 100, 4), "f", 0), TensorInfo("c", (1, 100, 2), "f", 1)]
    assert "1917 anchors, the model has 100" in (SSDRawDecoder.mismatch(few, spec()) or "")
    no_opts = DecodeSpec(300, 300, {}, ("person",))
    assert "anchor options" in (SSDRawDecoder.mismatch(OUTS, no_opts) or "")
