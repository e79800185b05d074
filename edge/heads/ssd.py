"""The ``ssd`` family: models ending in TFLite's ``TFLite_Detection_PostProcess`` op.

SSD MobileNet (TF1 and TF2 Object Detection API), EfficientDet-Lite, Coral's detection models and
Model Maker exports. The op has already decoded anchors and run NMS; it hands over four float32
tensors::

    boxes    (1, N, 4)  ymin, xmin, ymax, xmax, normalised to [0, 1]
    classes  (1, N)     class index as a float (0 = first real class, no background)
    scores   (1, N)     sorted descending
    count    (1,)       how many of the N rows are valid

Which output is which must be worked out: the interpreter's output *order* changed between
exporters, and classes and scores have the same shape. What we found, and rely on:

* TF1 ``export_tflite_ssd_graph.py`` (and Coral's models): order boxes, classes, scores, count,
  named ``TFLite_Detection_PostProcess``, ``:1``, ``:2``, ``:3`` (tensorflow/tensorflow#20962).
* TF2 exports (``export_tflite_graph_tf2.py``, Model Maker EfficientDet-Lite): order scores,
  boxes, count, classes, named ``StatefulPartitionedCall:1, :3, :0, :2``, i.e. ``:0`` count,
  ``:1`` scores, ``:2`` classes, ``:3`` boxes (tensorflow/flutter-tflite#176; the Model Maker
  tutorial's ``detect_objects``; pycoral ``adapters/detect.py`` reads signature outputs
  ``output_0..3`` as count, scores, classes, boxes).
* The op's output *ports* are boxes, classes, scores, count, and the converter gives them
  ascending tensor indices in that order whatever the output order is (tflite-support
  ``metadata_writers/object_detector.py`` relies on this).

So: boxes and count by shape; classes vs scores by name (the tables above, then words such as
``class``/``score``), then by tensor index, then by pycoral's rule (count last means TF1 order).
The manifest can settle it: ``outputs = {boxes = NAME, classes = NAME, scores = NAME,
count = NAME}``. ``label_offset`` is added to class ids, for label files that start with a
background entry (COCO's ``???``). NMS has run inside the op, so the model's ``nms`` kind does
not apply here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge.errors import ConfigError, ModelInvalid
from edge.frame import Detections
from edge.heads.base import Decoder, DecodeSpec, TensorInfo, describe_outputs

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("boxes", "classes", "scores", "count")
# name -> role for the two known exporters
_TF1 = {
    "TFLite_Detection_PostProcess": "boxes",
    "TFLite_Detection_PostProcess:1": "classes",
    "TFLite_Detection_PostProcess:2": "scores",
    "TFLite_Detection_PostProcess:3": "count",
}
_TF2 = {0: "count", 1: "scores", 2: "classes", 3: "boxes"}
_TF2_NAME = re.compile(r"StatefulPartitionedCall(?:_\d+)?:(\d)$")
_WORDS = {"classes": ("class", "categor", "label"), "scores": ("score", "conf")}


class _Unfit(Exception):
    """The outputs do not fit; ``config`` marks a fault in the manifest, not in the model."""

    def __init__(self, reason: str, config: bool = False) -> None:
        super().__init__(reason)
        self.config = config


class SSDDecoder(Decoder):
    family: ClassVar[str] = "ssd"
    param_names: ClassVar[frozenset[str]] = frozenset({"outputs", "label_offset"})

    @classmethod
    def mismatch(cls, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> str | None:
        try:
            _assign(outputs, spec.params.get("outputs"))
        except _Unfit as e:
            return str(e)
        return None

    def __init__(self, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> None:
        try:
            pos, how = _assign(outputs, spec.params.get("outputs"))
        except _Unfit as e:
            raise (ConfigError if e.config else ModelInvalid)(
                f"ssd decoder: {e} (model outputs: {describe_outputs(outputs)})"
            ) from None
        self._boxes, self._classes, self._scores, self._count = (pos[r] for r in ROLES)
        self._names = {r: outputs[pos[r]].name for r in ROLES}
        offset = spec.params.get("label_offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise ConfigError(
                f"ssd decoder param 'label_offset' must be an integer (1 for a label file whose "
                f"first line is a background entry such as '???'), got {offset!r}"
            )
        self._offset = offset
        self._spec = spec
        w, h = float(spec.input_w), float(spec.input_h)
        # ymin, xmin, ymax, xmax (normalised) -> x1, y1, x2, y2 (input pixels)
        self._order = np.array([1, 0, 3, 2])
        self._size = np.array([w, h, w, h], np.float32)
        log.info("ssd outputs (%s): %s", how, ", ".join(f"{r}={self._names[r]!r}" for r in ROLES))

    def decode(self, tensors: Sequence[npt.NDArray[np.float32]]) -> Detections:
        boxes = tensors[self._boxes].reshape(-1, 4)
        n = boxes.shape[0]
        count = int(np.clip(np.rint(tensors[self._count].reshape(-1)[0]), 0, n))
        scores = tensors[self._scores].reshape(-1)[:count]
        self._check_scores(scores)
        keep = np.flatnonzero(scores >= self._spec.score_threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")]  # the op sorts; make sure
        if self._spec.max_detections > 0:
            keep = keep[: self._spec.max_detections]
        xyxy = boxes[keep][:, self._order] * self._size
        np.clip(xyxy, 0.0, self._size, out=xyxy)
        classes = tensors[self._classes].reshape(-1)[keep]
        class_ids = np.rint(classes).astype(np.int32) + np.int32(self._offset)
        return Detections(
            xyxy.astype(np.float32, copy=False),
            scores[keep].astype(np.float32, copy=False),
            class_ids,
            None,
            self._spec.labels,
        )

    def _check_scores(self, scores: npt.NDArray[np.float32]) -> None:
        # class ids read as scores (classes and scores swapped) show up as values above 1
        if scores.size and float(scores.max()) > 1.0 + 1e-3:
            raise ModelInvalid(
                f"ssd decoder: expected scores in [0, 1] in output {self._names['scores']!r}, "
                f"got up to {float(scores.max()):.3g}: classes and scores are probably swapped. "
                f"Set [model.decoder] outputs = {{classes = {self._names['scores']!r}, "
                f"scores = {self._names['classes']!r}, ...}} in the manifest"
            )


def _assign(outputs: Sequence[TensorInfo], override: Any) -> tuple[dict[str, int], str]:
    """Position of each role in ``outputs``, and how it was decided."""
    if len(outputs) != 4:
        raise _Unfit(
            f"expected the 4 outputs of TFLite_Detection_PostProcess (boxes (1,N,4), classes "
            f"(1,N), scores (1,N), count (1,)), got {len(outputs)}"
        )
    shapes = [tuple(t.shape) for t in outputs]
    if override is not None:
        pos = _by_override(outputs, override)
        _check_override_shapes(outputs, pos)
        return pos, "from the manifest"
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[0] == 1 and s[2] == 4]
    count = [i for i, s in enumerate(shapes) if int(np.prod(s)) == 1 and len(s) <= 2]
    if len(boxes) != 1 or len(count) != 1:
        raise _Unfit(
            f"expected one (1,N,4) boxes output and one (1,) count output, got "
            f"{len(boxes)} and {len(count)}"
        )
    n = shapes[boxes[0]][1]
    pair = [i for i in range(4) if i not in (boxes[0], count[0])]
    if any(shapes[i] not in ((1, n), (n,)) for i in pair):
        raise _Unfit(
            f"expected classes and scores of shape (1,{n}) beside boxes (1,{n},4), got "
            f"{', '.join(str(list(shapes[i])) for i in pair)}"
        )
    classes, how = _pick_classes(outputs, pair, boxes[0], count[0])
    scores = pair[1] if classes == pair[0] else pair[0]
    return {"boxes": boxes[0], "classes": classes, "scores": scores, "count": count[0]}, how


def _pick_classes(
    outputs: Sequence[TensorInfo], pair: list[int], boxes: int, count: int
) -> tuple[int, str]:
    """Which of the two (1, N) outputs holds the classes."""
    roles = _roles_by_name(outputs)
    if roles is not None and roles[boxes] == "boxes" and roles[count] == "count":
        return next(i for i in pair if roles[i] == "classes"), "by tensor names"
    for i in pair:
        name = outputs[i].name.lower()
        other = outputs[pair[1] if i == pair[0] else pair[0]].name.lower()
        if any(w in name for w in _WORDS["classes"]) and any(w in other for w in _WORDS["scores"]):
            return i, "by tensor names"
    a, b = (outputs[i].index for i in pair)
    if a != b:  # the op's ports are boxes, classes, scores, count in ascending tensor index
        return (pair[0] if a < b else pair[1]), "by tensor index"
    # pycoral's rule: count last means the TF1 order (classes first), else TF2 (scores first)
    return (pair[0] if count == 3 else pair[1]), "by output order"


def _roles_by_name(outputs: Sequence[TensorInfo]) -> list[str] | None:
    tf1 = [_TF1.get(t.name) for t in outputs]
    if all(r is not None for r in tf1) and len(set(tf1)) == 4:
        return [r for r in tf1 if r is not None]
    matches = [_TF2_NAME.search(t.name) for t in outputs]
    tf2 = [_TF2.get(int(m.group(1))) if m else None for m in matches]
    if all(r is not None for r in tf2) and len(set(tf2)) == 4:
        return [r for r in tf2 if r is not None]
    return None


def _check_override_shapes(outputs: Sequence[TensorInfo], pos: dict[str, int]) -> None:
    box_shape = tuple(outputs[pos["boxes"]].shape)
    n = box_shape[1] if len(box_shape) == 3 else -1
    want: dict[str, tuple[tuple[int, ...], ...]] = {
        "boxes": ((1, n, 4),),
        "classes": ((1, n), (n,)),
        "scores": ((1, n), (n,)),
        "count": ((1,), (1, 1), ()),
    }
    bad = [
        f"{r}={outputs[pos[r]].describe()}"
        for r in ROLES
        if tuple(outputs[pos[r]].shape) not in want[r]
    ]
    if bad:
        raise _Unfit(
            f"param 'outputs' picks tensors of the wrong shape: {', '.join(bad)}; expected "
            f"boxes (1,N,4), classes (1,N), scores (1,N), count (1,)",
            config=True,
        )


def _by_override(outputs: Sequence[TensorInfo], override: Any) -> dict[str, int]:
    if not isinstance(override, Mapping) or set(override) != set(ROLES):
        got = sorted(override) if isinstance(override, Mapping) else repr(override)
        raise _Unfit(
            f"param 'outputs' must be a table with exactly the keys {list(ROLES)} naming output "
            f"tensors, got {got}",
            config=True,
        )
    names = [t.name for t in outputs]
    pos: dict[str, int] = {}
    for role in ROLES:
        name = override[role]
        if name not in names:
            raise _Unfit(
                f"param 'outputs' names {role} = {name!r}, but the model has no output of that "
                f"name; use one of {names}",
                config=True,
            )
        pos[role] = names.index(name)
    if len(set(pos.values())) != 4:
        raise _Unfit(f"param 'outputs' names one tensor twice: {dict(override)}", config=True)
    return pos
