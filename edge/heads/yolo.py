"""The ``yolo`` family: Ultralytics YOLO (v8, 11 and later) TFLite exports, one output tensor.

Two layouts:

* **raw** ``(1, 4+C, N)``: per anchor cx, cy, w, h then C class scores (already sigmoided), no
  objectness column (that is YOLOv5's ``(1, N, 5+C)``, not handled here). Ultralytics writes
  anchors last; other converters give the transpose ``(1, N, 4+C)``. The anchors axis is the
  longer one (8400 anchors against 84 rows for COCO at 640). We keep each anchor's best class,
  drop scores below the threshold, cap the candidates at ``top_k`` and run NMS.
* **end2end** ``(1, N, 6)``: x1, y1, x2, y2, score, class per row, already suppressed (YOLOv10,
  YOLO26, or ``export(nms=True)``); rows below the threshold are padding.

``(1, N, 6)`` is ambiguous (raw transposed with 2 classes, or end2end). ``layout = "auto"``
calls it raw only when N equals the anchor count of an Ultralytics head at this input size
(strides 8, 16, 32: 8400 at 640x640), end2end otherwise; ``layout = "raw" | "end2end"`` decides.

Coordinates: Ultralytics' TFLite export divides boxes by the image size (normalised), other
exports give input pixels. ``normalized = true | false | "auto"``; ``auto`` decides per frame:
normalised when no coordinate (raw: the cx, cy of all anchors; end2end: x2, y2 of all rows)
exceeds 2. Pixel boxes of a real model reach far past 2, normalised ones barely past 1.

NMS is greedy and class-aware (``agnostic = true``: across classes), capped at ``top_k``
candidates; the model's ``nms`` kind ``"weighted"`` switches to MediaPipe's score-weighted merge,
per class. end2end outputs are used as they are.

int8 models arrive dequantized (the runtime applies scale and zero point), so the same code
serves float and int8.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import ConfigError, ModelInvalid
from edge.frame import Detections
from edge.heads.base import Decoder, DecodeSpec, TensorInfo, describe_outputs
from edge.nms import greedy_nms, weighted_nms

log = logging.getLogger(__name__)

#: ``normalized = "auto"``: every coordinate <= this means boxes are fractions of the input
AUTO_NORMALIZED_MAX = 2.0
DEFAULT_TOP_K = 1000
_STRIDES = (8, 16, 32)


def anchor_count(input_w: int, input_h: int) -> int:
    """Anchors of an Ultralytics detect head (strides 8, 16, 32) at this input size."""
    return sum(math.ceil(input_w / s) * math.ceil(input_h / s) for s in _STRIDES)


class YOLODecoder(Decoder):
    family: ClassVar[str] = "yolo"
    param_names: ClassVar[frozenset[str]] = frozenset({"normalized", "top_k", "layout", "agnostic"})

    @classmethod
    def mismatch(cls, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> str | None:
        try:
            _layout(outputs, spec, _Params.parse(spec.params).layout)
        except ModelInvalid as e:
            return str(e)
        except ConfigError as e:
            return f"bad decoder parameter: {e}"
        return None

    def __init__(self, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> None:
        p = _Params.parse(spec.params)
        try:
            self._end2end, self._anchors_last = _layout(outputs, spec, p.layout)
        except ModelInvalid as e:
            raise ModelInvalid(
                f"yolo decoder: {e} (model outputs: {describe_outputs(outputs)})"
            ) from None
        self._normalized, self._top_k, self._agnostic = p.normalized, p.top_k, p.agnostic
        if spec.nms not in ("greedy", "weighted") or (p.agnostic and spec.nms == "weighted"):
            raise ConfigError(
                f'yolo decoder: nms kind must be "greedy" or "weighted" (weighted only '
                f"with agnostic = false), got {spec.nms!r} with agnostic = {p.agnostic}"
            )
        self._spec = spec
        w, h = float(spec.input_w), float(spec.input_h)
        self._size = np.array([w, h, w, h], np.float32)
        self._log_layout(tuple(outputs[0].shape))

    def _log_layout(self, shape: tuple[int, ...]) -> None:
        if not self._end2end and self._spec.labels and len(self._spec.labels) != min(shape[1:]) - 4:
            log.warning(
                "yolo output %s has %d classes but %d labels were given",
                list(shape),
                min(shape[1:]) - 4,
                len(self._spec.labels),
            )
        kind = "end2end" if self._end2end else "raw"
        log.info("yolo %s output %s, normalized=%s", kind, list(shape), self._normalized)

    def decode(self, tensors: Sequence[npt.NDArray[np.float32]]) -> Detections:
        t = tensors[0][0]
        if self._end2end:
            return self._decode_end2end(t)
        # (4+C, N) view either way: no copy of the big tensor
        return self._decode_raw(t if self._anchors_last else t.T)

    def _decode_raw(self, pred: npt.NDArray[np.float32]) -> Detections:
        cls_scores = pred[4:]
        best = cls_scores.max(axis=0)
        cand = np.flatnonzero(best >= self._spec.score_threshold)
        if 0 < self._top_k < cand.size:
            cand = cand[np.argpartition(-best[cand], self._top_k - 1)[: self._top_k]]
        if cand.size == 0:
            return Detections.empty(labels=self._spec.labels)
        scores = best[cand]
        class_ids = cls_scores[:, cand].argmax(axis=0).astype(np.int32)
        cx, cy, w, h = pred[:4, cand]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        if self._is_normalized(pred[:2]):
            boxes *= self._size
        return self._suppress(boxes, scores, class_ids)

    def _suppress(
        self,
        boxes: npt.NDArray[np.float32],
        scores: npt.NDArray[np.float32],
        class_ids: npt.NDArray[np.int32],
    ) -> Detections:
        spec = self._spec
        if spec.nms != "weighted":
            cls = None if self._agnostic else class_ids
            keep = greedy_nms(
                boxes, scores, spec.iou_threshold, class_ids=cls, max_detections=spec.max_detections
            )
            return self._detections(boxes[keep], scores[keep], class_ids[keep])
        # MediaPipe's weighted merge, one class at a time (a loop over the few classes present)
        parts = []
        for c in np.unique(class_ids):
            m = class_ids == c
            b, s, _ = weighted_nms(
                boxes[m], scores[m], None, spec.iou_threshold, spec.max_detections
            )
            parts.append((b, s, np.full(s.shape, c, np.int32)))
        b, s, ids = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.argsort(-s, kind="stable")
        if spec.max_detections > 0:
            order = order[: spec.max_detections]
        return self._detections(b[order], s[order], ids[order])

    def _decode_end2end(self, rows: npt.NDArray[np.float32]) -> Detections:
        scores = rows[:, 4]
        keep = np.flatnonzero(scores >= self._spec.score_threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        if self._spec.max_detections > 0:
            keep = keep[: self._spec.max_detections]
        boxes = rows[keep, :4].astype(np.float32)
        if self._is_normalized(rows[:, 2:4]):
            boxes *= self._size
        class_ids = np.rint(rows[keep, 5]).astype(np.int32)
        return self._detections(boxes, scores[keep], class_ids)

    def _is_normalized(self, coords: npt.NDArray[np.float32]) -> bool:
        if self._normalized != "auto":
            return bool(self._normalized)
        return coords.size == 0 or float(coords.max()) <= AUTO_NORMALIZED_MAX

    def _detections(
        self,
        boxes: npt.NDArray[np.float32],
        scores: npt.NDArray[np.float32],
        class_ids: npt.NDArray[np.int32],
    ) -> Detections:
        np.clip(boxes, 0.0, self._size, out=boxes)
        return Detections(
            boxes.astype(np.float32, copy=False),
            scores.astype(np.float32, copy=False),
            class_ids,
            None,
            self._spec.labels,
        )


def _layout(outputs: Sequence[TensorInfo], spec: DecodeSpec, layout: Any) -> tuple[bool, bool]:
    """(end2end, anchors_last), or ModelInvalid saying why the outputs do not fit."""
    if len(outputs) != 1:
        raise ModelInvalid(f"expected 1 output, (1, 4+C, N) or (1, N, 6), got {len(outputs)}")
    shape = tuple(outputs[0].shape)
    if len(shape) != 3 or shape[0] != 1:
        raise ModelInvalid(f"expected a (1, 4+C, N) or (1, N, 6) output, got {list(shape)}")
    _, a, b = shape
    if layout == "end2end" or (
        layout == "auto" and b == 6 and a != anchor_count(spec.input_w, spec.input_h)
    ):
        if b != 6:
            raise ModelInvalid(f"expected an end2end (1, N, 6) output, got {list(shape)}")
        return True, False
    if a == b or min(a, b) < 5:
        raise ModelInvalid(
            f"expected (1, 4+C, N) with N anchors far more than 4+C rows (C >= 1 classes), "
            f"got {list(shape)}"
        )
    return False, b > a


@dataclass(frozen=True, slots=True)
class _Params:
    layout: str
    normalized: bool | str
    top_k: int
    agnostic: bool

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> _Params:
        agnostic = params.get("agnostic", False)
        if not isinstance(agnostic, bool):
            raise ConfigError(
                f"yolo decoder param 'agnostic' must be true or false, not {agnostic!r}"
            )
        return cls(
            _choice(params, "layout", ("auto", "raw", "end2end")),
            _choice(params, "normalized", (True, False, "auto")),
            _int(params, "top_k", DEFAULT_TOP_K),
            agnostic,
        )


def _choice(params: Any, key: str, allowed: tuple[Any, ...], default: Any = "auto") -> Any:
    value = params.get(key, default)
    if isinstance(value, str):
        value = {"true": True, "false": False}.get(value.lower(), value.lower())
    if not any(value is a if isinstance(a, bool) else value == a for a in allowed):
        shown = " | ".join(f'"{a}"' if isinstance(a, str) else str(a).lower() for a in allowed)
        raise ConfigError(f"yolo decoder param {key!r} must be {shown}, got {value!r}")
    return value


def _int(params: Any, key: str, default: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"yolo decoder param {key!r} must be an integer >= 0 (0 = no cap), got {value!r}"
        )
    return value
