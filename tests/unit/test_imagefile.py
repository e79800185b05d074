"""Image headers read without decoding, bounded reads and bounded decodes (edge/imagefile.py)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ImageError
from edge.imagefile import ImageHeader, decode_bounded, image_size, read_image_file

IMG = np.random.default_rng(7).integers(0, 255, (37, 53, 3), dtype=np.uint8)  # odd sizes


@pytest.mark.parametrize(
    ("ext", "params"),
    [
        (".jpg", []),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".png", []),
        (".bmp", []),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),  # lossy: VP8
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
        (".tiff", []),
        (".ppm", []),
        (".pgm", []),
    ],
)
def test_the_header_says_what_opencv_decodes(ext: str, params: list[int]) -> None:
    img = IMG[:, :, 0] if ext == ".pgm" else IMG
    ok, buf = cv2.imencode(ext, img, params)
    assert ok
    head = image_size(buf.tobytes())
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    assert head is not None and (head.height, head.width) == decoded.shape[:2] == (37, 53)
    assert head.sequential_jpeg == (ext == ".jpg" and not params)


def test_unknown_and_cut_headers_are_none() -> None:
    ok, buf = cv2.imencode(".png", IMG)
    assert image_size(buf.tobytes()[:20]) is None
    assert image_size(b"hello, world") is None
    assert image_size(b"") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"BM",
                                                 b"RIFF\0\0\0\0WEBPVP8X", b"II*\x00", b"MM\x00*",
                                                 b"P6", b"P7\n", b"GIF89a"]))  # fmt: skip
def test_any_bytes_give_a_size_or_none_never_an_error(tail: bytes, head: bytes) -> None:
    got = image_size(head + tail)
    assert got is None or (got.width > 0 and got.height > 0)


def test_a_large_sequential_jpeg_is_decoded_reduced_to_fit() -> None:
    ok, buf = cv2.imencode(".jpg", np.full((800, 1000, 3), 90, np.uint8))
    img, factor = decode_bounded(buf.tobytes(), "x.jpg", max_pixels=300 * 300)
    assert factor == 4 and img.shape == (200, 250, 3)  # 4: the smallest that fits


@pytest.mark.parametrize(
    ("ext", "params"), [(".png", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])]
)
def test_other_images_over_the_limit_are_refused_undecoded(ext: str, params: list[int]) -> None:
    ok, buf = cv2.imencode(ext, np.zeros((800, 1000, 3), np.uint8), params)
    with pytest.raises(ImageError, match=r"x: 1000x800 \(0.8 megapixels\) is over the limit"):
        decode_bounded(buf.tobytes(), "x", max_pixels=300 * 300)


def test_only_regular_files_of_bounded_size_are_read(tmp_path: Path) -> None:
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.png")
    for name in ("zero.jpg", "pipe.png"):
        with pytest.raises(ImageError, match="not a regular file"):
            read_image_file(tmp_path / name)
    (tmp_path / "big.png").write_bytes(bytes(5000))
    with pytest.raises(ImageError, match="5000 bytes, over the limit of 4096"):
        read_image_file(tmp_path / "big.png", max_bytes=4096)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="the file is empty"):
        read_image_file(tmp_path / "empty.png")
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "big.png")  # a link to a regular file is fine
    assert len(read_image_file(link)) == 5000


def test_header_pixels() -> None:
    assert ImageHeader(30000, 30000, "PNG").pixels == 900_000_000


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an APP1 Exif segment holding only the Orientation tag."""
    import struct

    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def test_a_reduced_decode_keeps_the_callers_orientation_rule() -> None:
    ok, buf = cv2.imencode(".jpg", np.full((800, 1000, 3), 90, np.uint8))
    data = with_exif_orientation(buf.tobytes(), 6)  # "rotate 90° to display"
    assert image_size(data) == ImageHeader(1000, 800, "JPEG", sequential_jpeg=True)
    as_stored, f = decode_bounded(data, "x", 300 * 300, cv2.IMREAD_UNCHANGED)  # edge detect
    assert f == 4 and as_stored.shape[:2] == (200, 250)
    as_shown, f = decode_bounded(data, "x", 300 * 300)  # IMREAD_COLOR applies the EXIF tag
    assert f == 4 and as_shown.shape[:2] == (250, 200)
