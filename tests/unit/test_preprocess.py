from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.preprocess import (
    Preprocessor,
    Transform,
    decode_jpeg,
    jpeg_size,
    reduction_for,
    to_bgr8,
)


@given(st.integers(1, 4000), st.integers(1, 4000), st.sampled_from([(128, 128), (192, 192),
                                                                     (320, 240)]))
def test_letterbox_round_trip_is_exact(w: int, h: int, size: tuple[int, int]) -> None:
    t = Transform.fit(w, h, *size, "letterbox")
    assert t.sx == pytest.approx(t.sy)  # aspect kept
    pts = np.array([[[0.0, 0.0], [w, h], [w / 3, h / 7]]], np.float32)
    fwd = pts.copy()
    fwd[..., 0] = fwd[..., 0] * t.sx + t.ox
    fwd[..., 1] = fwd[..., 1] * t.sy + t.oy
    # the frame lands inside the tensor, centred
    assert fwd[..., 0].min() >= -1e-3 and fwd[..., 0].max() <= size[0] + 1e-3
    assert fwd[..., 1].min() >= -1e-3 and fwd[..., 1].max() <= size[1] + 1e-3
    back = t.points_to_frame(fwd.copy())
    np.testing.assert_allclose(back, pts, rtol=1e-4, atol=1e-2)


def test_letterbox_pads_the_short_side_centred() -> None:
    t = Transform.fit(640, 480, 128, 128, "letterbox")
    assert t.sx == pytest.approx(0.2)
    assert t.ox == pytest.approx(0.0)
    assert t.oy == pytest.approx(16.0)  # (128 - 96) / 2
    boxes = np.array([[0, 16, 128, 112]], np.float32)
    np.testing.assert_allclose(t.boxes_to_frame(boxes), [[0, 0, 640, 480]], atol=1e-4)


def test_stretch_maps_corners_to_corners() -> None:
    t = Transform.fit(640, 480, 300, 300, "stretch")
    boxes = np.array([[0, 0, 300, 300]], np.float32)
    np.testing.assert_allclose(t.boxes_to_frame(boxes), [[0, 0, 640, 480]], atol=1e-4)


def test_warp_samples_like_mediapipe_without_half_pixel_offset() -> None:
    # a 2x downscale by corner mapping samples source pixel 2*i exactly (a pixel-centre
    # resize would blend 2i and 2i+1)
    img = np.zeros((256, 256, 3), np.uint8)
    img[:, ::2] = 200
    pre = Preprocessor(128, 128, 3, np.dtype(np.float32), "raw", rgb=False)
    dst = np.zeros((128, 128, 3), np.float32)
    pre(img, dst)
    assert np.all(dst == 200.0)


@pytest.mark.parametrize(
    ("norm", "lo", "hi"), [("[-1,1]", -1.0, 1.0), ("[0,1]", 0.0, 1.0), ("raw", 0.0, 255.0)]
)
def test_normalisation_ranges(norm: str, lo: float, hi: float) -> None:
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 10:] = 255
    pre = Preprocessor(20, 10, 3, np.dtype(np.float32), norm)
    dst = np.empty((10, 20, 3), np.float32)
    pre(img, dst)
    assert dst.min() == pytest.approx(lo) and dst.max() == pytest.approx(hi)


def test_quantized_input_folds_normalisation_into_scale_and_zero_point() -> None:
    # a uint8 model whose real input is [-1, 1] with scale 1/128, zero point 128: q ~= pixel
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pre = Preprocessor(16, 16, 3, np.dtype(np.uint8), "[-1,1]", quant=(1 / 128, 128))
    dst = np.empty((16, 16, 3), np.uint8)
    pre(img, dst)
    real = img[..., ::-1].astype(np.float64) * 2 / 255 - 1  # rgb
    expect = np.clip(np.rint(real * 128 + 128), 0, 255)
    np.testing.assert_array_equal(dst, expect)
    pre8 = Preprocessor(16, 16, 3, np.dtype(np.int8), "raw", quant=(1.0, -128))
    d8 = np.empty((16, 16, 3), np.int8)
    pre8(img, d8)
    np.testing.assert_array_equal(d8.astype(int), img[..., ::-1].astype(int) - 128)


def test_jpeg_size_reads_sof_without_decoding() -> None:
    img = np.zeros((123, 457, 3), np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    assert jpeg_size(buf.tobytes()) == (457, 123)
    assert jpeg_size(b"not a jpeg") is None
    assert jpeg_size(buf.tobytes()[:10]) is None


def test_reduction_keeps_model_resolution() -> None:
    assert reduction_for(640, 480, 128, 128) == 2
    assert reduction_for(1920, 1080, 128, 128) == 8
    assert reduction_for(640, 480, 224, 224) == 2
    assert reduction_for(320, 240, 224, 224) == 1


def test_reduced_decode_size_and_corrupt_jpeg() -> None:
    img = np.full((480, 640, 3), 90, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert decode_jpeg(buf.tobytes(), 2).shape == (240, 320, 3)
    from edge.errors import ImageError

    with pytest.raises(ImageError, match="corrupt"):
        decode_jpeg(b"\xff\xd8garbage", 1)


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((5, 7), np.uint8),
        np.zeros((5, 7, 1), np.uint8),
        np.zeros((5, 7, 4), np.uint8),
        np.full((5, 7, 3), 65535, np.uint16),
        np.zeros((1, 1, 3), np.uint8),
    ],
)
def test_to_bgr8_accepts_every_layout(img: np.ndarray) -> None:
    out = to_bgr8(img)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] == img.shape[:2]
