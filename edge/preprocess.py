"""From camera bytes to the model's input tensor, and from tensor pixels back to frame pixels.

The resize is a single affine warp from the frame straight into a preallocated model-sized
buffer, sampled the way MediaPipe's ImageToTensorCalculator (OpenCV backend) does it: the ROI's
corners map onto the tensor's corners with *no* half-pixel offset, bilinear, zero border. A
``cv2.resize``-based letterbox samples on a different grid (pixel centres) and moves boxes by
a fraction of a pixel, which costs ~0.1 IoU on small faces against MediaPipe's own results.

Normalisation and, for quantized models, quantisation are folded into one affine step
``q = alpha * pixel + beta`` written straight into the interpreter's input buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ImageError
from edge.frame import Image

#: normalisation name -> (a, b) with real = a * pixel + b
NORMALISATIONS: dict[str, tuple[float, float]] = {
    "[-1,1]": (2.0 / 255.0, -1.0),
    "[0,1]": (1.0 / 255.0, 0.0),
    "raw": (1.0, 0.0),
}
RESIZE_MODES = ("letterbox", "stretch")


_VECTORS: dict[Transform, tuple[npt.NDArray[np.float32], ...]] = {}


@dataclass(frozen=True, slots=True)
class Transform:
    """Frame pixels -> tensor pixels: ``x_t = sx * x + ox``, ``y_t = sy * y + oy``."""

    sx: float
    sy: float
    ox: float
    oy: float
    frame_w: int
    frame_h: int

    @classmethod
    def fit(cls, frame_w: int, frame_h: int, in_w: int, in_h: int, mode: str) -> Transform:
        if mode == "stretch":
            return cls(in_w / frame_w, in_h / frame_h, 0.0, 0.0, frame_w, frame_h)
        # letterbox: pad the frame (centred) to the tensor's aspect ratio, as MediaPipe's PadRoi
        roi_w, roi_h = float(frame_w), float(frame_h)
        if frame_w * in_h > frame_h * in_w:
            roi_h = frame_w * in_h / in_w
        else:
            roi_w = frame_h * in_w / in_h
        s = in_w / roi_w
        x0, y0 = (frame_w - roi_w) / 2.0, (frame_h - roi_h) / 2.0
        return cls(s, in_h / roi_h, -x0 * s, -y0 * (in_h / roi_h), frame_w, frame_h)

    def matrix(self) -> npt.NDArray[np.float64]:
        return np.array([[self.sx, 0.0, self.ox], [0.0, self.sy, self.oy]], np.float64)

    def boxes_to_frame(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Undo the warp for (N, 4) x1,y1,x2,y2 boxes, in place; clipped to the frame."""
        off, scale, hi = self._vectors()
        np.subtract(boxes, off, out=boxes)
        np.divide(boxes, scale, out=boxes)
        np.clip(boxes, 0.0, hi, out=boxes)
        return boxes

    def points_to_frame(self, pts: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Undo the warp for (..., 2) points, in place (not clipped: keypoints may lie outside)."""
        off, scale, _ = self._vectors()
        np.subtract(pts, off[:2], out=pts)
        np.divide(pts, scale[:2], out=pts)
        return pts

    def _vectors(self) -> tuple[npt.NDArray[np.float32], ...]:
        # computed once per transform (a camera's transform never changes): per-frame undo is
        # three array operations on the boxes and two on the keypoints
        v = _VECTORS.get(self)
        if v is None:
            v = (
                np.array([self.ox, self.oy] * 2, np.float32),
                np.array([self.sx, self.sy] * 2, np.float32),
                np.array([self.frame_w, self.frame_h] * 2, np.float32),
            )
            if len(_VECTORS) > 64:
                _VECTORS.clear()
            _VECTORS[self] = v
        return v

    def scaled(self, factor: float) -> Transform:
        """The transform for the same frame decoded ``factor`` times smaller (reduced JPEG)."""
        return Transform(
            self.sx * factor,
            self.sy * factor,
            self.ox,
            self.oy,
            round(self.frame_w / factor),
            round(self.frame_h / factor),
        )


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker without decoding; None if not found."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        seg_len = (data[i + 2] << 8) | data[i + 3]
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = (data[i + 5] << 8) | data[i + 6]
            w = (data[i + 7] << 8) | data[i + 8]
            return (w, h) if w and h else None
        i += 2 + seg_len
    return None


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


def to_bgr8(img: npt.NDArray[Any]) -> Image:
    """Any image OpenCV reads (gray, BGRA, 16-bit, float) as 3-channel uint8 BGR."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        f = img.astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        img = ((f - lo) * (255.0 / (hi - lo or 1.0))).astype(np.uint8)
    out: Image
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)  # type: ignore[assignment]
        return out
    if img.ndim == 3 and img.shape[2] == 4:
        out = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)  # type: ignore[assignment]
        return out
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ImageError(f"unsupported image layout {img.shape}: expected gray, BGR or BGRA")


def model_image(image: npt.NDArray[Any]) -> Image:
    """``image`` as the BGR uint8 ``(H, W, 3)`` the preprocessor warps: gray, BGRA, 16-bit and
    float are converted; :class:`ImageError` for anything else, an empty image included.

    Call it before taking a view into the model's input: an exception raised while such a
    view lives keeps it alive (in the traceback) and the interpreter refuses to invoke."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        image = to_bgr8(image)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"empty image {image.shape}: nothing to detect on")
    return image


class Preprocessor:
    """Warps a BGR frame into a model's input buffer; every buffer is allocated here, once."""

    def __init__(
        self,
        in_w: int,
        in_h: int,
        channels: int,
        dtype: np.dtype[Any],
        normalization: str,
        resize: str = "letterbox",
        rgb: bool = True,
        quant: tuple[float, int] = (0.0, 0),
    ) -> None:
        if normalization not in NORMALISATIONS:
            raise ValueError(f"normalization {normalization!r}: expected {list(NORMALISATIONS)}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize {resize!r}: expected {list(RESIZE_MODES)}")
        self.in_w, self.in_h, self.channels, self.resize = in_w, in_h, channels, resize
        self._warp = np.zeros((in_h, in_w, 3), np.uint8)
        self._conv: Image | None = None
        self._code: int | None = None
        if channels == 1:
            self._code = cv2.COLOR_BGR2GRAY
            self._conv = np.zeros((in_h, in_w), np.uint8)
        elif rgb:
            self._code = cv2.COLOR_BGR2RGB
            self._conv = np.zeros((in_h, in_w, 3), np.uint8)
        a, b = NORMALISATIONS[normalization]
        scale, zp = quant
        self.dtype = np.dtype(dtype)
        self.quantized = self.dtype != np.float32
        if self.quantized and scale:
            a, b = a / scale, b / scale + zp
        self.alpha, self.beta = np.float32(a), np.float32(b)
        self.identity = self.quantized and abs(a - 1) < 1e-6 and abs(b) < 1e-3
        if self.quantized:
            info = np.iinfo(self.dtype)
            self._lo, self._hi = info.min, info.max
            self._f32 = np.zeros(self._warp.shape[:2] + ((3,) if channels == 3 else ()), np.float32)
        # the transform and its matrix for the last frame size (a camera's size never changes)
        self._cache: tuple[int, int, Transform, npt.NDArray[np.float64]] | None = None

    def transform_for(self, w: int, h: int) -> Transform:
        return self._fit(w, h)[2]

    def _fit(self, w: int, h: int) -> tuple[int, int, Transform, npt.NDArray[np.float64]]:
        c = self._cache
        if c is None or c[0] != w or c[1] != h:
            t = Transform.fit(w, h, self.in_w, self.in_h, self.resize)
            c = (w, h, t, t.matrix())
            self._cache = c
        return c

    def __call__(self, image: Image, dst: npt.NDArray[Any]) -> Transform:
        """Warp ``image`` (BGR uint8, see :func:`model_image`) into ``dst`` (the model input
        view, (H, W, C))."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
            # warpAffine would write a new array of the image's own layout and leave _warp
            # holding the previous frame: the model would see that frame again
            raise ImageError(f"expected a BGR uint8 image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        _, _, t, m = self._fit(w, h)
        cv2.warpAffine(
            image,
            m,
            (self.in_w, self.in_h),
            dst=self._warp,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        px = self._warp
        if self._code is not None and self._conv is not None:
            cv2.cvtColor(self._warp, self._code, dst=self._conv)
            px = self._conv
        if self.channels == 1:
            px = px[..., None]
        self._normalise(px, dst)
        return t

    def _normalise(self, px: Image, dst: npt.NDArray[Any]) -> None:
        if not self.quantized:
            np.multiply(px, self.alpha, out=dst, casting="unsafe")
            np.add(dst, self.beta, out=dst)
        elif self.identity and self.dtype == np.uint8:
            np.copyto(dst, px)
        else:
            f = self._f32.reshape(dst.shape)
            np.multiply(px, self.alpha, out=f, casting="unsafe")
            np.add(f, self.beta, out=f)
            np.rint(f, out=f)
            np.clip(f, self._lo, self._hi, out=f)
            np.copyto(dst, f, casting="unsafe")
