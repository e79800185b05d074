"""From camera bytes to the model's input tensor, and from tensor pixels back to frame pixels.

The resize is one bilinear resampling from the frame straight into a preallocated buffer (only
the tensor rows a letterboxed frame reaches; the pad rows are filled, not resampled), done the
way MediaPipe's ImageToTensorCalculator (OpenCV backend) does it, to the bit: the ROI's corners
map onto the tensor's corners with *no* half-pixel offset (``cv::getPerspectiveTransform`` on
``cv::boxPoints``), and ``cv::warpPerspective`` samples with OpenCV 3.4's fixed-point bilinear
(coordinates rounded to 1/32 pixel, 15-bit weights), the OpenCV that MediaPipe's wheels link.
OpenCV >= 4.11's own warps compute their weights in floating point and differ by one level on
some pixels, which moved face-full's boxes by up to 1.3 px (IoU 0.973) against MediaPipe's. So
the sampling positions and weights are computed once per frame size, as OpenCV 3.4 does, into
fixed-point maps, and each frame is one ``cv2.remap`` with them (whose fixed-point path is that
same arithmetic). A ``cv2.resize``-based letterbox samples on another grid (pixel centres) and
costs ~0.1 IoU on small faces.

Normalisation and, for quantized models, quantisation are folded into one affine step
``q = alpha * pixel + beta`` written straight into the interpreter's input buffer.

This runs once per frame right after the decode stage (:mod:`edge.decode`) and before
invoke(), with caches that the previous invoke flushed: the cost is in the number of
OpenCV/NumPy calls and in the bytes they touch, so there are few of each (see
:class:`Preprocessor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Transform:
    """Frame pixels -> tensor pixels: ``x_t = sx * x + ox``, ``y_t = sy * y + oy``."""

    sx: float
    sy: float
    ox: float
    oy: float
    frame_w: int
    frame_h: int
    # offsets, scales and frame bounds as float32 vectors, made once per transform (a camera's
    # transform never changes): per-frame undo is three array operations on the boxes and two
    # on the keypoints
    _off: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    _scale: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    _hi: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_off", np.array([self.ox, self.oy] * 2, np.float32))
        object.__setattr__(self, "_scale", np.array([self.sx, self.sy] * 2, np.float32))
        object.__setattr__(self, "_hi", np.array([self.frame_w, self.frame_h] * 2, np.float32))

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
        np.subtract(boxes, self._off, out=boxes)
        np.divide(boxes, self._scale, out=boxes)
        np.minimum(boxes, self._hi, out=boxes)  # np.clip's wrapper costs twice these two
        np.maximum(boxes, 0.0, out=boxes)
        return boxes

    def points_to_frame(self, pts: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Undo the warp for (..., 2) points, in place (not clipped: keypoints may lie outside)."""
        np.subtract(pts, self._off[:2], out=pts)
        np.divide(pts, self._scale[:2], out=pts)
        return pts

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


#: OpenCV's fixed-point sampling: coordinates in 1/32 pixel (INTER_BITS), weights in 1/32768
INTER_BITS = 5
INTER_TAB = 1 << INTER_BITS
#: warpPerspective works in blocks of this many columns, each from its own start (same doubles)
_BLOCK_W = 64

_FROM_BGR = {1: cv2.COLOR_BGR2GRAY, 3: None}


@dataclass(frozen=True, slots=True)
class _Fit:
    """What one frame size needs (a camera's size never changes): its transform; the band of
    tensor rows [r0, r1) the frame reaches (a letterbox pads the rest with black, written
    without sampling it) and the fixed-point maps that sample the frame into that band
    (``xy``: integer source pixel, ``frac``: its 1/32 fractions, see :func:`sampling_maps`);
    scratch buffers for the band."""

    w: int
    h: int
    t: Transform
    r0: int
    r1: int
    xy: npt.NDArray[np.int16]
    frac: npt.NDArray[np.uint16]
    warped: Image
    px: Image


class Preprocessor:
    """Warps a BGR frame into a model's input buffer; every buffer is allocated here, once
    per frame size.

    Per frame (colour float model, 4:3 frame): one ``cv2.remap`` into the rows of the tensor
    the frame reaches, one cvtColor to the model's channel order, then
    the normalisation as one ``cv2.LUT`` pass: a uint8 pixel has 256 values, so
    ``float32(px) * alpha + beta`` (and, for quantized models, its rounding and clamping) is
    computed once per value at start-up, by the same arithmetic, and looked up per pixel
    (bit-identical, a third of three NumPy passes). With ``keep_pad`` (the detector, whose
    ``dst`` is always the same interpreter input tensor, which the interpreter never writes and
    never moves: the runner allocates once) the letterbox's pad rows are written once per
    band, not per frame."""

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
        swap = channels == 3 and rgb
        self._code3 = cv2.COLOR_BGR2RGB if swap else _FROM_BGR[channels]
        a, b = NORMALISATIONS[normalization]
        scale, zp = quant
        self.dtype = np.dtype(dtype)
        self.quantized = self.dtype != np.float32
        if self.quantized and scale:
            a, b = a / scale, b / scale + zp
        self.alpha, self.beta = np.float32(a), np.float32(b)
        self.identity = self.quantized and abs(a - 1) < 1e-6 and abs(b) < 1e-3
        self.unit = not self.quantized and a == 1.0 and b == 0.0
        if self.quantized:
            info = np.iinfo(self.dtype)
            self._lo, self._hi = info.min, info.max
        # what a black pixel normalises to: the letterbox's pad rows
        black = np.zeros((1, 1, channels), self.dtype)
        self._normalise(np.zeros((1, 1, channels), np.uint8), black)
        self._pad = black.reshape(-1)[0]
        # the normalisation of every uint8 value, by the reference arithmetic
        self._lut = np.zeros((1, 256, 1), self.dtype)
        self._normalise(np.arange(256, dtype=np.uint8).reshape(1, 256, 1), self._lut)
        self._lut = self._lut.reshape(256)
        self._copy = self.identity and self.dtype == np.uint8  # the table is the identity
        self._fitted: _Fit | None = None
        # the band (r0, r1) whose pad rows the keep_pad buffer holds
        self._padded: tuple[int, int] | None = None

    def transform_for(self, w: int, h: int) -> Transform:
        return self._fit(w, h).t

    def _fit(self, w: int, h: int) -> _Fit:
        f = self._fitted
        if f is None or f.w != w or f.h != h:
            f = self._fitted = self._plan(w, h)
        return f

    def _plan(self, w: int, h: int) -> _Fit:
        t = Transform.fit(w, h, self.in_w, self.in_h, self.resize)
        xy, frac = sampling_maps(t, self.in_w, self.in_h)
        # rows none of whose samples touch the frame are black: the band is the rest
        iy = xy[..., 1].astype(np.int32)
        ix = xy[..., 0].astype(np.int32)
        reached = ((iy + 1 >= 0) & (iy < h) & (ix + 1 >= 0) & (ix < w)).any(axis=1).nonzero()[0]
        r0, r1 = (int(reached[0]), int(reached[-1]) + 1) if reached.size else (0, 1)
        xy, frac = np.ascontiguousarray(xy[r0:r1]), np.ascontiguousarray(frac[r0:r1])
        warped = np.zeros((r1 - r0, self.in_w, 3), np.uint8)
        px = np.zeros((r1 - r0, self.in_w) + ((3,) if self.channels == 3 else ()), np.uint8)
        return _Fit(w, h, t, r0, r1, xy, frac, warped, px)

    def __call__(self, image: Image, dst: npt.NDArray[Any], keep_pad: bool = False) -> Transform:
        """Warp ``image`` (BGR uint8, see :func:`model_image`) into ``dst`` (the model input
        view, (H, W, C)). ``keep_pad``: ``dst`` is the buffer of every earlier ``keep_pad`` call
        and nothing else writes it, so pad rows written before still hold the pad value."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
            # remap would write a new array of the image's own layout and leave the
            # scratch holding the previous frame: the model would see that frame again
            raise ImageError(f"expected a BGR uint8 image, got {image.shape} {image.dtype}")
        return self.warp_into(image, dst, keep_pad)

    def warp_into(self, image: Image, dst: npt.NDArray[Any], keep_pad: bool = False) -> Transform:
        """:meth:`__call__` for an image already through :func:`model_image` (the detector's
        per-frame path), without checking its layout a second time."""
        f = self._fitted
        if f is None or f.w != image.shape[1] or f.h != image.shape[0]:
            f = self._fit(image.shape[1], image.shape[0])
        cv2.remap(
            image,
            f.xy,
            f.frac,
            cv2.INTER_LINEAR,
            dst=f.warped,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        px = f.warped
        if self._code3 is not None:
            cv2.cvtColor(f.warped, self._code3, dst=f.px)
            px = f.px
        if self.channels == 1:
            px = px[..., None]
        if f.r1 - f.r0 == self.in_h:
            self._lookup(px, dst)
            return f.t
        self._lookup(px, dst[f.r0 : f.r1])
        if keep_pad:
            # (not keyed on dst's address: reading it costs more than the two fills)
            if self._padded == (f.r0, f.r1):
                return f.t
            self._padded = (f.r0, f.r1)  # a new band: its pad rows, once
        dst[: f.r0].fill(self._pad)  # ndarray.fill: a C method, cheaper than a setitem
        dst[f.r1 :].fill(self._pad)
        return f.t

    def _lookup(self, px: Image, dst: npt.NDArray[Any]) -> None:
        if self._copy:
            np.copyto(dst, px)
        else:
            cv2.LUT(px, self._lut, dst=dst)

    def _normalise(self, px: Image, dst: npt.NDArray[Any]) -> None:
        """The reference arithmetic (start-up only: it fills the lookup table)."""
        if not self.quantized:
            np.copyto(dst, px, casting="unsafe")  # exact: every uint8 is a float32
            if not self.unit:
                np.multiply(dst, self.alpha, out=dst)
                np.add(dst, self.beta, out=dst)
        elif self.identity and self.dtype == np.uint8:
            np.copyto(dst, px)
        else:
            f = np.empty(px.shape, np.float32)
            np.multiply(px, self.alpha, out=f, casting="unsafe")
            np.add(f, self.beta, out=f)
            np.rint(f, out=f)
            np.clip(f, self._lo, self._hi, out=f)
            np.copyto(dst, f, casting="unsafe")


def sampling_maps(
    t: Transform, in_w: int, in_h: int
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint16]]:
    """Where each tensor pixel samples the frame, as MediaPipe's OpenCV converter computes it:
    the ROI (``t``'s inverse image of the tensor) as a ``cv::RotatedRect`` of float32 centre
    and size, its ``boxPoints`` mapped onto the tensor's corners by ``getPerspectiveTransform``,
    inverted (LU, as ``warpPerspective`` does), then per pixel OpenCV 3.4's
    ``WarpPerspectiveInvoker``: ``X = round((M0 x + M1 y + M2) * 32 / W)`` in doubles, column
    blocks of 64. Returns OpenCV's fixed-point maps: ``xy`` (H, W, 2) int16 integer pixel
    ``(X >> 5, Y >> 5)`` and ``frac`` (H, W) uint16 ``(Y & 31) * 32 + (X & 31)``, which
    ``cv2.remap`` turns into bilinear weights with 15-bit fixed-point rounding."""
    x0, y0 = -t.ox / t.sx, -t.oy / t.sy
    rw, rh = in_w / t.sx, in_h / t.sy
    centre = (float(np.float32(x0 + rw / 2)), float(np.float32(y0 + rh / 2)))
    size = (float(np.float32(rw)), float(np.float32(rh)))
    src = cv2.boxPoints((centre, size, 0.0)).astype(np.float32)
    corners = np.array([[0, in_h], [0, 0], [in_w, 0], [in_w, in_h]], np.float32)
    _, m = cv2.invert(cv2.getPerspectiveTransform(src, corners))
    ys, xs = np.mgrid[0:in_h, 0:in_w]
    x1 = (xs % _BLOCK_W).astype(np.float64)
    xb = (xs - xs % _BLOCK_W).astype(np.float64)
    y = ys.astype(np.float64)
    row0 = m[0, 0] * xb + m[0, 1] * y + m[0, 2]
    row1 = m[1, 0] * xb + m[1, 1] * y + m[1, 2]
    wgt = (m[2, 0] * xb + m[2, 1] * y + m[2, 2]) + m[2, 0] * x1
    nz = wgt != 0
    wgt = np.where(nz, INTER_TAB / np.where(nz, wgt, 1.0), 0.0)
    lim = (float(np.iinfo(np.int32).min), float(np.iinfo(np.int32).max))
    fx = np.rint(np.clip((row0 + m[0, 0] * x1) * wgt, *lim)).astype(np.int64)
    fy = np.rint(np.clip((row1 + m[1, 0] * x1) * wgt, *lim)).astype(np.int64)
    xy = np.stack([fx >> INTER_BITS, fy >> INTER_BITS], axis=-1).clip(-32768, 32767)
    frac = (fy & (INTER_TAB - 1)) * INTER_TAB + (fx & (INTER_TAB - 1))
    return xy.astype(np.int16), frac.astype(np.uint16)
