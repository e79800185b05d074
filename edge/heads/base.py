"""What every decoder family shares: the tensor description it is built from, and its interface.

A decoder turns the model's raw output tensors into :class:`~edge.frame.Detections` with boxes
and keypoints in *model-input pixels* (the letterboxed tensor's coordinates). The detector then
maps them back to frame pixels; decoders never see the original image.

Decoders are built once per model (anchors, index lookups and scratch buffers are made there)
and called per frame, so ``decode`` must be vectorised: no Python loop over anchors or boxes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from edge.frame import Detections


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """An output tensor as the interpreter describes it (name, shape, dtype, position)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    index: int = 0

    def describe(self) -> str:
        return f"{self.name or '?'}{list(self.shape)}"


def describe_outputs(outputs: Sequence[TensorInfo]) -> str:
    return ", ".join(t.describe() for t in outputs)


@dataclass(frozen=True, slots=True)
class DecodeSpec:
    """Everything a decoder needs to know besides the tensors.

    input_w, input_h   model input size in pixels
    params             family-specific parameters from the manifest (``[model.decoder]``)
    labels             class names by id
    score_threshold    detections below this are dropped
    iou_threshold      NMS overlap threshold
    max_detections     cap after NMS
    nms                "greedy" (OpenCV) or "weighted" (MediaPipe's score-weighted merge)
    """

    input_w: int
    input_h: int
    params: Mapping[str, Any]
    labels: Sequence[str] = ()
    score_threshold: float = 0.5
    iou_threshold: float = 0.45
    max_detections: int = 100
    nms: str = "greedy"


class PixelMap(Protocol):
    """Model-input pixels -> frame pixels, ``x_f = (x - ox) / sx``, ``y_f = (y - oy) / sy``,
    boxes clipped to the frame (:class:`edge.preprocess.Transform` is one)."""

    @property
    def sx(self) -> float: ...
    @property
    def sy(self) -> float: ...
    @property
    def ox(self) -> float: ...
    @property
    def oy(self) -> float: ...
    @property
    def frame_w(self) -> int: ...
    @property
    def frame_h(self) -> int: ...

    def boxes_to_frame(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

    def points_to_frame(self, pts: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...


class Decoder(ABC):
    """One output family (``mediapipe``, ``ssd``, ``yolo`` ...)."""

    family: ClassVar[str]
    #: manifest parameters this family accepts (anything else is a config error)
    param_names: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    @abstractmethod
    def mismatch(cls, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> str | None:
        """``None`` if this family can decode these outputs, else the reason it cannot."""

    @abstractmethod
    def __init__(self, outputs: Sequence[TensorInfo], spec: DecodeSpec) -> None: ...

    @abstractmethod
    def decode(self, tensors: Sequence[npt.NDArray[np.float32]]) -> Detections:
        """Detections in model-input pixels from float32 output tensors (dequantized, in the
        interpreter's output order)."""

    def decode_mapped(
        self, tensors: Sequence[npt.NDArray[np.float32]], to_frame: PixelMap
    ) -> Detections:
        """:meth:`decode`, then boxes and keypoints mapped to frame pixels by ``to_frame`` (in
        place). A family whose arithmetic is linear may fold the mapping into its own and
        save the per-frame passes; the result is the same up to float rounding."""
        det = self.decode(tensors)
        if len(det):
            to_frame.boxes_to_frame(det.boxes)
            if det.keypoints is not None:
                to_frame.points_to_frame(det.keypoints)
        return det
