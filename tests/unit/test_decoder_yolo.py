"""The yolo decoder on hand-built Ultralytics outputs: raw (both axis orders, float and int8,
normalised and pixels) and end2end, with boxes placed at known anchors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edge.errors import ConfigError, ModelInvalid
from edge.heads.base import DecodeSpec, TensorInfo
from edge.heads.yolo import YOLODecoder, anchor_count

W = H = 320
C = 3
N = 2100  # anchors of a 320x320 head: 40*40 + 20*20 + 10*10
LABELS = ("cat", "dog", "bird")

# anchor, (cx, cy, w, h) in pixels, class, score
PLACED = [
    (10, (100, 80, 40, 60), 1, 0.90),  # -> 80, 50, 120, 110
    (20, (104, 82, 40, 60), 1, 0.70),  # same class, IoU ~0.76 with the first: suppressed
    (30, (102, 80, 40, 60), 2, 0.80),  # overlaps but another class: kept (class-aware)
    (2000, (300, 20, 60, 50), 0, 0.60),  # -> 270, -5, 330, 45: clipped to 270, 0, 320, 45
    (40, (200, 200, 30, 30), 0, 0.40),  # below the 0.5 threshold
]
WANT_BOXES = [[80, 50, 120, 110], [82, 50, 122, 110], [270, 0, 320, 45]]
WANT_SCORES = [0.9, 0.8, 0.6]
WANT_CLASSES = [1, 2, 0]


def raw(normalized: bool, anchors_last: bool = True) -> np.ndarray:
    """(1, 4+C, N) like Ultralytics' TFLite export (or its transpose)."""
    rng = np.random.default_rng(1)
    t = np.zeros((4 + C, N), np.float32)
    t[:2] = rng.uniform(0, W, (2, N))  # background anchors: boxes everywhere, low scores
    t[2:4] = rng.uniform(8, 64, (2, N))
    t[4:] = rng.uniform(0, 0.2, (C, N))
    for a, box, c, s in PLACED:
        t[:4, a] = box
        t[4:, a] = 0.05
        t[4 + c, a] = s
    if normalized:
        t[:4] /= W
    return (t if anchors_last else t.T)[None].copy()


def spec(max_det: int = 100, nms: str = "greedy", **params) -> DecodeSpec:
    return DecodeSpec(W, H, params, LABELS, 0.5, 0.5, max_det, nms)


def decode(tensor: np.ndarray, nms: str = "greedy", **params):
    info = [TensorInfo("Identity", tensor.shape, "float32", 0)]
    assert YOLODecoder.mismatch(info, spec(nms=nms, **params)) is None
    return YOLODecoder(info, spec(nms=nms, **params)).decode([tensor])


def check(dets, boxes=WANT_BOXES, scores=WANT_SCORES, classes=WANT_CLASSES, atol=1e-3):
    assert dets.boxes.dtype == np.float32 and dets.scores.dtype == np.float32
    assert dets.class_ids.dtype == np.int32 and dets.keypoints is None
    np.testing.assert_allclose(dets.boxes, np.array(boxes, np.float32).reshape(-1, 4), atol=atol)
    np.testing.assert_allclose(dets.scores, scores, atol=max(atol / W, 1e-6) * 4)
    assert dets.class_ids.tolist() == classes
    assert tuple(dets.labels) == LABELS


def test_anchor_count() -> None:
    assert anchor_count(640, 640) == 8400
    assert anchor_count(320, 320) == N
    assert anchor_count(640, 480) == 80 * 60 + 40 * 30 + 20 * 15


@pytest.mark.parametrize("anchors_last", [True, False])
@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("param", ["auto", "explicit"])
def test_raw_float(anchors_last: bool, normalized: bool, param: str) -> None:
    params = {} if param == "auto" else {"normalized": normalized}
    check(decode(raw(normalized, anchors_last), **params))


def test_raw_int8_dequantized_like_the_runtime() -> None:
    """Ultralytics' int8 TFLite has one scale for the whole output: quantise, then dequantise
    as the runtime does ((q - zero_point) * scale) and decode."""
    x = raw(normalized=True)
    scale = float(x.max() - x.min()) / 255.0
    zero_point = int(round(-128 - float(x.min()) / scale))
    q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    deq = (q.astype(np.float32) - zero_point) * np.float32(scale)
    assert not np.array_equal(deq, x)  # the test really goes through quantisation error
    # a box corner moves by up to ~1 quantisation step of cx and of w/2, times 320 pixels
    check(decode(deq), atol=2 * scale * W)


def test_agnostic_top_k_and_max_detections() -> None:
    x = raw(normalized=True)
    # class-agnostic: the other-class overlap (0.8) is suppressed by the 0.9 box
    check(decode(x, agnostic=True), [WANT_BOXES[0], WANT_BOXES[2]], [0.9, 0.6], [1, 0])
    # top_k caps candidates before NMS: the best 2 are 0.9 and 0.8
    check(decode(x, top_k=2), WANT_BOXES[:2], [0.9, 0.8], [1, 2])
    info = [TensorInfo("Identity", x.shape, "float32", 0)]
    dets = YOLODecoder(info, spec(max_det=1)).decode([x])
    check(dets, WANT_BOXES[:1], [0.9], [1])


def test_weighted_nms_merges_within_a_class() -> None:
    # the 0.9 and 0.7 class-1 boxes merge 0.9 : 0.7, e.g. x1 = (0.9 * 80 + 0.7 * 84) / 1.6
    merged = [81.75, 50.875, 121.75, 110.875]
    check(decode(raw(normalized=True), nms="weighted"), [merged, *WANT_BOXES[1:]], atol=1e-3)
    info = [TensorInfo("Identity", (1, 4 + C, N), "float32", 0)]
    with pytest.raises(ConfigError, match="nms kind"):
        YOLODecoder(info, spec(nms="soft"))
    with pytest.raises(ConfigError, match="agnostic"):
        YOLODecoder(info, spec(nms="weighted", agnostic=True))


def test_raw_nothing_above_threshold() -> None:
    x = raw(normalized=True)
    x[0, 4:] = 0.1
    dets = decode(x)
    assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.class_ids.dtype == np.int32


def end2end(normalized: bool, n: int = 300) -> np.ndarray:
    t = np.zeros((n, 6), np.float32)  # padding rows are zero
    t[0] = [270, -5, 330, 45, 0.6, 0]
    t[1] = [80, 50, 120, 110, 0.9, 1]
    t[2] = [82, 50, 122, 110, 0.8, 2]
    t[3] = [10, 10, 20, 20, 0.3, 1]  # below threshold
    if normalized:
        t[:, :4] /= W
    return t[None]


@pytest.mark.parametrize("normalized", [True, False])
def test_end2end(normalized: bool) -> None:
    check(decode(end2end(normalized)))  # sorted by score, clipped, no NMS needed
    check(decode(end2end(normalized), normalized=normalized))


def test_six_columns_layout_rule() -> None:
    # (1, N, 6) with N = the head's anchor count is raw with 2 classes under "auto"
    rng = np.random.default_rng(5)
    t = np.zeros((1, N, 6), np.float32)
    t[0, :, :4] = rng.uniform(10, 300, (N, 4))
    t[0, 7] = [100, 80, 40, 60, 0.1, 0.95]
    dets = decode(t)
    check(dets, [[80, 50, 120, 110]], [0.95], [1])
    # forced end2end, the same tensor reads as x1, y1, x2, y2, score, class rows: column 4
    # (class 0's scores, all < 0.5) is the score, so nothing passes
    assert len(decode(t, layout="end2end", normalized=False)) == 0
    # channels-first (1, 6, N) is always raw
    check(decode(np.ascontiguousarray(t.transpose(0, 2, 1))), [[80, 50, 120, 110]], [0.95], [1])


@pytest.mark.parametrize(
    ("shapes", "params", "match"),
    [
        ([(1, 896, 16), (1, 896, 1)], {}, "expected 1 output"),  # MediaPipe BlazeFace
        ([(1, 10, 4), (1, 10), (1, 10), (1,)], {}, "expected 1 output"),  # SSD post-process
        ([(84, 8400)], {}, "expected a \\(1, 4\\+C, N\\)"),
        ([(2, 84, 8400)], {}, "expected a \\(1, 4\\+C, N\\)"),
        ([(1, 4, 8400)], {}, "C >= 1"),
        ([(1, 50, 50)], {}, "far more"),
        ([(1, 84, 8400)], {"layout": "end2end"}, "end2end \\(1, N, 6\\)"),
        ([(1, 84, 8400)], {"normalized": "maybe"}, "bad decoder parameter.*normalized"),
        ([(1, 84, 8400)], {"layout": "nms"}, "bad decoder parameter.*layout"),
    ],
)
def test_mismatch_reasons(shapes, params, match: str) -> None:
    infos = [TensorInfo(f"t{i}", s, "float32", i) for i, s in enumerate(shapes)]
    reason = YOLODecoder.mismatch(infos, spec(**params))
    assert reason is not None and re.search(match, reason), reason
    with pytest.raises((ModelInvalid, ConfigError)):
        YOLODecoder(infos, spec(**params))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"normalized": 1}, "normalized"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"agnostic": "yes"}, "agnostic"),
    ],
)
def test_bad_params_are_config_errors(params, match: str) -> None:
    info = [TensorInfo("Identity", (1, 4 + C, N), "float32", 0)]
    with pytest.raises(ConfigError, match=match):
        YOLODecoder(info, spec(**params))


def test_string_booleans_accepted() -> None:
    check(decode(raw(normalized=True), normalized="true"))
    check(decode(raw(normalized=False), normalized="False"))
