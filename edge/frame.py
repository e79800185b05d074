"""The records that flow through the pipeline: a :class:`Frame` in, :class:`Detections` out.

A frame is stamped once, at capture, with a monotonic time; stages add their durations to
``stages_ns`` as it moves (the record itself is frozen; its timing table is filled in place so
no new record is allocated per stage). Detections stay as arrays per field, as supervision
does, so NMS and the letterbox undo stay vectorised; they become dicts only at the edge of
the process (JSON, HTTP, logs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]
Image = npt.NDArray[np.uint8]

#: stage names, in the order a frame meets them
STAGES: tuple[str, ...] = (
    "wait",
    "decode",
    "preprocess",
    "infer",
    "postprocess",
    "overlay",
    "publish",
)


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame.

    ``image`` is a decoded BGR ``(H, W, 3)`` uint8 array, or ``None`` when the source handed
    over compressed ``jpeg`` bytes (MJPEG webcams): the worker decodes those itself so that
    decoding is timed as its own stage and can use a reduced-size decode.
    """

    seq: int
    t_capture_ns: int
    image: Image | None = None
    jpeg: bytes | None = None
    source: str = ""
    stages_ns: dict[str, int] = field(default_factory=dict)

    def add_stage(self, stage: str, ns: int) -> None:
        self.stages_ns[stage] = self.stages_ns.get(stage, 0) + ns


@dataclass(frozen=True, slots=True)
class Detections:
    """Detections as arrays per field.

    boxes      (N, 4) float32  x1, y1, x2, y2 in pixels (of the model input or of the frame,
                               depending on where in the pipeline you look: decoders give
                               model-input pixels, the detector maps them to frame pixels)
    scores     (N,)   float32
    class_ids  (N,)   int32
    keypoints  (N, K, 2) float32 pixels, or None when the model has none
    labels     names indexed by class id
    """

    boxes: FloatArray
    scores: FloatArray
    class_ids: IntArray
    keypoints: FloatArray | None = None
    labels: Sequence[str] = ()

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be (N, 4), got {self.boxes.shape}")
        if self.scores.shape != (n,) or self.class_ids.shape != (n,):
            raise ValueError(
                f"scores and class_ids must be ({n},), got {self.scores.shape} and "
                f"{self.class_ids.shape}"
            )
        if self.keypoints is not None and (
            self.keypoints.ndim != 3 or self.keypoints.shape[0] != n or self.keypoints.shape[2] != 2
        ):
            raise ValueError(f"keypoints must be ({n}, K, 2), got {self.keypoints.shape}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, num_keypoints: int = 0, labels: Sequence[str] = ()) -> Detections:
        kps = np.zeros((0, num_keypoints, 2), np.float32) if num_keypoints else None
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.int32),
            kps,
            labels,
        )

    def label(self, i: int) -> str:
        cid = int(self.class_ids[i])
        return self.labels[cid] if 0 <= cid < len(self.labels) else str(cid)

    def select(self, idx: npt.NDArray[np.intp] | slice) -> Detections:
        """The detections at ``idx`` (an index array or slice), labels kept."""
        return Detections(
            self.boxes[idx],
            self.scores[idx],
            self.class_ids[idx],
            None if self.keypoints is None else self.keypoints[idx],
            self.labels,
        )

    def to_dicts(self, ndigits: int = 1) -> list[dict[str, Any]]:
        """JSON-ready records: ``{"label", "score", "box", ["keypoints"]}``."""
        out: list[dict[str, Any]] = []
        boxes = np.round(self.boxes.astype(np.float64), ndigits).tolist()
        scores = np.round(self.scores.astype(np.float64), 4).tolist()
        kps = (
            None
            if self.keypoints is None
            else np.round(self.keypoints.astype(np.float64), ndigits).tolist()
        )
        for i in range(len(self)):
            rec: dict[str, Any] = {"label": self.label(i), "score": scores[i], "box": boxes[i]}
            if kps is not None:
                rec["keypoints"] = kps[i]
            out.append(rec)
        return out
