"""The ``decode`` stage: from what the source delivered to the image the detector works on.

JPEG bytes (an MJPEG camera, an HTTP stream, a folder of photos) are decoded with libjpeg's
DCT scaling: the largest reduction (1, 2, 4 or 8) that still leaves the frame's short side at
least the model input's long side, so the preprocessor's warp only ever downsamples and the
decoder touches up to 64 times fewer pixels. A camera frame that carries an ISP-scaled
``lores`` image of the same aspect (picamera2) is used as it is, at no CPU cost. Either way
the stage says how many times smaller its image is than the frame, so that boxes are mapped
back to frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.errors import ImageError
from edge.frame import Frame, Image
from edge.imagefile import jpeg_header


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker without decoding; None if not found (the
    header parser the image-file limits use, :func:`edge.imagefile.jpeg_header`)."""
    head = jpeg_header(data)
    return (head.width, head.height) if head is not None and head.width and head.height else None


_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def reduction_for(frame_w: int, frame_h: int, in_w: int, in_h: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4, 8) that keeps the frame's short side at least as
    large as the model input's long side, so the warp still only ever downsamples."""
    need = max(in_w, in_h)
    for f, _ in _REDUCED:
        if min(frame_w, frame_h) // f >= need:
            return f
    return 1


def decode_jpeg(data: bytes, factor: int = 1) -> Image:
    """Decode JPEG bytes to BGR, ``factor`` times smaller in each dimension (DCT scaling)."""
    flag = dict(_REDUCED).get(factor, cv2.IMREAD_COLOR)
    img: Image | None = cv2.imdecode(np.frombuffer(data, np.uint8), flag)  # type: ignore[assignment]
    if img is None:
        raise ImageError(f"corrupt or truncated JPEG frame ({len(data)} bytes)")
    return img


class FrameDecoder:
    """The decode stage for one model input size; the reduction is planned once per JPEG size."""

    def __init__(self, input_w: int, input_h: int) -> None:
        self.input_w, self.input_h = input_w, input_h
        self._reduce_cache: tuple[int, int, int] | None = None

    def decode(self, frame: Frame) -> tuple[Image, float]:
        """The image to detect on and how many times smaller it is than the frame.

        JPEG bytes: a DCT-reduced decode (factor 1, 2, 4 or 8). A camera frame that carries an
        ISP-scaled ``lores`` image of the same aspect (picamera2): that image, at no CPU cost.
        Otherwise the frame's own image, factor 1. Boxes are mapped back to frame pixels.
        """
        if frame.jpeg is None:
            assert frame.image is not None
            lores: Image | None = getattr(frame, "lores", None)
            if lores is not None:
                h, w = frame.image.shape[:2]
                lh, lw = lores.shape[:2]
                if w * lh == h * lw and lw < w:
                    return lores, w / lw
            return frame.image, 1
        f = self._reduction(frame.jpeg)
        return decode_jpeg(frame.jpeg, f), f

    def _reduction(self, jpeg: bytes) -> int:
        size = jpeg_size(jpeg)
        if size is None:
            return 1
        c = self._reduce_cache
        if c is None or c[:2] != size:
            c = (*size, reduction_for(size[0], size[1], self.input_w, self.input_h))
            self._reduce_cache = c
        return c[2]


__all__ = ["FrameDecoder", "decode_jpeg", "jpeg_size", "reduction_for"]
