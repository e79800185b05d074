from __future__ import annotations

import math

import numpy as np
import pytest

from edge.frame import Detections
from edge.heads.base import DecodeSpec, TensorInfo
from edge.heads.mediapipe import MediaPipeDecoder, _clip_is_moot, ssd_anchors
from edge.models import load_manifest
from edge.preprocess import Transform


@pytest.mark.parametrize(
    ("name", "count"), [("face", 896), ("face-full", 2304), ("pose", 2254), ("hand", 2016)]
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


def face_tensors(rng: np.random.Generator, n_faces: int, per_face: int = 6):
    """Raw outputs with ``n_faces`` faces, each found by ``per_face`` neighbouring anchors."""
    raw = rng.normal(0, 2, (1, 896, 16)).astype(np.float32)
    logits = np.full((1, 896, 1), -8.0, np.float32)
    for _ in range(n_faces):
        first = int(rng.integers(0, 896 - per_face))
        a = slice(first, first + per_face)
        raw[0, a, 2:4] = rng.uniform(15, 40, 2) + rng.normal(0, 0.5, (per_face, 2))
        logits[0, a, 0] = rng.uniform(0.1, 4.0, per_face)
    return [raw, logits]


@pytest.mark.parametrize("n_faces", [0, 1, 3])
@pytest.mark.parametrize("fit", [(640, 480, "letterbox"), (300, 500, "letterbox"),
                                 (640, 360, "stretch")])
def test_decode_mapped_is_decode_then_mapped(n_faces: int, fit: tuple[int, int, str]) -> None:
    # the mapping folded into the decoder's linear plan gives what decoding in input pixels and
    # mapping afterwards gives (boxes clipped to the frame), up to float rounding
    dec = MediaPipeDecoder(OUTS, _spec())
    t = Transform.fit(fit[0], fit[1], 128, 128, fit[2])
    rng = np.random.default_rng(n_faces)
    for per_face in (1, 6):
        tensors = face_tensors(rng, n_faces, per_face)
        want = dec.decode(tensors)
        want = Detections(want.boxes.copy(), want.scores, want.class_ids,
                          None if want.keypoints is None else want.keypoints.copy())
        if len(want):
            t.boxes_to_frame(want.boxes)
            t.points_to_frame(want.keypoints)
        got = dec.decode_mapped(tensors, t)
        assert len(got) == len(want) and (n_faces == 0) == (len(got) == 0)
        np.testing.assert_allclose(got.boxes, want.boxes, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(got.keypoints, want.keypoints, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(got.scores, want.scores)
        assert got.boxes.dtype == got.scores.dtype == np.float32
        assert np.all(got.boxes >= 0) and np.all(got.boxes[:, 2] <= fit[0])
        assert got.class_ids.tolist() == [0] * len(got)


def test_no_candidate_is_one_shared_read_only_answer() -> None:
    dec = MediaPipeDecoder(OUTS, _spec())
    tensors = [np.zeros((1, 896, 16), np.float32), np.full((1, 896, 1), -5.0, np.float32)]
    a = dec.decode(tensors)
    b = dec.decode_mapped(tensors, Transform.fit(640, 480, 128, 128, "letterbox"))
    assert a is b and len(a) == 0
    assert a.boxes.shape == (0, 4) and a.keypoints is not None and a.keypoints.shape == (0, 6, 2)
    with pytest.raises(ValueError, match="read-only"):
        a.boxes[...] = 1


def test_mapped_plan_is_made_once_per_transform() -> None:
    dec = MediaPipeDecoder(OUTS, _spec())
    tensors = face_tensors(np.random.default_rng(1), 1)
    t = Transform.fit(640, 480, 128, 128, "letterbox")
    dec.decode_mapped(tensors, t)
    plan = dec._mapped
    dec.decode_mapped(tensors, t)
    assert dec._mapped is plan
    other = Transform.fit(1280, 720, 128, 128, "letterbox")
    got = dec.decode_mapped(tensors, other)
    assert dec._mapped is not plan and np.all(got.boxes[:, 2] <= 1280)


def test_keypoint_boxes_are_made_in_input_pixels_then_mapped() -> None:
    # the pose model's box is a circle around keypoint 0 through keypoint 1: not linear in
    # the stretch mapping, so decode_mapped maps the finished box, as decode + map does
    p = dict(load_manifest().get("face").decoder_params, box_from_keypoints=[0, 1])
    spec = DecodeSpec(128, 128, p, ("person",), score_threshold=0.5, iou_threshold=0.3)
    dec = MediaPipeDecoder(OUTS, spec)
    tensors = face_tensors(np.random.default_rng(4), 2)
    t = Transform.fit(640, 360, 128, 128, "stretch")
    want = dec.decode(tensors)
    boxes = t.boxes_to_frame(want.boxes.copy())
    got = dec.decode_mapped(tensors, t)
    np.testing.assert_array_equal(got.boxes, boxes)


def test_score_clipping_is_skipped_only_where_it_changes_nothing() -> None:
    assert _clip_is_moot(100.0, 0.0)  # BlazeFace: sigmoid(100) is 1.0 in float32
    assert not _clip_is_moot(100.0, -math.inf)  # threshold 0 lets logits below -100 in
    assert not _clip_is_moot(5.0, 0.0)  # sigmoid(5) < 1: clipping at 5 changes scores
    raw = np.zeros((1, 896, 16), np.float32)
    raw[0, :, 2:4] = 10
    logits = np.full((1, 896, 1), -20.0, np.float32)
    logits[0, 7, 0] = 150.0
    for clip, want in ((100.0, 1.0), (5.0, 1 / (1 + math.exp(-5.0)))):
        spec = _spec()
        spec = DecodeSpec(128, 128, dict(spec.params, score_clipping_thresh=clip), ("face",),
                          score_threshold=0.5, iou_threshold=0.3, nms="weighted")
        det = MediaPipeDecoder(OUTS, spec).decode([raw, logits])
        assert len(det) == 1 and det.scores[0] == pytest.approx(want, rel=1e-6)
