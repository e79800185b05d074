"""What every capture source shares: the interface, its options, and the end/corrupt signals.

A source is ``read(timeout_s) -> Frame | None`` and ``close()``, nothing more (the capture
thread owns the loop). ``read`` returns ``None`` when no frame came within ``timeout_s``,
raises :class:`EndOfStream` when a file or folder is exhausted, :class:`CorruptFrame` for a
frame it had to throw away (the supervisor counts and skips those), and
:class:`~edge.errors.SourceError` when the source failed (the supervisor reconnects live
sources and gives up on files).

Frames are stamped at capture with a monotonic time: the camera's own timestamp where it
gives one (V4L2 buffer timestamps and libcamera's ``SensorTimestamp`` are CLOCK_MONOTONIC
nanoseconds), else ``clock.now_ns()`` when the frame arrived, or, for a paced file, the
moment a camera running at that rate would have captured it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from edge.errors import ConfigError, SourceError
from edge.frame import Frame, Image
from edge.validate import check_range

#: the accepted forms of a source spec, for error messages and ``--help``
ACCEPTED_FORMS = (
    "0 or /dev/videoN (V4L2 camera), picamera2[:N], gst:PIPELINE, rtsp://..., "
    "http(s)://..., a video file, an image folder, demo or demo:person"
)


class EndOfStream(Exception):
    """A file or folder source has delivered its last frame (and does not loop)."""


class CorruptFrame(SourceError):
    """A frame arrived but could not be used (truncated JPEG, undecodable packet).

    ``kind`` groups the reason for rate-limited logging; ``count`` is how many frames
    this one report stands for (a stream reader may batch them).
    """

    def __init__(self, message: str, kind: str = "corrupt", count: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.count = count


class Source(Protocol):
    """A capture source. ``name`` is the spec (for logs and miss records); ``fps`` the
    nominal rate (the camera's or the file's, or the ``fps`` option), ``None`` if unknown."""

    @property
    def name(self) -> str: ...

    @property
    def fps(self) -> float | None: ...

    def read(self, timeout_s: float) -> Frame | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CameraFrame(Frame):
    """A frame that also carries a second, small image from the camera itself.

    picamera2 can scale on the ISP: ``lores`` is a BGR image at (about) the model's input
    size, made at no CPU cost, for inference; ``image`` is the full ``main`` stream for the
    overlay. Other sources deliver plain :class:`~edge.frame.Frame` records.
    """

    lores: Image | None = None


@dataclass(frozen=True)
class SourceOptions:
    """How to open a source; mirrored by the ``[source]`` config section.

    fps              nominal rate: requested from cameras, used to pace files and folders;
                     ``None`` = the camera's / file's own (folders: 30)
    pace             deliver files and folders at ``fps`` as a camera would (False: as fast
                     as the reader asks, for offline runs)
    width, height    capture size to request from cameras (``None`` = the camera's default)
    lores_width, lores_height
                     picamera2 only: size of the ISP-scaled ``lores`` stream (typically the
                     model input size); ``None`` = no lores stream
    loop             start files and folders again at the end (``demo`` always loops)
    raw_jpeg         hand MJPEG cameras' JPEG bytes to the worker undecoded where the
                     backend allows (so decoding is timed as its own stage)
    reconnect_min_s, reconnect_max_s
                     exponential backoff bounds between reconnect attempts of live sources
    open_timeout_s   how long opening a network stream or camera may take
    stall_timeout_s  a live source that delivers no frame for this long is treated as lost
    max_image_pixels, max_image_bytes
                     image files (folders, single images) larger than this, by the size in
                     their header or on disk, are corrupt frames, never decoded; sequential
                     JPEGs up to 64 times the pixels are decoded 2-8 times smaller instead
                     (see :mod:`edge.imagefile`)
    """

    fps: float | None = None
    pace: bool = True
    width: int | None = None
    height: int | None = None
    lores_width: int | None = None
    lores_height: int | None = None
    loop: bool = False
    raw_jpeg: bool = True
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    open_timeout_s: float = 10.0
    stall_timeout_s: float = 5.0
    max_image_pixels: int = 40_000_000  # edge.imagefile.MAX_IMAGE_PIXELS
    max_image_bytes: int = 128 * 1024 * 1024  # edge.imagefile.MAX_IMAGE_BYTES

    def __post_init__(self) -> None:
        if self.fps is not None:
            check_range("source.fps", self.fps, 0.1, 1000.0)
        for key in ("width", "height", "lores_width", "lores_height"):
            value = getattr(self, key)
            if value is not None:
                check_range(f"source.{key}", value, 16, 16384)
        if (self.width is None) != (self.height is None):
            raise ConfigError("source.width and source.height must be given together")
        if (self.lores_width is None) != (self.lores_height is None):
            raise ConfigError("source.lores_width and source.lores_height must be given together")
        check_range("source.reconnect_min_s", self.reconnect_min_s, 0.001, 3600.0)
        check_range("source.reconnect_max_s", self.reconnect_max_s, self.reconnect_min_s, 3600.0)
        check_range("source.open_timeout_s", self.open_timeout_s, 0.1, 600.0)
        check_range("source.stall_timeout_s", self.stall_timeout_s, 0.1, 600.0)
        # OpenCV itself refuses more than 2**30 pixels (OPENCV_IO_MAX_IMAGE_PIXELS)
        check_range("source.max_image_pixels", self.max_image_pixels, 4096, 2**30)
        check_range("source.max_image_bytes", self.max_image_bytes, 1024, 2**32)

    @property
    def size(self) -> tuple[int, int] | None:
        return None if self.width is None or self.height is None else (self.width, self.height)

    @property
    def lores_size(self) -> tuple[int, int] | None:
        if self.lores_width is None or self.lores_height is None:
            return None
        return (self.lores_width, self.lores_height)


def new_seq() -> Iterator[int]:
    """Frame numbers for one source; shared across reconnects so ``seq`` never restarts."""
    return itertools.count()


def jpeg_problem(data: bytes) -> str | None:
    """``None`` if ``data`` is structurally a whole JPEG, else what is wrong with it.

    Cheap (no decode): start-of-image marker, a start-of-scan, and an end-of-image marker
    at the end. USB cameras that lose packets deliver frames cut short, which this
    catches; some pad the buffer with zeros after the end marker, which is allowed.
    Damage inside the entropy-coded data is only found by decoding (the worker's job).
    """
    if len(data) < 4 or data[:3] != b"\xff\xd8\xff":
        return "no JPEG start-of-image marker"
    if data.find(b"\xff\xda", 2) < 0:
        return "no start-of-scan marker"
    end = data.rstrip(b"\x00")
    if end[-2:] != b"\xff\xd9":
        return "truncated: no end-of-image marker"
    return None


#: ``user:PASSWORD@`` anywhere in a spec: in a stream URL, a URL inside a ``gst:`` pipeline
#: (``rtspsrc location=rtsp://u:pw@...``), or a mistyped one (``rtsp:/u:pw@``, ``u:pw@host``);
#: the password runs to the last ``@`` before the next ``/`` or space
_URL_PASSWORD = re.compile(r"(?P<head>[^\s/@:]*:)(?P<pw>[^\s/]*)@")
#: GStreamer properties that carry a password (rtspsrc ``user-pw``, souphttpsrc
#: ``proxy-pw``, ...), quoted or not
_PW_PROPERTY = re.compile(
    r"(?P<head>\b[\w-]*(?:-pw|passwd|password)\s*=\s*)(?P<pw>\"[^\"]*\"|'[^']*'|[^\s!]+)",
    re.IGNORECASE,
)


def redact(spec: str) -> str:
    """``spec`` as it may be shown: every password in it replaced by ``***``. This is the one
    place a source's display name is made (``SourceSpec.spec``, the source's ``name``), and
    that name reaches the journal, every miss record, ``/api/stats``, ``/metrics`` and MQTT
    payloads; error messages about a spec use it too."""
    shown = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", spec)
    return _PW_PROPERTY.sub(lambda m: f"{m['head']}***", shown)
