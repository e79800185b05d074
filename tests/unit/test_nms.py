"""edge.nms: greedy NMS against a pure-Python OpenCV reference and properties; weighted NMS
against hand-computed cases and a line-by-line transliteration of MediaPipe's loop."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.nms import greedy_nms, weighted_nms, weighted_nms_packed, weighted_nms_rows

# ---------------------------------------------------------------- references (pure Python)


def cv_iou(a: list[float], b: list[float]) -> float:
    """OpenCV's ``1 - jaccardDistance`` on x1, y1, x2, y2 (negative sizes clipped to 0)."""
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    if area_a + area_b <= np.finfo(np.float64).eps:
        return 1.0
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    return inter / (area_a + area_b - inter)


def ref_greedy(boxes, scores, thr, score_thr=0.0, classes=None, top_k=0, max_det=0):
    n = len(scores)
    classes = [0] * n if classes is None else list(classes)
    cand = sorted((i for i in range(n) if scores[i] > score_thr), key=lambda i: -scores[i])
    if top_k > 0:
        cand = cand[:top_k]
    kept: list[int] = []
    for i in cand:
        if all(classes[i] != classes[k] or cv_iou(boxes[i], boxes[k]) <= thr for k in kept):
            kept.append(i)
    return kept[:max_det] if max_det > 0 else kept


def mp_iou(a: list[float], b: list[float]) -> float:
    """MediaPipe OverlapSimilarity(INTERSECTION_OVER_UNION) on Rectangle_f."""
    if a[0] > a[2] or a[1] > a[3] or b[0] > b[2] or b[1] > b[3]:
        return 0.0  # IsEmpty
    if b[2] < a[0] or a[2] < b[0] or b[3] < a[1] or a[3] < b[1]:
        return 0.0
    inter = (min(a[2], b[2]) - max(a[0], b[0])) * (min(a[3], b[3]) - max(a[1], b[1]))
    norm = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / norm if norm > 0 else 0.0


def ref_weighted(boxes, scores, kps, thr):
    """WeightedNonMaxSuppression, transliterated (stable sort for ties)."""
    remained = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    while remained:
        top = remained[0]
        cand = [i for i in remained if mp_iou(boxes[i], boxes[top]) > thr]
        rest = [i for i in remained if mp_iou(boxes[i], boxes[top]) <= thr]
        box, kp = list(boxes[top]), [list(p) for p in kps[top]]
        if cand:
            total = sum(scores[i] for i in cand)
            box = [sum(boxes[i][c] * scores[i] for i in cand) / total for c in range(4)]
            kp = [
                [sum(kps[i][k][c] * scores[i] for i in cand) / total for c in range(2)]
                for k in range(len(kps[top]))
            ]
        out.append((box, scores[top], kp))
        if len(rest) == len(remained):
            break
        remained = rest
    return out


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(-50, 100, size=(n, 2))
    wh = rng.uniform(1, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


# ---------------------------------------------------------------- greedy: reference


@pytest.mark.parametrize("classes", [False, True])
def test_greedy_matches_reference_on_random_inputs(classes: bool) -> None:
    rng = np.random.default_rng(7)
    for _ in range(120):
        n = int(rng.integers(1, 40))
        boxes = random_boxes(rng, n)
        # coarse scores make ties common: ties must keep input order, as OpenCV's stable_sort
        scores = (rng.integers(1, 11, n) / 10).astype(np.float32)
        cls = rng.integers(0, 3, n) if classes else None
        thr = float(rng.choice([0.1, 0.3, 0.45, 0.7]))
        top_k = int(rng.choice([0, 5]))
        got = greedy_nms(
            boxes, scores, thr, score_threshold=0.15, class_ids=cls, top_k=top_k, max_detections=0
        )
        want = ref_greedy(boxes.tolist(), scores.tolist(), thr, 0.15, cls, top_k)
        assert got.dtype == np.intp
        assert got.tolist() == want


def test_class_fallback_without_nmsboxesbatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV < 4.7 (JetPack) lacks NMSBoxesBatched; the offset fallback must agree."""
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(40):
        n = int(rng.integers(1, 30))
        cases.append((random_boxes(rng, n), rng.uniform(0, 1, n), rng.integers(-1, 4, n)))
    before = [greedy_nms(b, s, 0.4, class_ids=c).tolist() for b, s, c in cases]
    if hasattr(cv2.dnn, "NMSBoxesBatched"):
        monkeypatch.delattr(cv2.dnn, "NMSBoxesBatched")
    after = [greedy_nms(b, s, 0.4, class_ids=c).tolist() for b, s, c in cases]
    assert after == before
    want = [ref_greedy(b.tolist(), s.tolist(), 0.4, 0.0, c.tolist()) for b, s, c in cases]
    assert after == want


# ---------------------------------------------------------------- greedy: properties

box_st = st.tuples(
    st.integers(-100, 100), st.integers(-100, 100), st.integers(1, 60), st.integers(1, 60)
)
det_st = st.lists(
    st.tuples(box_st, st.floats(0.015625, 1.0, width=32), st.integers(0, 3)), max_size=30
)


def unpack(dets):
    boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _, _ in dets], float).reshape(-1, 4)
    scores = np.array([s for _, s, _ in dets], np.float32)
    classes = np.array([c for _, _, c in dets], np.int32)
    return boxes, scores, classes


@settings(max_examples=150, deadline=None)
@given(dets=det_st, thr=st.floats(0.05, 0.95), aware=st.booleans())
def test_greedy_properties(dets, thr: float, aware: bool) -> None:
    boxes, scores, classes = unpack(dets)
    cls = classes if aware else np.zeros_like(classes)
    keep = greedy_nms(boxes, scores, thr, class_ids=cls if aware else None, max_detections=0)
    kept = keep.tolist()
    assert len(set(kept)) == len(kept) and all(0 <= i < len(scores) for i in kept)
    assert all(scores[a] >= scores[b] for a, b in zip(kept[:-1], kept[1:], strict=True))
    for i, a in enumerate(kept):  # kept boxes never overlap too much within a class
        for b in kept[i + 1 :]:
            if cls[a] == cls[b]:
                assert cv_iou(boxes[a].tolist(), boxes[b].tolist()) <= thr + 1e-6
    for j in set(range(len(scores))) - set(kept):  # and every dropped box was suppressed
        assert any(
            cls[k] == cls[j]
            and scores[k] >= scores[j]
            and cv_iou(boxes[k].tolist(), boxes[j].tolist()) > thr - 1e-6
            for k in kept
        )
    # idempotent: the survivors all survive a second pass
    again = greedy_nms(boxes[keep], scores[keep], thr, class_ids=cls[keep], max_detections=0)
    assert sorted(again.tolist()) == list(range(len(kept)))
    # scale invariant (powers of two keep the arithmetic exact)
    for f in (4.0, 0.25):
        scaled = greedy_nms(boxes * f, scores, thr, class_ids=cls if aware else None)
        assert scaled.tolist() == kept[:100]


@settings(max_examples=60, deadline=None)
@given(dets=det_st, thr=st.floats(0.05, 0.95))
def test_class_aware_is_union_of_per_class_runs(dets, thr: float) -> None:
    boxes, scores, classes = unpack(dets)
    got = greedy_nms(boxes, scores, thr, class_ids=classes, max_detections=0).tolist()
    union: list[int] = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        union += idx[greedy_nms(boxes[idx], scores[idx], thr, max_detections=0)].tolist()
    union.sort(key=lambda i: (-scores[i], i))
    assert got == union


def test_greedy_empty_and_caps() -> None:
    for cls in (None, np.zeros(0, np.int32)):
        keep = greedy_nms(np.zeros((0, 4)), np.zeros(0), 0.5, class_ids=cls)
        assert keep.dtype == np.intp and keep.shape == (0,)
    assert greedy_nms([], [], 0.5).shape == (0,)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [80, 80, 90, 90]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert greedy_nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert greedy_nms(boxes, scores, 0.5, max_detections=2).tolist() == [0, 2]
    # top_k caps the candidates *before* suppression, as OpenCV does: 1 suppresses nothing new
    assert greedy_nms(boxes, scores, 0.5, top_k=2).tolist() == [0]
    # score threshold is strict
    assert greedy_nms(boxes, scores, 0.5, score_threshold=0.7).tolist() == [0]


def test_greedy_degenerate_boxes() -> None:
    # two zero-size boxes: areas sum to 0, OpenCV calls that IoU 1 -> one suppresses the other
    same = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], float)
    assert greedy_nms(same, [0.9, 0.8], 0.5).tolist() == [0]
    # an inverted box counts as zero-size: IoU 0 against a real box, so both stay
    mixed = np.array([[10, 10, 0, 0], [0, 0, 10, 10]], float)
    assert greedy_nms(mixed, [0.9, 0.8], 0.5).tolist() == [0, 1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"iou_threshold": 1.5},
        {"iou_threshold": -0.1},
        {"iou_threshold": 0.5, "score_threshold": -1},
    ],
)
def test_greedy_rejects_bad_arguments(kwargs) -> None:
    with pytest.raises(ValueError, match="expected"):
        greedy_nms(np.zeros((1, 4)), [0.5], **kwargs)


def test_greedy_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected boxes \(N, 4\)"):
        greedy_nms(np.zeros((3, 5)), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="class_ids"):
        greedy_nms(np.zeros((3, 4)), np.ones(3), 0.5, class_ids=[0, 1])


# ---------------------------------------------------------------- weighted


def test_weighted_hand_computed() -> None:
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8, 0.6], np.float32)
    kps = np.array([[[2, 2], [8, 3]], [[55, 55], [56, 56]], [[4, 4], [9, 5]]], np.float32)
    # IoU(box0, box2) = 81 / 119 = 0.68 > 0.3: one cluster weighted 0.9 : 0.6
    b, s, k = weighted_nms(boxes, scores, kps, 0.3)
    assert b.dtype == s.dtype == np.float32 and k is not None and k.dtype == np.float32
    np.testing.assert_allclose(b, [[0.4, 0.4, 10.4, 10.4], [50, 50, 60, 60]], rtol=1e-6)
    np.testing.assert_allclose(s, [0.9, 0.8])
    np.testing.assert_allclose(k, [[[2.8, 2.8], [8.4, 3.8]], [[55, 55], [56, 56]]], rtol=1e-6)
    # above the pair's IoU nothing merges
    b, s, k = weighted_nms(boxes, scores, None, 0.7)
    np.testing.assert_array_equal(b, boxes[[0, 1, 2]])
    assert k is None


def test_weighted_threshold_is_strict() -> None:
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1]], np.float32)  # IoU exactly 2 / 4
    assert len(weighted_nms(boxes, [0.9, 0.8], None, 0.5)[0]) == 2
    assert len(weighted_nms(boxes, [0.9, 0.8], None, 0.49)[0]) == 1


def test_weighted_degenerate_and_touching() -> None:
    # touching boxes intersect with area 0: IoU 0, two outputs
    touching = np.array([[0, 0, 1, 1], [1, 0, 2, 1]], np.float32)
    assert len(weighted_nms(touching, [0.9, 0.8], None, 0.0)[0]) == 2
    # a zero-size best box has IoU 0 with itself: MediaPipe emits it and stops there
    for first in ([5, 5, 5, 5], [9, 9, 1, 1]):  # zero-size, inverted
        boxes = np.array([first, [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
        b, s, _ = weighted_nms(boxes, [0.9, 0.8, 0.7], None, 0.3)
        np.testing.assert_array_equal(b, [first])
        np.testing.assert_allclose(s, [0.9])


def test_weighted_empty_and_max_detections() -> None:
    b, s, k = weighted_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2)), 0.3)
    assert b.shape == (0, 4) and s.shape == (0,) and k is not None and k.shape == (0, 6, 2)
    far = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21]], np.float32)
    b, s, _ = weighted_nms(far, [0.5, 0.9, 0.7], None, 0.3, max_detections=2)
    np.testing.assert_allclose(s, [0.9, 0.7])
    np.testing.assert_array_equal(b, far[[1, 2]])
    with pytest.raises(ValueError, match="keypoints"):
        weighted_nms(far, [0.5, 0.9, 0.7], np.zeros((3, 2)), 0.3)


def test_weighted_matches_transliteration_on_random_inputs() -> None:
    rng = np.random.default_rng(11)
    for _ in range(80):
        n = int(rng.integers(1, 25))
        # clustered boxes, as a face detector's anchors produce
        centres = rng.uniform(0, 100, size=(3, 2))[rng.integers(0, 3, n)]
        xy = centres + rng.normal(0, 3, size=(n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 20, size=(n, 2))], axis=1)
        scores = rng.uniform(0.5, 1.0, n).astype(np.float32)
        kps = rng.uniform(0, 100, size=(n, 3, 2))
        thr = float(rng.choice([0.2, 0.3, 0.5]))
        b, s, k = weighted_nms(boxes, scores, kps, thr)
        want = ref_weighted(boxes.tolist(), scores.tolist(), kps.tolist(), thr)
        assert len(b) == len(want)
        np.testing.assert_allclose(b, [w[0] for w in want], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(s, [w[1] for w in want], rtol=1e-6)
        np.testing.assert_allclose(k, [w[2] for w in want], rtol=1e-5, atol=1e-4)


@settings(max_examples=100, deadline=None)
@given(dets=det_st, thr=st.floats(0.05, 0.95))
def test_weighted_properties(dets, thr: float) -> None:
    boxes, scores, _ = unpack(dets)
    b, s, _ = weighted_nms(boxes, scores, None, thr)
    assert len(b) <= len(scores)
    assert all(x >= y for x, y in zip(s.tolist()[:-1], s.tolist()[1:], strict=True))
    assert set(s.tolist()) <= set(scores.tolist())
    if len(b):  # weighted means stay inside the inputs' range, coordinate by coordinate
        assert np.all(b >= boxes.min(axis=0) - 1e-3) and np.all(b <= boxes.max(axis=0) + 1e-3)
    b4, s4, _ = weighted_nms(boxes * 4, scores, None, thr)
    np.testing.assert_allclose(b4, b * 4, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(s4, s)


# ---------------------------------------------------------------- weighted: the hot path's cases


def packed_rows(boxes: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """[x1, y1, x2, y2, k0x, k0y, ..., 1] float32, the layout weighted_nms_rows takes."""
    n = boxes.shape[0]
    flat = kps.reshape(n, kps.shape[1] * kps.shape[2])
    return np.concatenate([boxes, flat, np.ones((n, 1))], axis=1).astype(np.float32)


def run_rows(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, thr: float, max_det: int = -1):
    rows = packed_rows(boxes, kps)
    s = np.asarray(scores, np.float32).copy()
    corners = np.full((2, len(s), 4), np.nan, np.float32)  # scratch: any content
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0, no overflow: the hot path stays silent
        return weighted_nms_rows(rows, s, corners, thr, max_det)


def test_rows_no_candidate_and_one_candidate() -> None:
    out, s = run_rows(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 2, 2)), 0.3)
    assert out.shape == (0, 8) and s.shape == (0,) and out.dtype == s.dtype == np.float32
    # one candidate: its own cluster, returned exactly (also a zero-size or inverted box)
    for box in ([1.5, 2.25, 30.125, 40.0], [5, 5, 5, 5], [9, 9, 1, 1]):
        kps = np.array([[[3.0, 4.0], [7.5, 8.25]]])
        rows = packed_rows(np.array([box], float), kps)
        out, s = weighted_nms_rows(rows, np.array([0.7], np.float32), np.empty((2, 1, 4)), 0.3)
        np.testing.assert_array_equal(out, rows[:, :-1])
        assert s.tolist() == [np.float32(0.7)]
        out[:] = -1  # a copy: the caller's buffers are not the result
        assert rows[0, 0] == np.float32(box[0])


def test_rows_one_cluster_takes_the_fast_path_and_matches_mediapipe() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        n = int(rng.integers(2, 12))
        xy = rng.uniform(20, 80) + rng.normal(0, 0.8, size=(n, 2))  # one face, jittered anchors
        boxes = np.concatenate([xy, xy + 30 + rng.normal(0, 0.8, size=(n, 2))], axis=1)
        scores = rng.uniform(0.5, 1.0, n).astype(np.float32)
        kps = rng.uniform(0, 100, size=(n, 2, 2))
        out, s = run_rows(boxes, scores, kps, 0.3)
        want = ref_weighted(boxes.tolist(), scores.tolist(), kps.tolist(), 0.3)
        assert len(want) == 1 and out.shape == (1, 8)
        np.testing.assert_allclose(out[0, :4], want[0][0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(out[0, 4:], np.ravel(want[0][2]), rtol=1e-5, atol=1e-4)
        assert s[0] == scores.max()


def test_rows_several_clusters_lone_last_box_and_cap() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [51, 50, 61, 60], [90, 0, 99, 9]],
        float,
    )
    scores = np.array([0.6, 0.9, 0.8, 0.5, 0.7], np.float32)
    kps = np.zeros((5, 2, 2))
    out, s = run_rows(boxes, scores, kps, 0.3)
    np.testing.assert_allclose(s, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(out[0, :4], (0.6 * boxes[0] + 0.9 * boxes[1]) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(out[1, :4], (0.8 * boxes[2] + 0.5 * boxes[3]) / 1.3, rtol=1e-6)
    np.testing.assert_array_equal(out[2, :4], boxes[4])  # the lone last box, as it is
    for cap in (1, 2):
        out_c, s_c = run_rows(boxes, scores, kps, 0.3, max_det=cap)
        np.testing.assert_array_equal(out_c, out[:cap])
        np.testing.assert_array_equal(s_c, s[:cap])


def test_rows_ties_keep_input_order_and_zero_scores_keep_the_best_box() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 50, 50]], float)
    kps = np.arange(12, dtype=float).reshape(3, 2, 2)
    # equal scores, far apart: the first one leads
    far = np.array([[40, 40, 50, 50], [0, 0, 10, 10]], float)
    out, _ = run_rows(far, [0.8, 0.8], kps[:2], 0.3)
    np.testing.assert_array_equal(out[:, :4], far)
    # a cluster whose scores sum to 0 (a zero threshold lets such candidates through): its
    # best box, not MediaPipe's 0 / 0, and no warning
    out, s = run_rows(boxes, [0.0, 0.0, 0.0], kps, 0.3)
    np.testing.assert_array_equal(out[:, :4], boxes[[0, 2]])
    np.testing.assert_array_equal(out[:, 4:], kps[[0, 2]].reshape(2, 4))
    assert s.tolist() == [0.0, 0.0]


def test_rows_nan_boxes_never_join_a_cluster() -> None:
    boxes = np.array([[0, 0, 10, 10], [np.nan, 0, 10, 10], [1, 1, 11, 11]], float)
    out, s = run_rows(boxes, [0.9, 0.8, 0.7], np.zeros((3, 1, 2)), 0.3)
    assert s.tolist() == [np.float32(0.9), np.float32(0.8)]
    np.testing.assert_allclose(out[0, :4], (0.9 * boxes[0] + 0.7 * boxes[2]) / 1.6, rtol=1e-6)
    assert np.isnan(out[1, 0])  # emitted as it is, and the loop ends there (IoU 0 with itself)


def test_packed_leaves_its_inputs_alone() -> None:
    rng = np.random.default_rng(2)
    packed = rng.uniform(0, 50, size=(9, 6)).astype(np.float32)
    packed[:, 2:4] = packed[:, :2] + 20
    scores = rng.uniform(0.5, 1, 9).astype(np.float32)
    p0, s0 = packed.copy(), scores.copy()
    out, s = weighted_nms_packed(packed, scores, 0.3)
    np.testing.assert_array_equal(packed, p0)
    np.testing.assert_array_equal(scores, s0)
    assert out.shape[1] == 6 and out.dtype == np.float32 and len(s) == len(out)
