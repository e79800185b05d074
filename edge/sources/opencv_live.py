"""Live sources through OpenCV: V4L2 cameras, RTSP/HTTP streams, GStreamer pipelines.

OpenCV's ``VideoCapture.read`` blocks (up to the backend's own timeout) and must not be
released while another thread is inside it. So each live capture has one reader thread
that owns the ``VideoCapture`` from open to release, and hands frames over through a
one-slot, latest-wins box: ``read(timeout_s)`` honours its timeout, and ``close()``
returns at once even when the backend is stuck in a read (the reader releases the capture
when that read returns).

A failed ``read`` is not always a lost stream: FFmpeg reports an undecodable MJPEG part as a
failed read and carries on with the next. A failure followed by a good frame is counted as
a corrupt frame; ``_LOST_AFTER`` failures in a row, or no frame for ``stall_timeout_s``,
mean the source is lost (the supervisor reconnects).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import cv2

from edge.clock import Clock
from edge.errors import SourceError
from edge.frame import Frame, Image
from edge.sources.base import CorruptFrame, SourceOptions, jpeg_problem, redact

log = logging.getLogger(__name__)

_LOST_AFTER = 3
#: a V4L2 timestamp further than this from now is not trusted (driver without monotonic stamps)
_MAX_TIMESTAMP_SKEW_NS = 2_000_000_000
_MJPG = cv2.VideoWriter.fourcc(*"MJPG")


@dataclass(frozen=True)
class CaptureSpec:
    """What to hand ``cv2.VideoCapture`` and how to treat what comes back."""

    target: str | int
    api: int
    params: tuple[int, ...] = ()
    v4l2: bool = False  # ask for MJPEG/size/fps/buffer 1; trust buffer timestamps


def has_gstreamer(build_info: str | None = None) -> bool:
    """Whether this OpenCV was built with GStreamer (pip's wheels are not)."""
    info = cv2.getBuildInformation() if build_info is None else build_info
    return re.search(r"^\s*GStreamer:\s*YES", info, re.MULTILINE) is not None


def stream_spec(url: str, opts: SourceOptions) -> CaptureSpec:
    ms_open = int(opts.open_timeout_s * 1000)
    ms_read = int(opts.stall_timeout_s * 1000)
    params = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms_open, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms_read)
    return CaptureSpec(url, cv2.CAP_FFMPEG, params)


def gst_spec(pipeline: str) -> CaptureSpec:
    if not has_gstreamer():
        raise SourceError(
            f"source {redact('gst:' + pipeline)!r}: this OpenCV ({cv2.__version__}) has no "
            "GStreamer (pip's opencv-python wheels never do). Use the system OpenCV: apt install "
            "python3-opencv, make the venv with --system-site-packages, and remove pip's opencv"
        )
    return CaptureSpec(pipeline, cv2.CAP_GSTREAMER)


def v4l2_spec(device: str | int) -> CaptureSpec:
    return CaptureSpec(device, cv2.CAP_V4L2, v4l2=True)


class LiveCapture:
    """One live OpenCV capture with its reader thread (see the module docstring)."""

    def __init__(
        self,
        name: str,
        spec: CaptureSpec,
        opts: SourceOptions,
        clock: Clock,
        seq: Iterator[int],
    ) -> None:
        self.name = name
        self.fps: float | None = opts.fps
        self.jpeg_mode = False
        #: frames the reader overwrote before anyone read them
        self.dropped = 0
        self._spec, self._opts, self._clock, self._seq = spec, opts, clock, seq
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._error: SourceError | None = None
        self._corrupt = 0
        self._corrupt_reason = ""
        self._opened = False
        self._stop = threading.Event()
        self._last_ns = clock.now_ns()
        self._thread = threading.Thread(target=self._run, name=f"capture:{name}", daemon=True)
        self._thread.start()

    def wait_open(self) -> None:
        """Block until the capture is open; SourceError (and closed) if it cannot be.

        Construction does not wait, so a supervisor reconnecting in the capture thread can
        be closed from another thread at once; ``read`` reports a failed open instead.
        """
        budget_s = self._opts.open_timeout_s + 1.0
        with self._cond:
            opened = self._cond.wait_for(lambda: self._opened or self._error is not None, budget_s)
            error = self._error
        if error is not None or not opened:
            self.close()
            raise error or SourceError(
                f"source {self.name} could not be opened: no answer in {budget_s:g} s"
            )

    # --- reader thread -------------------------------------------------------------------

    def _run(self) -> None:
        cap = cv2.VideoCapture(self._spec.target, self._spec.api, list(self._spec.params))
        try:
            if not cap.isOpened():
                self._fail(SourceError(f"source {self.name} could not be opened: {self._why()}"))
                return
            self._configure(cap)
            with self._cond:
                self._opened = True
                self._last_ns = self._clock.now_ns()
                self._cond.notify_all()
            self._read_loop(cap)
        finally:
            cap.release()

    def _why(self) -> str:
        if self._spec.v4l2:
            return "no such camera, or it is busy (another program? see v4l2-ctl --list-devices)"
        if self._spec.api == cv2.CAP_GSTREAMER:
            return "GStreamer could not start it (try it in gst-launch-1.0; end it in appsink)"
        return "no stream answered at that address (is the server up and the path right?)"

    def _configure(self, cap: cv2.VideoCapture) -> None:
        if self._spec.v4l2:
            cap.set(cv2.CAP_PROP_FOURCC, _MJPG)
            if self._opts.size is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._opts.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._opts.size[1])
            if self._opts.fps is not None:
                cap.set(cv2.CAP_PROP_FPS, self._opts.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            mjpeg = int(cap.get(cv2.CAP_PROP_FOURCC)) == _MJPG
            # Raw JPEG bytes only when the camera really sends MJPEG (else they'd be YUYV).
            if self._opts.raw_jpeg and mjpeg and cap.set(cv2.CAP_PROP_CONVERT_RGB, 0):
                self.jpeg_mode = True
        own = cap.get(cv2.CAP_PROP_FPS)
        if self.fps is None and 0.1 <= own <= 1000.0:
            self.fps = own
        log.info(
            "source %s open: %s fps, %s", self.name, self.fps, "jpeg" if self.jpeg_mode else "bgr"
        )

    def _read_loop(self, cap: cv2.VideoCapture) -> None:
        failures = 0
        while not self._stop.is_set():
            ok, data = cap.read()
            now = self._clock.now_ns()
            if not ok or data is None or data.size == 0:
                failures += 1
                if failures >= _LOST_AFTER:
                    self._fail(self._lost_error(failures, now))
                    return
                continue
            if failures:
                self._count_corrupt(failures, "undecodable frame (failed read)")
                failures = 0
            self._deliver(cap, cast(Image, data), now)

    def _lost_error(self, failures: int, now: int) -> SourceError:
        """Why the reads failed. FFmpeg's own read timeout (set to ``stall_timeout_s``) ends
        a stalled stream's read with a failure, as a closed stream does: told apart by how
        long nothing came (a closed stream fails at once)."""
        silent_s = (now - self._last_ns) / 1e9
        if silent_s >= 0.5 * self._opts.stall_timeout_s:
            return SourceError(f"no frame after {silent_s:.1f} s (stalled: the backend timed out)")
        return SourceError(f"{failures} reads in a row failed (stream ended?)")

    def _deliver(self, cap: cv2.VideoCapture, data: Image, now: int) -> None:
        t_ns = self._timestamp(cap, now)
        if self.jpeg_mode:
            jpeg = data.tobytes()
            problem = jpeg_problem(jpeg)
            if problem:
                self._count_corrupt(1, problem)
                return
            frame = Frame(next(self._seq), t_ns, jpeg=jpeg, source=self.name)
        else:
            frame = Frame(next(self._seq), t_ns, image=data, source=self.name)
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._last_ns = now
            self._cond.notify_all()

    def _timestamp(self, cap: cv2.VideoCapture, now: int) -> int:
        if self._spec.v4l2:
            # V4L2 buffer timestamps are CLOCK_MONOTONIC; OpenCV reports them in ms.
            t_ns = int(cap.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
            if 0 < now - t_ns < _MAX_TIMESTAMP_SKEW_NS:
                return t_ns
        return now

    def _count_corrupt(self, n: int, reason: str) -> None:
        with self._cond:
            self._corrupt += n
            self._corrupt_reason = reason
            self._cond.notify_all()

    def _fail(self, error: SourceError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    # --- consumer side -------------------------------------------------------------------

    @property
    def newest_only(self) -> bool:
        """Always: the reader thread keeps only the newest frame (and counts what it
        overwrote), so the pipeline's worker may read this source directly."""
        return True

    def read(self, timeout_s: float) -> Frame | None:
        with self._cond:
            self._cond.wait_for(self._ready, max(0.0, timeout_s))
            if self._corrupt:
                n, self._corrupt = self._corrupt, 0
                raise CorruptFrame(f"{self.name}: {self._corrupt_reason}", "stream", count=n)
            if self._frame is not None:
                frame, self._frame = self._frame, None
                return frame
            if self._error is not None:
                raise self._error
            silent_s = (self._clock.now_ns() - self._last_ns) / 1e9
            # Until the backend has opened, its own open timeout applies.
            limit_s = self._opts.stall_timeout_s if self._opened else self._opts.open_timeout_s + 1
        if silent_s >= limit_s:
            self.close()
            state = "no frame" if self._opened else "still not open"
            raise SourceError(f"{state} after {silent_s:.1f} s (stalled)")
        return None

    def _ready(self) -> bool:
        return (
            self._frame is not None
            or self._error is not None
            or self._corrupt > 0
            or self._stop.is_set()
        )

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # A backend stuck in read() cannot be interrupted; the daemon reader releases the
        # capture itself when it returns, so do not wait long for it here.
        self._thread.join(timeout=0.5)


def accepted_v4l2(spec: str) -> bool:
    return (
        spec.isdigit()
        or re.fullmatch(r"/dev/video\d+", spec) is not None
        or (spec.startswith("/dev/v4l/"))
    )


def device_of(spec: str) -> str | int:
    return int(spec) if spec.isdigit() else spec
