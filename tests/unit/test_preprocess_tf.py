"""stretch-tf: the frame sampled as TensorFlow's ResizeBilinear (align_corners=False,
half_pixel_centers=False) does, checked against that op's arithmetic written out in NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.errors import ImageError
from edge.preprocess_tf import StretchTFPreprocessor
from tests.conftest import video_frames


def tf_resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TensorFlow's legacy ResizeBilinear in float32: source coordinate ``i * in / out``, the
    upper neighbour clamped to the last row/column (tensorflow/core/kernels/image/
    resize_bilinear_op.cc, compute_interpolation_weights with the legacy scaler)."""
    h, w = img.shape[:2]
    f = img.astype(np.float32)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo).astype(np.float32)

    y0, y1, ly = axis(out_h, h)
    x0, x1, lx = axis(out_w, w)
    top = f[y0][:, x0] + (f[y0][:, x1] - f[y0][:, x0]) * lx[None, :, None]
    bot = f[y1][:, x0] + (f[y1][:, x1] - f[y1][:, x0]) * lx[None, :, None]
    return top + (bot - top) * ly[:, None, None]


def run(pre: StretchTFPreprocessor, img: np.ndarray) -> np.ndarray:
    dst = np.zeros((pre.in_h, pre.in_w, 3), pre.dtype)
    pre(img, dst)
    return dst


@pytest.mark.parametrize("size", [(576, 768), (150, 200), (301, 299)])  # down, up, about 1:1
def test_samples_as_tensorflow_resize_bilinear(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    pre = StretchTFPreprocessor(300, 300, 3, np.dtype(np.float32), "[-1,1]")
    got = run(pre, img)
    ref = tf_resize_bilinear(img[..., ::-1], 300, 300) * np.float32(2 / 255) - 1  # RGB
    # OpenCV's 5-bit weights and uint8 rounding: within one level (2/255) on noise, where
    # neighbours differ by up to 255; a cv2.resize grid would be off by tens of levels
    assert np.abs(got - ref).max() <= 2.0 / 255 + 1e-6


def test_real_frame_within_half_a_level(samples_dir: Path) -> None:
    (frame,) = video_frames(samples_dir / "vtest.avi", 1, 1)
    pre = StretchTFPreprocessor(300, 300, 3, np.dtype(np.float32), "[-1,1]")
    got = run(pre, frame)
    ref = tf_resize_bilinear(frame[..., ::-1], 300, 300) * np.float32(2 / 255) - 1
    assert np.abs(got - ref).max() <= 0.52 * 2 / 255


def test_quantized_input_and_buffers_made_once() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (576, 768, 3), dtype=np.uint8)
    scale, zp = 0.007843137718737125, -1  # person-int8's input quantization
    pre = StretchTFPreprocessor(300, 300, 3, np.dtype(np.int8), "[-1,1]", quant=(scale, zp))
    got = run(pre, img)
    # the table: each uint8 value normalised then quantized (to nearest; p - 128.5 is a tie)
    v = np.arange(256, dtype=np.float32)
    exact = (v * np.float32(2 / 255) - 1) / scale + zp
    assert np.abs(pre._lut.astype(np.float32) - exact).max() <= 0.5 + 1e-4
    # the pixels: TensorFlow's resize, rounded, through that table
    px = np.clip(np.rint(tf_resize_bilinear(img[..., ::-1], 300, 300)), 0, 255).astype(np.uint8)
    assert np.abs(got.astype(np.int32) - pre._lut[px].astype(np.int32)).max() <= 2  # as float
    plan = pre._plan
    run(pre, img)
    assert pre._plan is plan  # same frame size: no new buffers
    t = pre.transform_for(768, 576)
    assert (t.sx, t.sy, t.ox, t.oy) == (300 / 768, 300 / 576, 0.0, 0.0)


def test_refuses_what_it_cannot_warp() -> None:
    pre = StretchTFPreprocessor(300, 300, 3, np.dtype(np.float32), "[-1,1]")
    with pytest.raises(ImageError, match="BGR uint8"):
        pre(np.zeros((10, 10), np.uint8), np.zeros((300, 300, 3), np.float32))
    with pytest.raises(ValueError, match="3-channel"):
        StretchTFPreprocessor(300, 300, 1, np.dtype(np.float32), "[-1,1]")
    with pytest.raises(ValueError, match="stretch-tf"):
        StretchTFPreprocessor(300, 300, 3, np.dtype(np.float32), "[-1,1]", "letterbox")
