"""MediaPipe SSD-style detectors: BlazeFace (short and full range), pose detection, palm detection.

Reproduces, vectorised, what MediaPipe's graph does after the model:

* ``SsdAnchorsCalculator`` — anchors from the model's anchor options (layers with the same
  stride are merged; an extra interpolated-scale anchor per location when
  ``interpolated_scale_aspect_ratio > 0``). BlazeFace short range: strides 8/16/16/16 → 896.
* ``TensorsToDetectionsCalculator`` — boxes and keypoints decoded against the anchors, scores
  through a clipped sigmoid, thresholded.
* ``NonMaxSuppressionCalculator`` with ``algorithm: WEIGHTED`` — clusters merged by a
  score-weighted mean, as MediaPipe does (greedy NMS shifts boxes by a pixel or two).

Anchors and the decoding matrices are computed once here; ``decode`` touches only the anchors
whose score passes, in as few NumPy calls as it can (each costs microseconds once the model's
invoke has flushed the caches), and ``decode_mapped`` folds the frame mapping into the same
matrices, so boxes come out in frame pixels at no extra cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.frame import Detections
from edge.heads.base import Decoder, DecodeSpec, PixelMap, TensorInfo
from edge.nms import weighted_nms, weighted_nms_rows

ANCHOR_KEYS = frozenset(
    {
        "num_layers",
        "min_scale",
        "max_scale",
        "strides",
        "anchor_offset_x",
        "anchor_offset_y",
        "aspect_ratios",
        "fixed_anchor_size",
        "interpolated_scale_aspect_ratio",
        "reduce_boxes_in_lowest_layer",
    }
)
DECODE_KEYS = frozenset(
    {
        "num_coords",
        "box_coord_offset",
        "keypoint_coord_offset",
        "num_keypoints",
        "num_values_per_keypoint",
        "reverse_output_order",
        "x_scale",
        "y_scale",
        "w_scale",
        "h_scale",
        "sigmoid_score",
        "score_clipping_thresh",
        "apply_exponential_on_box_size",
        "box_from_keypoints",
        "box_scale",
    }
)


def _clip_is_moot(clip: float, logit_thr: float) -> bool:
    """True when clipping the candidates' logits to +-clip cannot change a score: every
    candidate is >= logit_thr >= -clip, and the sigmoid is already 1.0 in float32 at +clip."""
    one = np.float32(1.0)
    top = one / (one + np.exp(-np.float32(clip)))
    return bool(top == one) and bool(np.float32(logit_thr) >= -np.float32(clip))


def _scale(lo: float, hi: float, i: int, n: int) -> float:
    return (lo + hi) * 0.5 if n == 1 else lo + (hi - lo) * i / (n - 1)


def ssd_anchors(p: Mapping[str, Any], in_w: int, in_h: int) -> npt.NDArray[np.float32]:
    """(N, 4) anchors as (x_center, y_center, w, h), normalised, in MediaPipe's order."""
    strides: list[int] = list(p["strides"])
    n_str = len(strides)
    lo, hi = float(p.get("min_scale", 0.1484375)), float(p.get("max_scale", 0.75))
    ratios_opt = [float(r) for r in p.get("aspect_ratios", [1.0])]
    interp = float(p.get("interpolated_scale_aspect_ratio", 1.0))
    fixed = bool(p.get("fixed_anchor_size", True))
    ox, oy = float(p.get("anchor_offset_x", 0.5)), float(p.get("anchor_offset_y", 0.5))
    out: list[npt.NDArray[np.float32]] = []
    layer = 0
    num_layers = int(p.get("num_layers", n_str))
    while layer < num_layers:
        ratios: list[float] = []
        scales: list[float] = []
        last = layer
        while last < n_str and strides[last] == strides[layer]:
            s = _scale(lo, hi, last, n_str)
            if last == 0 and p.get("reduce_boxes_in_lowest_layer", False):
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, s, s]
            else:
                ratios += ratios_opt
                scales += [s] * len(ratios_opt)
                if interp > 0.0:
                    nxt = 1.0 if last == n_str - 1 else _scale(lo, hi, last + 1, n_str)
                    scales.append(math.sqrt(s * nxt))
                    ratios.append(interp)
            last += 1
        fh = math.ceil(in_h / strides[layer])
        fw = math.ceil(in_w / strides[layer])
        k = len(ratios)
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        a = np.empty((fh, fw, k, 4), np.float32)
        a[..., 0] = ((xs + ox) / fw)[..., None]
        a[..., 1] = ((ys + oy) / fh)[..., None]
        if fixed:
            a[..., 2:] = 1.0
        else:
            r = np.sqrt(np.asarray(ratios))
            sc = np.asarray(scales)
            a[..., 2] = sc * r
            a[..., 3] = sc / r
        out.append(a.reshape(-1, 4))
        layer = last
    return np.concatenate(out)


@dataclass(frozen=True, eq=False)
class _Plan:
    """``rows = raw[idx] @ lin (* mul[idx]) + add[idx]``: [x1, y1, x2, y2, k0x, k0y, ..., 1] in
    input pixels (``key`` None) or in the frame pixels of mapping ``key``, boxes then clipped to
    [0, ``hi``]. The trailing 1 is what :func:`~edge.nms.weighted_nms_rows` wants."""

    key: PixelMap | None
    lin: npt.NDArray[np.float32]
    mul: npt.NDArray[np.float32] | None
    add: npt.NDArray[np.float32]
    hi: npt.NDArray[np.float32] | None


class MediaPipeDecoder(Decoder):
    family: ClassVar[str] = "mediapipe"
    param_names: ClassVar[frozenset[str]] = ANCHOR_KEYS | DECODE_KEYS

    @classmethod
    def _split(cls, outputs: Sequence[TensorInfo]) -> tuple[int, int] | str:
        if len(outputs) != 2:
            return f"needs 2 outputs (boxes, scores), found {len(outputs)}"
        a, b = outputs
        if len(a.shape) != 3 or len(b.shape) != 3:
            return "needs two (1, N, K) outputs"
        if a.shape[1] != b.shape[1]:
            return f"box and score outputs disagree on N ({a.shape[1]} vs {b.shape[1]})"
        # the score tensor has one value per anchor and class; boxes have >= 4 coords
        box_i, score_i = (0, 1) if a.shape[2] >= b.shape[2] else (1, 0)
        if outputs[box_i].shape[2] < 4:
            return "box output has fewer than 4 values per anchor"
        return box_i, score_i

    @classmethod
    def mismatch(cls, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> str | None:
        split = cls._split(outputs)
        if isinstance(split, str):
            return split
        n = outputs[split[0]].shape[1]
        if "strides" not in spec.params:
            return (
                "needs anchor options (strides, ...): a [models.NAME.decoder] table in a "
                "manifest.toml (see models/manifest.toml) found through --models-dir or model.dir"
            )
        anchors = ssd_anchors(spec.params, spec.input_w, spec.input_h)
        if anchors.shape[0] != n:
            return f"anchor options give {anchors.shape[0]} anchors, the model has {n}"
        return None

    def __init__(self, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> None:
        reason = self.mismatch(outputs, spec)
        if reason:
            raise ValueError(reason)
        split = self._split(outputs)
        assert not isinstance(split, str)
        self._box_i, self._score_i = split
        p = spec.params
        self.spec = spec
        self.anchors = ssd_anchors(p, spec.input_w, spec.input_h)
        self.num_coords = int(p.get("num_coords", outputs[self._box_i].shape[2]))
        self.box_off = int(p.get("box_coord_offset", 0))
        self.kp_off = int(p.get("keypoint_coord_offset", 4))
        self.num_kp = int(p.get("num_keypoints", 0))
        self.kp_vals = int(p.get("num_values_per_keypoint", 2))
        self.reverse = bool(p.get("reverse_output_order", True))
        self.scale = np.array(
            [
                p.get("x_scale", spec.input_w),
                p.get("y_scale", spec.input_h),
                p.get("w_scale", spec.input_w),
                p.get("h_scale", spec.input_h),
            ],
            np.float32,
        )
        self.exp_size = bool(p.get("apply_exponential_on_box_size", False))
        self.sigmoid = bool(p.get("sigmoid_score", True))
        self.clip = float(p.get("score_clipping_thresh", 0.0))
        thr = spec.score_threshold
        # score >= thr  <=>  logit >= log(thr / (1 - thr)): threshold before the sigmoid
        self.logit_thr = (
            (math.log(thr / (1 - thr)) if 0 < thr < 1 else (-math.inf if thr <= 0 else math.inf))
            if self.sigmoid
            else thr
        )
        bfk = p.get("box_from_keypoints")
        self.box_from_kp = (int(bfk[0]), int(bfk[1])) if bfk else None
        self.box_scale = float(p.get("box_scale", 1.0))
        self.size = np.array([spec.input_w, spec.input_h], np.float32)
        self.width = 4 + 2 * self.num_kp
        self._clip_needed = (
            self.sigmoid and self.clip > 0 and not _clip_is_moot(self.clip, self.logit_thr)
        )
        # no candidate: one shared, read-only answer (the detector maps nothing back)
        self._none = Detections.empty(self.num_kp, spec.labels)
        for a in (self._none.boxes, self._none.scores, self._none.class_ids, self._none.keypoints):
            if a is not None:
                a.flags.writeable = False
        self._class_ids: dict[int, npt.NDArray[np.int32]] = {}
        # per-frame scratch, made once for the worst case (every anchor a candidate)
        n_anchors = self.anchors.shape[0]
        self._mask = np.zeros(n_anchors, np.bool_)
        self._corners = np.zeros((2, n_anchors, 4), np.float32)
        self._plan: _Plan | None = None if self.exp_size else self._linear_plan(None)
        self._mapped: _Plan | None = None  # the plan for the last frame mapping

    def _linear_plan(self, to_frame: PixelMap | None) -> _Plan:
        """Without exponential sizes every output coordinate is linear in the raw values:
        ``row = (raw @ L) * S[anchor] + O[anchor]`` gives [x1, y1, x2, y2, kx, ky, ...] in input
        pixels (MediaPipe's DecodeBoxes folded into one matrix), and a frame mapping
        ``(x - o) / s`` folds in too: ``S / s`` and ``(O - o) / s``. Fixed-size anchors (every
        manifest model) make S one vector, folded into L: no per-anchor product."""
        w, n = self.width, self.anchors.shape[0]
        pairs = w // 2  # x, y pairs per row: 2 box corners, then the keypoints
        size = np.tile(self.size.astype(np.float64), pairs)
        scale, off = np.ones(w), np.zeros(w)
        hi = None
        if to_frame is not None:
            scale = np.tile([to_frame.sx, to_frame.sy], pairs)
            off = np.tile([to_frame.ox, to_frame.oy], pairs)
            hi = np.array([to_frame.frame_w, to_frame.frame_h] * 2, np.float32)
        # a trailing column: 0 in L and 1 in O, so that every row ends in the 1 that
        # weighted_nms_rows wants
        mul = np.ones((n, w + 1))
        mul[:, :w] = np.tile(self.anchors[:, 2:4], pairs) * size / scale
        add = np.ones((n, w + 1), np.float32)
        add[:, :w] = (np.tile(self.anchors[:, 0:2], pairs) * size - off) / scale
        lin = self._raw_matrix()
        if np.all(mul == mul[0]):
            return _Plan(to_frame, (lin * mul[0]).astype(np.float32), None, add, hi)
        return _Plan(to_frame, lin.astype(np.float32), mul.astype(np.float32), add, hi)

    def _raw_matrix(self) -> npt.NDArray[np.float64]:
        """L: (num_coords, width + 1), raw values -> [x1, y1, x2, y2, kx, ky, ..., 0] in units
        of the anchor size (MediaPipe's x_scale ... h_scale and the coordinate order)."""
        lin = np.zeros((self.num_coords, self.width + 1))
        xs, ys, ws, hs = (float(v) for v in self.scale)
        order = (0, 1, 2, 3) if self.reverse else (1, 0, 3, 2)
        bx, by, bw, bh = (self.box_off + i for i in order)
        for col, sign in ((0, -1), (2, 1)):
            lin[bx, col] = 1 / xs
            lin[bw, col] = sign / (2 * ws)
            lin[by, col + 1] = 1 / ys
            lin[bh, col + 1] = sign / (2 * hs)
        for k in range(self.num_kp):
            kx = self.kp_off + k * self.kp_vals + (0 if self.reverse else 1)
            ky = self.kp_off + k * self.kp_vals + (1 if self.reverse else 0)
            lin[kx, 4 + 2 * k] = 1 / xs
            lin[ky, 5 + 2 * k] = 1 / ys
        return lin

    def decode(self, tensors: Sequence[npt.NDArray[np.float32]]) -> Detections:
        return self._decode(tensors, self._plan)

    def decode_mapped(
        self, tensors: Sequence[npt.NDArray[np.float32]], to_frame: PixelMap
    ) -> Detections:
        if self._plan is None or self.box_from_kp is not None:
            # exponential sizes are not linear; keypoint-derived boxes (a circle's radius)
            # are computed in input pixels first, as MediaPipe does
            return super().decode_mapped(tensors, to_frame)
        plan = self._mapped
        # one plan per frame size, made once (mappings are immutable: identity first)
        if plan is None or (plan.key is not to_frame and plan.key != to_frame):
            plan = self._mapped = self._linear_plan(to_frame)
        return self._decode(tensors, plan)

    def _decode(self, tensors: Sequence[npt.NDArray[np.float32]], plan: _Plan | None) -> Detections:
        # every NumPy call here costs ~2-10 us with the caches cold after invoke(): ufuncs with
        # out= and C methods (take, nonzero, argmax) rather than np.* wrappers, no temporaries
        logits = tensors[self._score_i][0, :, 0]
        np.greater_equal(logits, self.logit_thr, out=self._mask)
        idx = self._mask.nonzero()[0]
        n = idx.shape[0]
        if not n:
            return self._none
        raw = tensors[self._box_i][0]
        scores: npt.NDArray[np.float32] = logits.take(idx)
        if self.sigmoid:
            if self._clip_needed:
                np.clip(scores, -self.clip, self.clip, out=scores)
            np.negative(scores, out=scores)  # 1 / (1 + exp(-x)) in float32, as MediaPipe
            np.exp(scores, out=scores)
            np.add(scores, 1.0, out=scores)
            np.divide(1.0, scores, out=scores)
        if plan is None:
            return self._decode_exp(raw, idx, scores)
        rows = np.dot(raw.take(idx, 0), plan.lin)  # [x1, y1, x2, y2, k0x, k0y, ..., 1]
        if plan.mul is not None:
            np.multiply(rows, plan.mul.take(idx, 0), out=rows)
        np.add(rows, plan.add.take(idx, 0), out=rows)
        out, scores = weighted_nms_rows(
            rows, scores, self._corners[:, :n], self.spec.iou_threshold, self.spec.max_detections
        )
        m = out.shape[0]
        kps = out[:, 4:].reshape(m, self.num_kp, 2) if self.num_kp else None
        boxes = out[:, :4]
        if plan.hi is not None:  # in frame pixels: boxes clipped to the frame
            np.minimum(boxes, plan.hi, out=boxes)
            np.maximum(boxes, 0.0, out=boxes)
        elif kps is not None and self.box_from_kp is not None:
            boxes = self._person_boxes(kps)
        return Detections(boxes, scores, self._zeros(m), kps, self.spec.labels)

    def _decode_exp(
        self,
        raw: npt.NDArray[np.float32],
        idx: npt.NDArray[np.intp],
        scores: npt.NDArray[np.float32],
    ) -> Detections:
        boxes, kps = self._boxes(raw[idx], self.anchors[idx])
        boxes, scores, kps = weighted_nms(
            boxes, scores, kps, self.spec.iou_threshold, self.spec.max_detections
        )
        boxes *= np.tile(self.size, 2)
        if kps is not None:
            kps *= self.size
            if self.box_from_kp is not None:
                boxes = self._person_boxes(kps)
        return Detections(boxes, scores, self._zeros(len(scores)), kps, self.spec.labels)

    def _zeros(self, n: int) -> npt.NDArray[np.int32]:
        """Class ids (all 0) for ``n`` detections: one read-only array per count, made once."""
        ids = self._class_ids.get(n)
        if ids is None:
            ids = np.zeros(n, np.int32)
            ids.flags.writeable = False
            if len(self._class_ids) < 64:
                self._class_ids[n] = ids
        return ids

    def _boxes(
        self, raw: npt.NDArray[np.float32], anc: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        b = raw[:, self.box_off : self.box_off + 4]
        if not self.reverse:  # y, x, h, w
            b = b[:, [1, 0, 3, 2]]
        c = b[:, :2] / self.scale[:2] * anc[:, 2:] + anc[:, :2]
        if self.exp_size:
            wh = np.exp(b[:, 2:] / self.scale[2:]) * anc[:, 2:]
        else:
            wh = b[:, 2:] / self.scale[2:] * anc[:, 2:]
        boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)
        if not self.num_kp:
            return boxes, None
        k = raw[:, self.kp_off : self.kp_off + self.num_kp * self.kp_vals]
        k = k.reshape(-1, self.num_kp, self.kp_vals)[..., :2]
        if not self.reverse:
            k = k[..., ::-1]
        kps = (k / self.scale[:2] * anc[:, None, 2:] + anc[:, None, :2]).astype(np.float32)
        return boxes, kps

    def _person_boxes(self, kps: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        # MediaPipe's pose detector boxes the face; keypoint 0 (hip centre) and keypoint 1 give
        # the full-body circle that pose_detection_to_roi uses (radius |kp1 - kp0|).
        c = kps[:, self.box_from_kp[0]]  # type: ignore[index]
        r = np.linalg.norm(kps[:, self.box_from_kp[1]] - c, axis=1)[:, None] * self.box_scale  # type: ignore[index]
        return np.concatenate([c - r, c + r], axis=1).astype(np.float32)
