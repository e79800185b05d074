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
    keeps the best box instead of MediaPipe's 0/0. Everything is computed in float32, as
    MediaPipe does (its weighted sums may differ in the last bits: their order differs).

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

    Returns float32 rows and scores, new arrays. Decoders that build their candidates
    themselves call :func:`weighted_nms_rows` directly, with buffers made once.
    """
    n, width = packed.shape[0], packed.shape[1]
    rows = np.ones((n, width + 1), np.float32)
    rows[:, :width] = packed
    weights = scores.astype(np.float32)  # a copy: the caller's scores stay untouched
    return weighted_nms_rows(
        rows, weights, np.empty((2, n, 4), np.float32), iou_threshold, max_detections
    )


def weighted_nms_rows(
    rows: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    corners: npt.NDArray[np.float32],
    iou_threshold: float,
    max_detections: int = -1,
) -> tuple[FloatArray, FloatArray]:
    """The hot path of :func:`weighted_nms`, in the layout that needs the fewest NumPy calls.

    rows     (n, W + 1) float32 ``[x1, y1, x2, y2, extra..., 1.0]``: the trailing 1 makes one
             dot product give a cluster's weighted sums *and* its total weight
    scores   (n,) float32; the result's scores may be views of it
    corners  (2, n, 4) float32 scratch (views of buffers made once are fine)

    Each NumPy call costs ~2-10 us once the model's invoke has flushed the caches, so: one
    dtype, no sort, no temporaries that ``out=`` can avoid. Each turn takes the best remaining
    row (``argmax``: the first of equal scores, as a stable sort would), its IoU with every
    remaining row (:func:`_overlaps`), and ends when everything left joins its cluster (one
    face in view: the usual frame), else carries on with the rows outside the cluster. A
    single row left is emitted as it is (its weighted mean is itself). Returns (m, W) float32
    rows and (m,) float32 scores.
    """
    n = scores.shape[0]
    if n <= 1:
        return rows[:, :-1].copy(), scores.copy()
    np.multiply(rows[:, :4], _FLIP, out=corners[1])
    thr = np.float32(iou_threshold)
    out_rows: list[npt.NDArray[np.float32]] = []
    out_scores: list[npt.NDArray[np.float32]] = []
    while True:
        top = int(scores.argmax())
        out_scores.append(scores[top : top + 1])
        iou = _overlaps(corners, top)
        if iou is None:  # a best box with no area has IoU 0 with itself: MediaPipe emits it
            out_rows.append(rows[top : top + 1, :-1].copy())  # unchanged, and stops there
            break
        if iou[iou.argmin()] > thr:  # everything left joins the cluster (argmin: a C method,
            # half the cost of a ufunc reduction when the caches are cold)
            out_rows.append(_weighted_mean(scores, rows, rows, top))
            break
        member = np.greater(iou, thr)
        cluster = member.nonzero()[0]
        out_rows.append(_weighted_mean(scores.take(cluster), rows.take(cluster, 0), rows, top))
        rest = np.logical_not(member).nonzero()[0]
        if len(out_rows) == max_detections:
            break
        if rest.shape[0] == 1:
            out_scores.append(scores[rest])
            out_rows.append(rows[rest, :-1])  # fancy index: a copy
            break
        rows, scores, corners = rows.take(rest, 0), scores.take(rest), corners.take(rest, 1)
    if len(out_rows) == 1:
        return out_rows[0], out_scores[0]
    return np.concatenate(out_rows), np.concatenate(out_scores)


#: [x1, y1, x2, y2] -> [-x1, -y1, x2, y2]: one np.minimum with the best box then gives the
#: intersection as [-max x1, -max y1, min x2, min y2], and one addition the extents of both
#: intersections and boxes (exact: negation, min and max commute with IEEE 754 rounding)
_FLIP = np.array([-1.0, -1.0, 1.0, 1.0], np.float32)


def _overlaps(corners: npt.NDArray[np.float32], top: int) -> npt.NDArray[np.float32] | None:
    """IoU of box ``top`` with every box as MediaPipe's ``OverlapSimilarity`` computes it
    (float32, ``inter / (area_a + area_b - inter)``), from ``corners[1]`` (flipped corners,
    see ``_FLIP``; ``corners[0]`` is scratch). None when box ``top`` has no area.

    MediaPipe gives 0 when the boxes are apart (touching intersects, with area 0), when either
    is inverted, or when the denominator is not > 0. Here negative extents are clipped to 0
    instead: the intersection is then 0 in each of those cases, hence the IoU; and with the
    best box's area > 0 the denominator is >= that area, so never 0. NaN corners give NaN,
    which fails every ``>`` as MediaPipe's 0 does."""
    boxes = corners[1]
    np.minimum(boxes, boxes[top], out=corners[0])
    ext = corners[..., 2:] + corners[..., :2]  # (2, n, 2): intersection/box x width/height
    np.maximum(ext, 0.0, out=ext)
    prod = np.multiply(ext[..., 0], ext[..., 1])
    inter, areas = prod[0], prod[1]
    area_top = areas[top]
    if not area_top > 0:
        return None
    norm: npt.NDArray[np.float32] = np.add(areas, area_top)
    np.subtract(norm, inter, out=norm)
    np.divide(inter, norm, out=norm)
    return norm


def _weighted_mean(
    scores: npt.NDArray[np.float32],
    rows: npt.NDArray[np.float32],
    all_rows: npt.NDArray[np.float32],
    top: int,
) -> npt.NDArray[np.float32]:
    """The score-weighted mean of a cluster's ``rows``, (1, W) without the trailing 1,
    accumulated in float32 as MediaPipe does. When the scores sum to 0: row ``top`` of
    ``all_rows`` (the best one), not MediaPipe's 0 / 0."""
    sums: npt.NDArray[np.float32] = np.dot(scores, rows)
    total = sums[-1]
    mean: npt.NDArray[np.float32] = sums[:-1]
    if total > 0:
        np.divide(mean, total, out=mean)
        row: npt.NDArray[np.float32] = mean.reshape(1, -1)
        return row
    best: npt.NDArray[np.float32] = all_rows[top : top + 1, :-1].copy()
    return best
