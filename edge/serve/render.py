"""Turning a published result into JPEGs: draw the overlay once, encode once per width.

Runs on the server's render thread only, never on the worker's: :class:`Published` is what
the worker leaves behind (references, no copies), :func:`render` draws on a copy of the
image, and :class:`Rendered` encodes and caches one JPEG per requested width, so every viewer
of a frame at a given width shares the same bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.decode import decode_jpeg, jpeg_size
from edge.frame import Detections, Frame, Image
from edge.overlay import draw

#: frames that reach the render thread as JPEG bytes only are decoded at a DCT reduction that
#: keeps them at least this wide (a viewer never needs the full 12 MP of a camera)
MIN_DECODE_WIDTH = 640


@dataclass(frozen=True, slots=True)
class Published:
    """The worker's newest result, as left by ``publish`` (O(1): references only).

    ``image`` is the decoded image the detections were computed on when the worker had one
    (it may be a reduced decode of a JPEG frame); otherwise the frame's own image or JPEG
    is used. ``stale_age_ms`` is set when the detections were reused from an older frame.
    """

    version: int
    frame: Frame
    detections: Detections
    image: Image | None
    stale_age_ms: float | None
    missed: bool


class Rendered:
    """One drawn overlay frame and its JPEG encodings by width (None: the native width)."""

    def __init__(self, version: int, seq: int, canvas: Image, quality: int) -> None:
        self.version, self.seq, self.canvas, self.quality = version, seq, canvas, quality
        self.height, self.width = canvas.shape[:2]
        self._jpegs: dict[int | None, bytes] = {}
        self._lock = threading.Lock()

    def key(self, width: int | None) -> int | None:
        """The cache key for a requested width: None for native (never upscaled)."""
        return None if width is None or width >= self.width else width

    def cached(self, width: int | None) -> bytes | None:
        with self._lock:
            return self._jpegs.get(self.key(width))

    def jpeg(self, width: int | None) -> bytes:
        """The JPEG at ``width`` (aspect kept), encoded on first request and then shared."""
        key = self.key(width)
        with self._lock:
            hit = self._jpegs.get(key)
        if hit is not None:
            return hit
        img: npt.NDArray[Any] = self.canvas
        if key is not None:
            height = max(1, round(self.height * key / self.width))
            img = cv2.resize(img, (key, height), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # pragma: no cover - OpenCV encodes any 8-bit BGR image
            raise RuntimeError(f"JPEG encoding failed for a {img.shape} image")
        data = buf.tobytes()
        with self._lock:
            return self._jpegs.setdefault(key, data)


def render(pub: Published, hud: Sequence[str], quality: int) -> Rendered | None:
    """Draw ``pub`` on a copy of its image; None when the frame carries no usable image."""
    frame = pub.frame
    image = pub.image if pub.image is not None else _frame_image(frame)
    if image is None:
        return None
    canvas = np.ascontiguousarray(image).copy()
    det = _to_image(pub.detections, _frame_size(frame, image), canvas.shape[1], canvas.shape[0])
    draw(canvas, det, stale_age_ms=pub.stale_age_ms, hud=hud, missed=pub.missed)
    return Rendered(pub.version, frame.seq, canvas, quality)


def _frame_image(frame: Frame) -> Image | None:
    if frame.image is not None:
        return frame.image
    if frame.jpeg is None:
        return None
    size = jpeg_size(frame.jpeg)
    factor = 1
    if size is not None:
        while factor < 8 and size[0] // (factor * 2) >= MIN_DECODE_WIDTH:
            factor *= 2
    try:
        return decode_jpeg(frame.jpeg, factor)
    except ValueError:  # a corrupt frame has nothing to show
        return None


def _frame_size(frame: Frame, image: Image) -> tuple[int, int]:
    """(width, height) of the frame the detections' pixel coordinates refer to.

    The detector maps boxes to the full frame even when it decoded a JPEG reduced, so a
    reduced image needs its boxes scaled down."""
    if frame.jpeg is not None:
        size = jpeg_size(frame.jpeg)
        if size is not None:
            return size
    ref = frame.image if frame.image is not None else image
    return int(ref.shape[1]), int(ref.shape[0])


def _to_image(det: Detections, frame_wh: tuple[int, int], w: int, h: int) -> Detections:
    sx, sy = w / frame_wh[0], h / frame_wh[1]
    if abs(sx - 1.0) < 1e-6 and abs(sy - 1.0) < 1e-6:
        return det
    scale = np.array([sx, sy, sx, sy], np.float32)
    kps = None if det.keypoints is None else det.keypoints * np.array([sx, sy], np.float32)
    return Detections(det.boxes * scale, det.scores, det.class_ids, kps, det.labels)
