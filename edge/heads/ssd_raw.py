"""The ``ssd-raw`` family: SSD models cut before their post-processing (TensorFlow 1 Object
Detection API graphs converted from ``Preprocessor/sub`` to ``concat``/``concat_1``).

Two outputs: box encodings ``(1, N, 4)`` or ``(1, N, 1, 4)`` and class logits ``(1, N, C)`` with
column 0 the background. This reproduces, vectorised, what the graph's own ``Postprocessor``
does after them (read from the frozen graph's nodes):

* anchors from the SSD anchor generator's options (``create_ssd_anchors`` of the Object
  Detection API's ``multiple_grid_anchor_generator``), as corners ``[ymin, xmin, ymax, xmax]``
  normalised; see :func:`tf_ssd_anchors`;
* ``FasterRcnnBoxCoder.decode`` with scales y, x, h, w (10, 10, 5, 5):
  ``yc = ty / 10 * ha + ya``, ``h = exp(th / 5) * ha`` ...;
* scores ``sigmoid(logit)``, the background column ignored;
* greedy NMS (``NonMaxSuppressionV3``, IoU > ``iou`` suppresses) on the unclipped boxes, one
  class at a time, then the boxes clipped to the image and those left with no area dropped.

The anchors are generated, not stored: a test checks them against the graph's own
``Postprocessor/ExpandDims:0`` (1917 anchors for SSDLite MobileNetV2 300x300).

Only anchors whose best logit passes the threshold are decoded; ``decode_mapped`` folds the
mapping to frame pixels into two per-mapping vectors (IoU does not change under a per-axis
scale, so NMS runs on frame pixels and gives the graph's answer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.frame import Detections
from edge.heads.base import Decoder, DecodeSpec, PixelMap, TensorInfo
from edge.nms import greedy_nms

ANCHOR_KEYS = frozenset(
    {
        "feature_map_sizes",
        "min_scale",
        "max_scale",
        "aspect_ratios",
        "interpolated_scale_aspect_ratio",
        "reduce_boxes_in_lowest_layer",
        "base_anchor_size",
    }
)
DECODE_KEYS = frozenset({"box_scales", "background_classes"})


def tf_ssd_anchors(p: Mapping[str, Any]) -> npt.NDArray[np.float32]:
    """(N, 4) anchors ``[ymin, xmin, ymax, xmax]`` normalised, in the graph's order: layer by
    layer, then row, column, box spec; computed in float32 as TensorFlow does."""
    sizes = [int(s) for s in p["feature_map_sizes"]]
    n = len(sizes)
    lo, hi = float(p.get("min_scale", 0.2)), float(p.get("max_scale", 0.95))
    ratios_opt = [float(r) for r in p.get("aspect_ratios", [1.0, 2.0, 0.5, 3.0, 1.0 / 3.0])]
    interp = float(p.get("interpolated_scale_aspect_ratio", 1.0))
    reduce = bool(p.get("reduce_boxes_in_lowest_layer", True))
    base = [float(v) for v in p.get("base_anchor_size", [1.0, 1.0])]
    scales = [lo + (hi - lo) * i / (n - 1) for i in range(n)] + [1.0] if n > 1 else [lo, 1.0]
    f32 = np.float32
    out = []
    for layer, fm in enumerate(sizes):
        s, s_next = scales[layer], scales[layer + 1]
        if layer == 0 and reduce:
            spec = [(0.1, 1.0), (s, 2.0), (s, 0.5)]
        else:
            spec = [(s, r) for r in ratios_opt]
            if interp > 0.0:
                # the graph's value is the float32 square root of the float32 product
                spec.append((float(np.sqrt(np.float32(s) * np.float32(s_next))), interp))
        sc = np.array([a for a, _ in spec], f32)
        sq = np.sqrt(np.array([r for _, r in spec], f32))
        heights = sc / sq * f32(base[0])
        widths = sc * sq * f32(base[1])
        stride = f32(1.0) / f32(fm)
        offset = f32(0.5) * stride
        centres = np.arange(fm, dtype=f32) * stride + offset
        yc = np.broadcast_to(centres[:, None, None], (fm, fm, len(spec)))
        xc = np.broadcast_to(centres[None, :, None], (fm, fm, len(spec)))
        hh = np.broadcast_to(heights, (fm, fm, len(spec)))
        ww = np.broadcast_to(widths, (fm, fm, len(spec)))
        half = f32(0.5)
        a = np.stack([yc - half * hh, xc - half * ww, yc + half * hh, xc + half * ww], axis=-1)
        out.append(a.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


class SSDRawDecoder(Decoder):
    family: ClassVar[str] = "ssd-raw"
    param_names: ClassVar[frozenset[str]] = ANCHOR_KEYS | DECODE_KEYS

    @classmethod
    def _split(cls, outputs: Sequence[TensorInfo]) -> tuple[int, int] | str:
        if len(outputs) != 2:
            return f"needs 2 outputs (box encodings, class logits), found {len(outputs)}"
        shapes = [tuple(t.shape) for t in outputs]
        box = [i for i, s in enumerate(shapes) if s[-1] == 4 and len(s) in (3, 4) and s[0] == 1]
        if len(box) != 1 or (len(shapes[box[0]]) == 4 and shapes[box[0]][2] != 1):
            return "needs one (1, N, 4) or (1, N, 1, 4) box encodings output"
        cls_i = 1 - box[0]
        cs = shapes[cls_i]
        if len(cs) != 3 or cs[1] != shapes[box[0]][1] or cs[2] < 2:
            return f"needs class logits (1, N, C >= 2) beside boxes, got {list(cs)}"
        return box[0], cls_i

    @classmethod
    def mismatch(cls, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> str | None:
        split = cls._split(outputs)
        if isinstance(split, str):
            return split
        if "feature_map_sizes" not in spec.params:
            return "needs SSD anchor options (feature_map_sizes, ...) from the manifest"
        n = outputs[split[0]].shape[1]
        got = tf_ssd_anchors(spec.params).shape[0]
        if got != n:
            return f"anchor options give {got} anchors, the model has {n}"
        return None

    def __init__(self, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> None:
        reason = self.mismatch(outputs, spec)
        if reason:
            raise ValueError(reason)
        split = self._split(outputs)
        assert not isinstance(split, str)
        self._box_i, self._cls_i = split
        self.spec = spec
        p = spec.params
        a = tf_ssd_anchors(p).astype(np.float32)
        # get_center_coordinates_and_sizes, in float32 as the graph
        ha, wa = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        ya, xa = a[:, 0] + ha / np.float32(2), a[:, 1] + wa / np.float32(2)
        self.anchors = a
        self._centre = np.stack([ya, xa], axis=1)  # (N, 2)
        self._size = np.stack([ha, wa], axis=1)
        sy, sx, sh, sw = (float(v) for v in p.get("box_scales", [10.0, 10.0, 5.0, 5.0]))
        self._div = np.array([sy, sx, sh, sw], np.float32)
        self._bg = int(p.get("background_classes", 1))
        self.num_classes = outputs[self._cls_i].shape[2] - self._bg
        thr = spec.score_threshold
        # sigmoid(x) >= thr <=> x >= log(thr / (1 - thr)): threshold the logits
        self.logit_thr = (
            math.log(thr / (1 - thr)) if 0 < thr < 1 else (-math.inf if thr <= 0 else math.inf)
        )
        n = a.shape[0]
        self._mask = np.zeros(n, np.bool_)
        # no candidate: one shared, read-only answer
        self._none = Detections.empty(0, spec.labels)
        for arr in (self._none.boxes, self._none.scores, self._none.class_ids):
            arr.flags.writeable = False
        # normalised [ymin, xmin, ymax, xmax] -> x1, y1, x2, y2 in input pixels
        self._plain = self._mapping(None)
        self._mapped: tuple[PixelMap, tuple[Any, ...]] | None = None

    def _mapping(self, to_frame: PixelMap | None) -> tuple[Any, ...]:
        """(mul, add, hi): ``xyxy = yx_corners[:, [1, 0, 3, 2]] * mul + add``, clipped to
        [0, hi] (input pixels when ``to_frame`` is None, else frame pixels)."""
        w, h = float(self.spec.input_w), float(self.spec.input_h)
        if to_frame is None:
            mul, add, hi = [w, h], [0.0, 0.0], [w, h]
        else:
            mul = [w / to_frame.sx, h / to_frame.sy]
            add = [-to_frame.ox / to_frame.sx, -to_frame.oy / to_frame.sy]
            hi = [float(to_frame.frame_w), float(to_frame.frame_h)]
        return (
            np.array(mul * 2, np.float32),
            np.array(add * 2, np.float32),
            np.array(hi * 2, np.float32),
        )

    def decode(self, tensors: Sequence[npt.NDArray[np.float32]]) -> Detections:
        return self._decode(tensors, self._plain)

    def decode_mapped(
        self, tensors: Sequence[npt.NDArray[np.float32]], to_frame: PixelMap
    ) -> Detections:
        m = self._mapped
        if m is None or (m[0] is not to_frame and m[0] != to_frame):
            m = self._mapped = (to_frame, self._mapping(to_frame))
        return self._decode(tensors, m[1])

    def _decode(
        self, tensors: Sequence[npt.NDArray[np.float32]], plan: tuple[Any, ...]
    ) -> Detections:
        logits = tensors[self._cls_i][0]
        if self.num_classes == 1:
            best = logits[:, self._bg]
            cls = None
        else:
            fg = logits[:, self._bg :]
            cls = fg.argmax(axis=1)
            best = fg.max(axis=1)
        np.greater_equal(best, self.logit_thr, out=self._mask)
        idx = self._mask.nonzero()[0]
        if not idx.shape[0]:
            return self._none
        s = best.take(idx)
        np.negative(s, out=s)
        np.exp(s, out=s)
        np.add(s, 1.0, out=s)
        np.divide(1.0, s, out=s)  # sigmoid, in float32
        enc = tensors[self._box_i].reshape(-1, 4).take(idx, 0)
        np.divide(enc, self._div, out=enc)
        size = self._size.take(idx, 0)
        half = np.exp(enc[:, 2:])
        np.multiply(half, size, out=half)  # h, w
        centre = enc[:, :2]
        np.multiply(centre, size, out=centre)
        np.add(centre, self._centre.take(idx, 0), out=centre)
        np.multiply(half, 0.5, out=half)
        # [ymin, xmin, ymax, xmax] -> [xmin, ymin, xmax, ymax], then to pixels
        boxes = np.empty((idx.shape[0], 4), np.float32)
        np.subtract(centre[:, ::-1], half[:, ::-1], out=boxes[:, :2])
        np.add(centre[:, ::-1], half[:, ::-1], out=boxes[:, 2:])
        mul, add, hi = plan
        np.multiply(boxes, mul, out=boxes)
        np.add(boxes, add, out=boxes)
        cls_ids = None if cls is None else cls.take(idx).astype(np.int32)
        keep = greedy_nms(
            boxes,
            s,
            self.spec.iou_threshold,
            class_ids=cls_ids,
            max_detections=self.spec.max_detections,
        )
        boxes = boxes.take(keep, 0)
        np.minimum(boxes, hi, out=boxes)
        np.maximum(boxes, 0.0, out=boxes)
        # the graph drops boxes clipped to nothing (entirely outside the image)
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not ok.all():
            keep, boxes = keep[ok], boxes[ok]
        ids = np.zeros(keep.shape[0], np.int32) if cls_ids is None else cls_ids.take(keep)
        return Detections(boxes, s.take(keep), ids, None, self.spec.labels)
