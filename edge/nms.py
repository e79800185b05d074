"""Non-maximum suppression: greedy (OpenCV) for box detectors, weighted (MediaPipe) for BlazeFace.

Both take boxes as ``(N, 4)`` x1, y1, x2, y2 in any one unit (IoU does not depend on it) and work
on whole arrays; the only Python loop is the one in :func:`weighted_nms`, which runs once per
*output* cluster (a handful per frame), never once per box.

Greedy NMS is OpenCV's ``cv2.dnn.NMSBoxes`` (C++, fast on a Pi). Its rules, read from
``modules/dnn/src/nms.inl.hpp`` / ``nms.cpp`` and ``Rect_`` in ``core/types.hpp``, are kept here
as the contract the tests check:

* only boxes with ``score > score_threshold`` (strictly) take part; they are visited by score,
  descending, ties in input order (``std::stable_sort``); ``top_k`` > 0 keeps that many of them
  *before* suppression;
* a box is kept when its IoU with every box kept so far is ``<= iou_threshold``;
* IoU is intersection / union of areas ``w * h`` (no +1 pixel), and two boxes whose areas sum to
  zero have IoU 1 (``jaccardDistance``), so duplicate zero-size boxes suppress each other.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.frame import FloatArray

IndexArray = npt.NDArray[np.intp]


def greedy_nms(
    boxes_xyxy: npt.ArrayLike,
    scores: npt.ArrayLike,
    iou_threshold: float,
    *,
    score_threshold: float = 0.0,
    class_ids: npt.ArrayLike | None = None,
    top_k: int = 0,
    max_detections: int = 100,
) -> IndexArray:
    """Indices of the boxes kept by greedy NMS, by score descending.

    ``class_ids`` given: boxes only suppress boxes of the same class (``NMSBoxesBatched``).
    ``top_k`` > 0 caps the candidates before suppression, ``max_detections`` > 0 the result.
    Boxes with ``x2 < x1`` or ``y2 < y1`` count as zero-size.
    """
    boxes, s = _as_boxes_scores(boxes_xyxy, scores)
    if not 0.0 <= iou_threshold <= 1.0 or score_threshold < 0.0:
        raise ValueError(
            f"expected 0 <= iou_threshold <= 1 and score_threshold >= 0, got {iou_threshold} "
            f"and {score_threshold}"
        )
    if boxes.shape[0] == 0:
        return np.zeros(0, np.intp)
    xywh = _to_xywh(boxes)
    if class_ids is None:
        kept: Any = _dnn().NMSBoxes(xywh, s, score_threshold, iou_threshold, 1.0, top_k)
    else:
        cls = np.ascontiguousarray(class_ids, dtype=np.int32).reshape(-1)
        if cls.shape != s.shape:
            raise ValueError(f"class_ids must be ({s.shape[0]},), got {cls.shape}")
        kept = _nms_batched(xywh, s, cls, score_threshold, iou_threshold, top_k)
    # OpenCV returns an int32 array, an (M, 1) array (some 4.x builds) or () when nothing is kept
    keep = np.asarray(kept, dtype=np.intp).reshape(-1)
    return keep[:max_detections] if max_detections > 0 else keep


def _dnn() -> Any:
    # OpenCV's stubs type these arguments as Sequence[...]; ndarrays are what it converts fastest
    return cv2.dnn


def _as_boxes_scores(
    boxes_xyxy: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    s = np.ascontiguousarray(scores, dtype=np.float32)
    if boxes.size == 0 and s.size == 0:
        return boxes.reshape(0, 4), s.reshape(0)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or s.shape != (boxes.shape[0],):
        raise ValueError(f"expected boxes (N, 4) and scores (N,), got {boxes.shape} and {s.shape}")
    return boxes, s


def _to_xywh(boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """OpenCV's x, y, w, h, moved so every coordinate is >= 0.

    The move leaves every IoU unchanged, and it is what makes ``NMSBoxesBatched`` safe: it
    separates classes by adding ``class_id * (max_coordinate + 1)`` with the maximum taken over
    coordinates and 0, which fails to separate them when boxes reach below zero.
    """
    xywh = np.empty_like(boxes)
    xywh[:, :2] = boxes[:, :2] - boxes[:, :2].min(axis=0)
    xywh[:, 2:] = np.maximum(boxes[:, 2:] - boxes[:, :2], 0.0)
    return xywh


def _nms_batched(
    xywh: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int32],
    score_threshold: float,
    iou_threshold: float,
    top_k: int,
) -> Any:
    batched = getattr(_dnn(), "NMSBoxesBatched", None)
    if batched is not None:
        return batched(xywh, scores, class_ids, score_threshold, iou_threshold, 1.0, top_k)
    # OpenCV < 4.7 (JetPack's 4.5) has no NMSBoxesBatched: apply the same per-class offset here
    span = float((xywh[:, :2] + xywh[:, 2:]).max()) + 1.0
    shifted = xywh.copy()
    shifted[:, :2] += class_ids[:, None].astype(np.float64) * span
    return _dnn().NMSBoxes(shifted, scores, score_threshold, iou_threshold, 1.0, top_k)


def weighted_nms(
    boxes_xyxy: npt.ArrayLike,
    scores: npt.ArrayLike,
    keypoints: npt.ArrayLike | None,
    iou_threshold: float,
    max_detections: int = -1,
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """MediaPipe's WEIGHTED non-max suppression (BlazeFace, BlazePalm, BlazePose detectors).

    Mirrors ``WeightedNonMaxSuppression`` in
    ``mediapipe/calculators/util/non_max_suppression_calculator.cc`` with the
    ``INTERSECTION_OVER_UNION`` overlap: take the best remaining detection; every remaining one
    (itself included) whose IoU with it is ``> iou_threshold`` joins its cluster; emit the best
    detection with box corners and keypoints replaced by the score-weighted mean over the
    cluster and the best score kept; repeat on the rest. Like MediaPipe, the loop ends early
    when an iteration removes nothing (a zero-size best box: its IoU with itself is 0), emitting
    that box unchanged.

    Differences, on purpose: ties in score keep input order (MediaPipe's ``std::sort`` leaves
    them unspecified); ``max_detections`` > 0 stops after that many outputs (MediaPipe accepts
    ``max_num_detections`` but ignores it in WEIGHTED mode; stopping early equals truncating its
    output, since later clusters never change earlier ones); a cluster whose scores sum to 0
    keeps the best box instead of MediaPipe's 0/0. IoU is computed in float32 as MediaPipe
    does; the weighted means in float64.

    keypoints  (N, K, 2) or None. Returns boxes (M, 4), scores (M,), keypoints (M, K, 2) | None.
    """
    boxes, s = _as_boxes_scores(boxes_xyxy, scores)
    kps = None if keypoints is None else np.asarray(keypoints, dtype=np.float64)
    if kps is not None and (kps.ndim != 3 or kps.shape[0] != s.shape[0] or kps.shape[2] != 2):
        raise ValueError(f"keypoints must be ({s.shape[0]}, K, 2), got {kps.shape}")
    n = s.shape[0]
    packed = boxes
    if kps is not None:
        packed = np.concatenate([boxes, kps.reshape(n, 2 * kps.shape[1])], axis=1)
    out, out_scores = weighted_nms_packed(packed, s, iou_threshold, max_detections)
    m = out.shape[0]
    if kps is None:
        return out, out_scores, None
    return out[:, :4], out_scores, out[:, 4:].reshape(m, kps.shape[1], 2)


def weighted_nms_packed(
    packed: npt.NDArray[Any],
    scores: npt.NDArray[np.float32],
    iou_threshold: float,
    max_detections: int = -1,
) -> tuple[FloatArray, FloatArray]:
    """:func:`weighted_nms` on rows ``[x1, y1, x2, y2, k0x, k0y, ...]`` kept in one array.

    The decoders' hot path: one matrix product per output cluster merges box and keypoints
    together, and the overlaps of all candidates are computed once up front (the candidates that
    pass the score threshold are few), so each cluster costs a row lookup. Returns float32 rows
    and scores.
    """
    n = scores.shape[0]
    if n == 0:
        return np.zeros((0, packed.shape[1]), np.float32), np.zeros((0,), np.float32)
    order = np.argsort(-scores, kind="stable")
    rows = packed[order].astype(np.float64)
    ws = scores[order].astype(np.float64)
    corners = rows[:, :4].astype(np.float32)  # MediaPipe compares overlaps in float32
    sizes = corners[:, 2:] - corners[:, :2]
    areas = sizes[:, 0] * sizes[:, 1]
    valid = np.minimum(sizes[:, 0], sizes[:, 1]) >= 0  # not inverted
    thr = np.float32(iou_threshold)
    out_rows: list[npt.NDArray[np.float64]] = []
    out_idx: list[int] = []
    remaining = np.arange(n)
    while remaining.size and (max_detections <= 0 or len(out_rows) < max_detections):
        top = int(remaining[0])
        in_cluster = _row_iou(corners, areas, valid, top, remaining) > thr
        out_idx.append(top)
        if not in_cluster[0]:  # a zero-size best box (IoU 0 with itself): emitted unchanged,
            # and the loop ends, as in MediaPipe
            out_rows.append(rows[top])
            break
        if in_cluster.all():  # the usual last (often only) cluster: everything left joins it
            w = ws[remaining]
            out_rows.append(w @ rows[remaining] / w.sum())
            break
        cluster = remaining[in_cluster]
        w = ws[cluster]
        out_rows.append(w @ rows[cluster] / w.sum())
        remaining = remaining[~in_cluster]
    return np.vstack(out_rows).astype(np.float32), ws[out_idx].astype(np.float32)


def _row_iou(
    corners: npt.NDArray[np.float32],
    areas: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    top: int,
    rest: IndexArray,
) -> npt.NDArray[np.float32]:
    """IoU of box ``top`` with boxes ``rest`` as MediaPipe's ``OverlapSimilarity`` computes it,
    in as few array operations as the rules allow (this runs once per output cluster).

    ``Rectangle_f::Intersects`` is false when either box is inverted (min > max) or when they
    are apart; touching counts as intersecting but gives area 0. The result is
    ``inter / (area_a + area_b - inter)`` when that denominator is > 0, else 0, in float32."""
    c = corners[rest]
    wh = np.minimum(c[:, 2:], corners[top, 2:]) - np.maximum(c[:, :2], corners[top, :2])
    hit = np.minimum(wh[:, 0], wh[:, 1]) >= 0
    if not valid[top]:
        hit[:] = False
    hit &= valid[rest]
    inter = np.where(hit, wh[:, 0] * wh[:, 1], np.float32(0.0))
    norm = areas[rest] + areas[top] - inter
    out = np.zeros(rest.shape[0], np.float32)
    np.divide(inter, norm, out=out, where=hit & (norm > 0))
    return out
