"""Recorded footage as a camera: a video file, an image folder, and the built-in ``demo``.

Each is paced (see :mod:`edge.sources.pacing`) at the file's own rate, or at the ``fps``
option, unless ``pace`` is off; the next frame is decoded *before* waiting for its due time,
so it is ready at the moment a camera would have delivered it. The end of the footage is
:class:`~edge.sources.base.EndOfStream`, or the start again when looping.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import cv2

from edge.clock import Clock
from edge.errors import ImageError, SourceError, SourceNotFound
from edge.frame import Frame, Image
from edge.imagefile import decode_bounded, image_size, read_image_file
from edge.samples import sample_path
from edge.sources.base import CorruptFrame, EndOfStream, SourceOptions, jpeg_problem
from edge.sources.pacing import Pacer

log = logging.getLogger(__name__)

#: what an image folder may hold
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})
#: pacing rate for folders, and for videos whose container gives no usable rate
DEFAULT_FPS = 30.0
#: ``demo`` specs and the sample clip each loops (see edge/samples.py)
DEMO_CLIPS = {"": "Megamind.avi", "face": "Megamind.avi", "person": "vtest.avi"}
#: failed reads in a row that mean "the file ends here" (FFmpeg skips damaged packets itself)
_END_AFTER_FAILED_READS = 3

Payload = tuple[Image | None, bytes | None]


class _PacedFootage(ABC):
    """Shared read loop: load the next frame, wait for its due time, stamp it."""

    name: str
    fps: float | None

    def __init__(
        self, name: str, fps: float, opts: SourceOptions, clock: Clock, seq: Iterator[int]
    ) -> None:
        self.name = name
        self.fps = fps
        self._pace = opts.pace
        self._clock = clock
        self._seq = seq
        self._pacer = Pacer(fps, clock)
        self._stop = threading.Event()
        # held while decoding, so close() from another thread never frees a busy decoder
        self._io = threading.Lock()
        # the next frame, decoded ahead of its due time; or why it cannot be had, reported at
        # its due time so that a run of bad frames passes at the camera's rate, not in a spin
        self._pending: Payload | CorruptFrame | None = None

    @property
    def skipped(self) -> int:
        """Frames skipped because the reader fell a whole period or more behind."""
        return self._pacer.skipped

    @property
    def newest_only(self) -> bool:
        """True when paced: a reader that comes late gets the newest frame due, never a queue
        (the frames it missed are skipped and counted), so the worker may read directly."""
        return self._pace

    @abstractmethod
    def _load(self) -> Payload:
        """Decode the next frame; EndOfStream at the end, CorruptFrame for a bad one."""

    @abstractmethod
    def _skip_one(self) -> None:
        """Pass over the next frame as cheaply as possible (it was overwritten, in camera terms)."""

    def read(self, timeout_s: float) -> Frame | None:
        if self._stop.is_set():
            return None
        if self._pending is None:
            with self._io:
                if self._stop.is_set():
                    return None
                self._pending = self._next_payload()
        if self._pace:
            due = self._pacer.wait_due(timeout_s, self._stop)
            if due is None:
                return None
            self._pacer.advance()
            t_ns = due
        else:
            t_ns = self._clock.now_ns()
        pending, self._pending = self._pending, None
        if isinstance(pending, CorruptFrame):
            raise pending  # the bad frame used up its slot in the schedule
        image, jpeg = pending
        return Frame(next(self._seq), t_ns, image=image, jpeg=jpeg, source=self.name)

    def peek(self) -> Frame | None:
        """The next frame as :meth:`read` will deliver it, without taking it and without
        starting the schedule (the run warms its whole path on it before the clock starts);
        None when the footage has no frame to give. Its ``seq`` is -1."""
        with self._io:
            if self._pending is None and not self._stop.is_set():
                try:
                    self._pending = self._load()
                except CorruptFrame as e:
                    self._pending = e
                except (EndOfStream, SourceError):
                    return None
        pending = self._pending
        if pending is None or isinstance(pending, CorruptFrame):
            return None
        image, jpeg = pending
        return Frame(-1, self._clock.now_ns(), image=image, jpeg=jpeg, source=self.name)

    def _next_payload(self) -> Payload | CorruptFrame:
        if self._pace:
            lag = self._pacer.behind()
            for _ in range(lag):
                self._skip_one()
            self._pacer.skip(lag)
        try:
            return self._load()
        except CorruptFrame as e:
            return e

    def close(self) -> None:
        self._stop.set()


class VideoFileSource(_PacedFootage):
    """A video file read through OpenCV's FFmpeg backend."""

    def __init__(
        self,
        path: Path,
        name: str,
        opts: SourceOptions,
        clock: Clock,
        seq: Iterator[int],
        loop: bool = False,
    ) -> None:
        self.path = path
        self._loop = loop
        self._cap = self._open()
        own = self._cap.get(cv2.CAP_PROP_FPS)
        self.declared_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if opts.fps is None and not 0.1 <= own <= 1000.0:
            log.warning(
                "%s gives no usable frame rate (%r): pacing at %g fps", path, own, DEFAULT_FPS
            )
        fps = opts.fps or (own if 0.1 <= own <= 1000.0 else DEFAULT_FPS)
        super().__init__(name, fps, opts, clock, seq)
        self._read_this_pass = 0

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            if not self.path.exists():  # checked only on failure: no extra syscall per pass
                raise SourceNotFound(
                    f"video file {self.path}: no such file; expected the video at this path "
                    "(a looping video is reopened at each pass, so it must stay there): "
                    "restore the file or give the right path"
                )
            raise SourceError(
                f"video file {self.path} cannot be opened: expected a video OpenCV's FFmpeg "
                "backend can decode (avi, mp4, mkv ...); check the file and its codec"
            )
        return cap

    def _next(self, decode: bool) -> Image | None:
        for _ in range(2):  # this pass, then (when looping) one fresh pass
            for _ in range(_END_AFTER_FAILED_READS):
                if decode:
                    ok, frame = self._cap.read()
                    image = cast(Image, frame)
                else:
                    ok, image = self._cap.grab(), None
                if ok:
                    self._read_this_pass += 1
                    return image
            self._end_of_pass()
        raise SourceError(f"video file {self.path} yields no frames after reopening")

    def _end_of_pass(self) -> None:
        if self._read_this_pass < self.declared_frames - 1:
            log.warning(
                "%s ended at frame %d of the %d its header declares: truncated or damaged",
                self.path,
                self._read_this_pass,
                self.declared_frames,
            )
        if not self._loop:
            raise EndOfStream(self.name)
        # Reopening is more reliable than seeking to 0 in streams without an index.
        self._cap.release()
        self._cap = self._open()
        self._read_this_pass = 0

    def _load(self) -> Payload:
        image = self._next(decode=True)
        if image is None or image.ndim != 3 or image.shape[2] != 3:
            raise CorruptFrame(f"{self.name}: frame is not a BGR image", kind="decode")
        return image, None

    def _skip_one(self) -> None:
        self._next(decode=False)

    def close(self) -> None:
        super().close()
        with self._io:
            self._cap.release()


class ImageFolderSource(_PacedFootage):
    """Sorted image files (zero-pad numbered names). JPEGs are handed over undecoded when
    ``raw_jpeg`` is on, like an MJPEG camera's frames; other formats are decoded here."""

    def __init__(
        self,
        paths: Sequence[Path],
        name: str,
        opts: SourceOptions,
        clock: Clock,
        seq: Iterator[int],
        loop: bool = False,
    ) -> None:
        if not paths:
            raise SourceError(
                f"{name}: no images found (expected {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        super().__init__(name, opts.fps or DEFAULT_FPS, opts, clock, seq)
        self.paths = list(paths)
        self._raw_jpeg = opts.raw_jpeg
        self._max_pixels, self._max_bytes = opts.max_image_pixels, opts.max_image_bytes
        self._loop = loop
        self._index = 0

    @classmethod
    def list_images(cls, folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def _take(self) -> Path:
        if self._index >= len(self.paths):
            if not self._loop:
                raise EndOfStream(self.name)
            self._index = 0
        path = self.paths[self._index]
        self._index += 1
        return path

    def _load(self) -> Payload:
        path = self._take()
        try:  # a regular file of bounded size only: never a device, a pipe, or an empty file
            data = read_image_file(path, self._max_bytes)
        except ImageError as e:
            raise CorruptFrame(str(e), kind="unreadable") from None
        if data[:2] == b"\xff\xd8" and self._raw_jpeg:
            problem = jpeg_problem(data)
            if problem:
                raise CorruptFrame(f"{path}: {problem}", kind="jpeg")
            head = image_size(data)
            if head is not None and head.pixels <= self._max_pixels:
                return None, data  # the worker decodes it, reduced as far as the model allows
        try:  # sizes are checked from the header before anything is allocated
            image, _ = decode_bounded(data, str(path), self._max_pixels)
        except ImageError as e:
            raise CorruptFrame(str(e), kind="decode") from None
        return cast(Image, image), None

    def _skip_one(self) -> None:
        self._take()


def open_video(
    path: Path, name: str, opts: SourceOptions, clock: Clock, seq: Iterator[int]
) -> VideoFileSource:
    return VideoFileSource(path, name, opts, clock, seq, loop=opts.loop)


def open_folder(
    path: Path, name: str, opts: SourceOptions, clock: Clock, seq: Iterator[int]
) -> ImageFolderSource:
    paths = ImageFolderSource.list_images(path) if path.is_dir() else [path]
    return ImageFolderSource(paths, name, opts, clock, seq, loop=opts.loop)


def open_demo(
    which: str, name: str, opts: SourceOptions, clock: Clock, seq: Iterator[int]
) -> VideoFileSource:
    """``demo`` / ``demo:person``: a real sample clip, looped, paced at its own rate."""
    return VideoFileSource(sample_path(DEMO_CLIPS[which]), name, opts, clock, seq, loop=True)
