"""Reading image files that may be hostile: bounded reads, sizes checked before decoding.

A 2.7 MB PNG of one colour can say 30000 x 30000 pixels, and OpenCV allocates the whole
image (2.7 GB as BGR) before it finds out whether it can decode it; a link to ``/dev/zero``
in an image folder never ends. So every image file goes through here:

1. :func:`read_image_file` opens the path (a link to a regular file is fine), refuses
   anything that is not a regular file (a device, a pipe: never read) and files over
   ``max_bytes``, and reads at most that many bytes;
2. :func:`image_size` reads the width and height from the header (JPEG, PNG, BMP, WebP,
   TIFF, GIF, PNM), without decoding; a format whose size it cannot read is refused;
3. :func:`decode_bounded` decodes an image within ``max_pixels``; a sequential JPEG over it
   is decoded 2, 4 or 8 times smaller with libjpeg's DCT scaling (``IMREAD_REDUCED_*``),
   which allocates only the smaller image, when that fits. Anything else over the limit is
   an :class:`~edge.errors.ImageError` naming the size, the limit and the config key.

The limits are ``[source] max_image_pixels`` and ``max_image_bytes`` (defaults below, sized
so one image is a small part of a 1 GB Pi's memory).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import ImageError
from edge.frame import Detections

#: the largest image decoded at full size: 40 megapixels (120 MB as BGR; a 12 MP camera
#: module's still is 12.3 MP). Sequential JPEGs up to 64 times this are decoded reduced.
MAX_IMAGE_PIXELS = 40_000_000
#: the largest image file read (a 40 MP PNG of noise is about 120 MB; camera JPEGs are < 20 MB)
MAX_IMAGE_BYTES = 128 * 1024 * 1024
#: the formats whose size :func:`image_size` reads, for messages
KNOWN_FORMATS = "JPEG, PNG, BMP, WebP, TIFF, GIF, PNM"

#: JPEG DCT reductions, smallest first
_FACTORS = (2, 4, 8)


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: ``width`` x ``height``, the format, and whether a JPEG is
    sequential (libjpeg then decodes it reduced without the full image in memory; a
    progressive one keeps every coefficient of the full image)."""

    width: int
    height: int
    format: str
    sequential_jpeg: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_image_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; :class:`ImageError` otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot be read: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{path}: not a regular file (a device or a pipe): refused")
        if st.st_size > max_bytes:
            raise ImageError(
                f"{path}: {st.st_size} bytes, over the limit of {max_bytes} for an image "
                "(source.max_image_bytes)"
            )
        try:
            data = f.read(max_bytes + 1)  # bounded even if the file grows meanwhile
        except OSError as e:
            raise ImageError(f"{path}: cannot be read: {e.strerror}") from None
    if len(data) > max_bytes:
        raise ImageError(f"{path}: grew past {max_bytes} bytes while being read")
    if not data:
        raise ImageError(f"{path}: the file is empty")
    return data


def image_size(data: bytes) -> ImageHeader | None:
    """Width and height from the header, without decoding; None for an unknown format or a
    header too short to say."""
    try:
        for probe in (_png, jpeg_header, _gif, _bmp, _webp, _tiff, _pnm):
            head = probe(data)
            if head is not None:
                return head if head.width > 0 and head.height > 0 else None
    except (struct.error, IndexError, KeyError, ValueError):
        return None
    return None


def decode_bounded(
    data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS, flags: int | None = None
) -> tuple[npt.NDArray[Any], int]:
    """Decode within ``max_pixels``: (image, reduction factor: 1, 2, 4 or 8).

    ``flags`` is used for images within the limit (``IMREAD_COLOR`` or ``IMREAD_UNCHANGED``);
    a reduced JPEG is always BGR. :class:`ImageError` for an unknown, over-large or
    undecodable image."""
    head = image_size(data)
    if head is None:
        raise ImageError(
            f"{name}: not an image whose size can be read before decoding ({KNOWN_FORMATS}), "
            "or its header is cut short"
        )
    factor = reduction_to_fit(head, max_pixels)
    if factor is None:
        progressive = head.format == "JPEG" and not head.sequential_jpeg
        why = " (a progressive JPEG is not decoded smaller)" if progressive else ""
        raise ImageError(
            f"{name}: {head.width}x{head.height} ({head.pixels / 1e6:.1f} megapixels) is over "
            f"the limit of {max_pixels / 1e6:g} megapixels{why} (source.max_image_pixels): "
            "scale the image down, or raise the limit if this device has the memory"
        )
    import cv2  # here, so that the config (which names the limits) does not load OpenCV

    reduced = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
               8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip
    flag = cv2.IMREAD_COLOR if flags is None else flags
    if factor > 1:
        # IMREAD_UNCHANGED (-1) ignores EXIF orientation; the reduced decode must do the same,
        # or the boxes would be in a rotated image's pixels
        ignore = flag == cv2.IMREAD_UNCHANGED or (
            flag >= 0 and flag & cv2.IMREAD_IGNORE_ORIENTATION
        )
        flag = reduced[factor] | (cv2.IMREAD_IGNORE_ORIENTATION if ignore else 0)
    img: npt.NDArray[Any] | None = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None:
        raise ImageError(f"{name}: not an image OpenCV can decode (or truncated)")
    return img, factor


def reduction_to_fit(head: ImageHeader, max_pixels: int) -> int | None:
    """1 if the image fits ``max_pixels``; else the smallest JPEG reduction that makes it fit
    (sequential JPEGs only); None when nothing does."""
    if head.pixels <= max_pixels:
        return 1
    if not head.sequential_jpeg:
        return None
    for f in _FACTORS:
        if -(-head.width // f) * -(-head.height // f) <= max_pixels:
            return f
    return None


def scaled(d: Detections, factor: int) -> Detections:
    """Detections on an image decoded ``factor`` times smaller, in the full image's pixels."""
    if factor == 1:
        return d
    kps = None if d.keypoints is None else d.keypoints * np.float32(factor)
    return dataclasses.replace(d, boxes=d.boxes * np.float32(factor), keypoints=kps)


# -- the headers ------------------------------------------------------------------------------


def _png(d: bytes) -> ImageHeader | None:
    if d[:8] != b"\x89PNG\r\n\x1a\n" or d[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", d[16:24])
    return ImageHeader(w, h, "PNG")


def jpeg_header(d: bytes | memoryview) -> ImageHeader | None:
    """A JPEG's size from its SOF marker (and whether it is sequential); None if not one."""
    if d[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(d)
    while i + 9 < n:
        if d[i] != 0xFF:
            return None
        marker = d[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC); SOF0/SOF1 are sequential Huffman
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", d[i + 5 : i + 9])
            return ImageHeader(w, h, "JPEG", sequential_jpeg=marker in (0xC0, 0xC1))
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        i += 2 + struct.unpack(">H", d[i + 2 : i + 4])[0]
    return None


def _gif(d: bytes) -> ImageHeader | None:
    if d[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    w, h = struct.unpack("<HH", d[6:10])
    return ImageHeader(w, h, "GIF")


def _bmp(d: bytes) -> ImageHeader | None:
    if d[:2] != b"BM" or len(d) < 26:
        return None
    (hsize,) = struct.unpack("<I", d[14:18])
    if hsize == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack("<HH", d[18:22])
    else:
        w, h = struct.unpack("<ii", d[18:26])
    return ImageHeader(abs(w), abs(h), "BMP")  # a negative height is a top-down image


def _webp(d: bytes) -> ImageHeader | None:
    if d[:4] != b"RIFF" or d[8:12] != b"WEBP":
        return None
    kind = d[12:16]
    if kind == b"VP8X":
        w = 1 + int.from_bytes(d[24:27], "little")
        h = 1 + int.from_bytes(d[27:30], "little")
    elif kind == b"VP8 ":
        w, h = (v & 0x3FFF for v in struct.unpack("<HH", d[26:30]))
    elif kind == b"VP8L":
        (bits,) = struct.unpack("<I", d[21:25])
        w, h = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    else:
        return None
    return ImageHeader(w, h, "WebP")


def _tiff(d: bytes) -> ImageHeader | None:
    """The first IFD's ImageWidth and ImageLength (OpenCV reads the first page)."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(d[:4])
    if order is None:
        return None
    (ifd,) = struct.unpack(order + "I", d[4:8])
    (count,) = struct.unpack(order + "H", d[ifd : ifd + 2])
    size: dict[int, int] = {}
    for k in range(count):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack(order + "HH", d[e : e + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = "H" if typ == 3 else "I"
            (size[tag],) = struct.unpack(order + fmt, d[e + 8 : e + 8 + struct.calcsize(fmt)])
    if 256 not in size or 257 not in size:
        return None
    return ImageHeader(size[256], size[257], "TIFF")


def _pnm(d: bytes) -> ImageHeader | None:
    """P1..P6: magic, width, height as ASCII numbers with comments; P7 (PAM): WIDTH/HEIGHT."""
    if len(d) < 2 or d[0:1] != b"P" or d[1:2] not in b"1234567":
        return None
    text = d[:1024].decode("latin-1")
    if d[1:2] == b"7":
        fields = dict(
            line.split(None, 1) for line in text.splitlines()[1:] if len(line.split(None, 1)) == 2
        )
        return ImageHeader(int(fields["WIDTH"]), int(fields["HEIGHT"]), "PAM")
    tokens = []
    for line in text[2:].splitlines():
        tokens += line.split("#", 1)[0].split()
        if len(tokens) >= 2:
            return ImageHeader(int(tokens[0]), int(tokens[1]), "PNM")
    return None
