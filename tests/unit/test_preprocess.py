from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge.preprocess as pre_mod
from edge.decode import decode_jpeg, jpeg_size, reduction_for
from edge.preprocess import (
    Preprocessor,
    Transform,
    sampling_maps,
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


def bilinear_3_4(img: np.ndarray, xy: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """OpenCV 3.4's fixed-point bilinear remap (MediaPipe's), written out in NumPy: the four
    pixels around (X >> 5, Y >> 5), black outside the image, weights (32 - f) and f per axis in
    1/32 (15-bit products), rounded to nearest: (sum w * p + 2^14) >> 15."""
    h, w = img.shape[:2]
    ix, iy = xy[..., 0].astype(np.int64), xy[..., 1].astype(np.int64)
    fx, fy = (frac & 31).astype(np.int64), (frac >> 5).astype(np.int64)
    acc = np.zeros(xy.shape[:2] + (img.shape[2],), np.int64)
    for dy, wy in ((0, 32 - fy), (1, fy)):
        for dx, wx in ((0, 32 - fx), (1, fx)):
            yy, xx = iy + dy, ix + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            p = img[yy.clip(0, h - 1), xx.clip(0, w - 1)].astype(np.int64)
            acc += np.where(inside[..., None], p, 0) * (wy * wx * 32)[..., None]
    return ((acc + (1 << 14)) >> 15).astype(np.uint8)


def reference_input(img: np.ndarray, size: int, norm: str, rgb: bool, gray: bool) -> np.ndarray:
    """What the preprocessor must write: MediaPipe's sampling of the whole tensor (OpenCV 3.4's
    arithmetic, above), the colour conversion, then ``px * a + b`` in float32."""
    t = Transform.fit(img.shape[1], img.shape[0], size, size, "letterbox")
    warped = bilinear_3_4(img, *sampling_maps(t, size, size))
    if gray:
        warped = cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY)[..., None]
    elif rgb:
        warped = cv2.cvtColor(warped, cv2.COLOR_BGR2RGB)
    a, b = pre_mod.NORMALISATIONS[norm]
    return warped.astype(np.float32) * np.float32(a) + np.float32(b)


@pytest.mark.parametrize(("w", "h", "size"), [(320, 240, 128), (720, 528, 192), (640, 480, 224)])
def test_sampling_maps_put_tensor_corners_on_the_roi_corners_in_32nds(
    w: int, h: int, size: int
) -> None:
    # sizes whose positions are exact in 1/32 pixel: tensor pixel x samples frame x / sx, with
    # no half-pixel offset (MediaPipe's getPerspectiveTransform of the ROI corners)
    t = Transform.fit(w, h, size, size, "letterbox")
    xy, frac = sampling_maps(t, size, size)
    ys, xs = np.mgrid[0:size, 0:size]
    want_x = np.rint((xs - t.ox) / t.sx * 32).astype(np.int64)
    want_y = np.rint((ys - t.oy) / t.sy * 32).astype(np.int64)
    got_x = xy[..., 0].astype(np.int64) * 32 + (frac & 31)
    got_y = xy[..., 1].astype(np.int64) * 32 + (frac >> 5)
    np.testing.assert_array_equal(got_x, want_x)
    np.testing.assert_array_equal(got_y, want_y)


@pytest.mark.parametrize(("rgb", "gray"), [(True, False), (False, False), (True, True)])
def test_band_gives_the_bytes_of_mediapipes_full_sampling(rgb: bool, gray: bool) -> None:
    # 320x240 is the benchmark's frame (a band of rows); the others pad by non-dyadic amounts,
    # tall and wide, and 97x53 upsamples: the bytes are those of OpenCV 3.4's arithmetic
    rng = np.random.default_rng(9)
    for w, h, size in ((320, 240, 128), (180, 132, 128), (333, 517, 192), (97, 53, 224)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pre = Preprocessor(size, size, 1 if gray else 3, np.dtype(np.float32), "[-1,1]", rgb=rgb)
        dst = np.full((size, size, 1 if gray else 3), np.nan, np.float32)  # pads must be written
        for _ in range(2):  # the second frame reuses the plan and buffers
            pre(img, dst)
            np.testing.assert_array_equal(dst, reference_input(img, size, "[-1,1]", rgb, gray))
        f = pre._fit(w, h)
        if (w, h) == (320, 240):
            assert (f.r0, f.r1) == (16, 112)  # the frame reaches rows 16..111 of 128


def test_stretch_samples_every_row_with_the_same_arithmetic() -> None:
    # a stretch has no pad rows and different x and y scales: every row is sampled
    img = np.random.default_rng(4).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    pre = Preprocessor(224, 160, 3, np.dtype(np.float32), "[0,1]", "stretch")
    dst = np.full((160, 224, 3), np.nan, np.float32)
    pre(img, dst)
    f = pre._fit(500, 300)
    assert (f.r0, f.r1) == (0, 160)
    t = Transform.fit(500, 300, 224, 160, "stretch")
    want = cv2.cvtColor(bilinear_3_4(img, *sampling_maps(t, 224, 160)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(dst, want.astype(np.float32) * np.float32(1 / 255))


def test_quantized_band_pads_with_quantized_black() -> None:
    img = np.full((240, 320, 3), 255, np.uint8)
    pre = Preprocessor(128, 128, 3, np.dtype(np.uint8), "[-1,1]", quant=(1 / 128, 128))
    dst = np.full((128, 128, 3), 7, np.uint8)
    pre(img, dst)
    assert np.all(dst[:16] == 0) and np.all(dst[112:] == 0)  # -1.0 quantizes to 0
    assert np.all(dst[20:100] == 255)  # 1.0 quantizes to 256, clipped


def test_keep_pad_writes_pad_rows_once_per_band() -> None:
    rng = np.random.default_rng(5)
    pre = Preprocessor(128, 128, 3, np.dtype(np.float32), "[-1,1]")
    dst = np.full((128, 128, 3), np.nan, np.float32)
    wide = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    pre(wide, dst, keep_pad=True)
    np.testing.assert_array_equal(dst, reference_input(wide, 128, "[-1,1]", True, False))
    dst[:10] = 5.0  # a pad row changed behind its back: with keep_pad it is not rewritten
    pre(wide, dst, keep_pad=True)
    assert np.all(dst[:10] == 5.0)
    pre(wide, dst)  # without keep_pad: every call writes them
    np.testing.assert_array_equal(dst, reference_input(wide, 128, "[-1,1]", True, False))
    # another band (a different aspect) in the same buffer, then back: pads rewritten each time
    tall = rng.integers(0, 256, (200, 320, 3), dtype=np.uint8)
    for img in (tall, wide):
        dst[:] = np.nan
        pre(img, dst, keep_pad=True)
        pre(img, dst, keep_pad=True)
        np.testing.assert_array_equal(dst, reference_input(img, 128, "[-1,1]", True, False))


@pytest.mark.parametrize(
    ("dtype", "quant"),
    [(np.float32, (0.0, 0)), (np.uint8, (1 / 128, 128)), (np.int8, (1 / 128, 0))],
)
def test_lookup_table_equals_the_reference_arithmetic_for_every_value(dtype, quant) -> None:  # type: ignore[no-untyped-def]
    pre = Preprocessor(16, 16, 3, np.dtype(dtype), "[-1,1]", quant=quant)
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    want = np.zeros((16, 16, 3), dtype)
    pre._normalise(values, want)
    got = np.zeros((16, 16, 3), dtype)
    pre._lookup(values, got)
    np.testing.assert_array_equal(got, want)
