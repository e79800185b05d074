"""Raspberry Pi cameras through picamera2 (libcamera), for ``--source picamera2[:N]``.

picamera2 is imported here and only when a camera is opened, so the package imports on any
machine. It comes from Debian (``apt install python3-picamera2``), not pip: make the venv
with ``--system-site-packages``.

The camera runs a video configuration with two streams from the ISP: ``main`` (RGB888,
which is B, G, R in memory, i.e. OpenCV's BGR) for the overlay, and optionally ``lores``
(YUV420) at about the model's input size, scaled by the ISP for free, for inference.
``FrameDurationLimits`` pins the frame rate. The request's ``SensorTimestamp`` (start of
exposure, CLOCK_MONOTONIC ns) is the frame's capture time.

``capture_request(wait=False)`` returns a job; we wait on it with the read timeout and keep
the same job across timeouts. Waiting with ``capture_request(wait=timeout)`` instead would
leave a job behind in picamera2's queue at every timeout, and that job would later take a
request that nobody releases, until the camera runs out of buffers and stops.
Every request is released in ``finally``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, cast

import cv2

from edge.clock import Clock
from edge.errors import ConfigError, SourceError
from edge.frame import Frame, Image
from edge.sources.base import CameraFrame, SourceOptions

log = logging.getLogger(__name__)

DEFAULT_SIZE = (640, 480)
DEFAULT_FPS = 30.0
BUFFER_COUNT = 4  # we hold one request at a time and release it at once
_MAX_TIMESTAMP_SKEW_NS = 2_000_000_000


def _import_picamera2() -> Any:
    try:
        return importlib.import_module("picamera2")
    except ImportError as e:
        raise SourceError(
            f"picamera2 cannot be imported ({e}): install it with `sudo apt install "
            "python3-picamera2` and create the venv with --system-site-packages"
        ) from None


class PiCamera2Source:
    """One libcamera camera; ``read`` returns :class:`CameraFrame` records."""

    def __init__(
        self, camera_num: int, name: str, opts: SourceOptions, clock: Clock, seq: Iterator[int]
    ) -> None:
        self.name = name
        self.fps: float | None = opts.fps or DEFAULT_FPS
        self._clock, self._seq, self._opts = clock, seq, opts
        self._io = threading.Lock()  # held while a request is being read, and by close()
        self._job: Any = None
        self._closed = False
        self._last_ns = clock.now_ns()
        self._cam = self._open(_import_picamera2(), camera_num)
        try:
            self._start(opts)
        except Exception as e:
            self._cam.close()
            if isinstance(e, (SourceError, ConfigError)):
                raise
            raise SourceError(f"{name}: camera would not start: {e}") from None

    def _open(self, picamera2: Any, camera_num: int) -> Any:
        cameras = picamera2.Picamera2.global_camera_info()
        if camera_num >= len(cameras):
            found = ", ".join(str(c.get("Model", "?")) for c in cameras) or "none"
            raise SourceError(
                f"{self.name}: camera {camera_num} not found; libcamera lists {len(cameras)} "
                f"({found}). Check the ribbon cable and `rpicam-hello --list-cameras`"
            )
        try:
            return picamera2.Picamera2(camera_num)
        except (RuntimeError, IndexError) as e:
            raise SourceError(
                f"{self.name}: camera {camera_num} could not be opened ({e}); is another "
                "program using it?"
            ) from None

    def _start(self, opts: SourceOptions) -> None:
        main_size = opts.size or DEFAULT_SIZE
        lores = None
        if opts.lores_size is not None:
            if opts.lores_size[0] > main_size[0] or opts.lores_size[1] > main_size[1]:
                raise ConfigError(
                    f"source.lores_width/height {opts.lores_size} must not exceed the main "
                    f"size {main_size}: lower them or raise source.width/height"
                )
            lores = {"size": opts.lores_size, "format": "YUV420"}
        frame_us = round(1e6 / (self.fps or DEFAULT_FPS))
        config = self._cam.create_video_configuration(
            main={"size": main_size, "format": "RGB888"},
            lores=lores,
            controls={"FrameDurationLimits": (frame_us, frame_us)},
            buffer_count=BUFFER_COUNT,
            display=None,
            encode=None,
        )
        self._cam.configure(config)
        actual = self._cam.camera_configuration()
        self._lores_size = tuple(actual["lores"]["size"]) if lores else None
        self._cam.start()
        log.info(
            "source %s: main %s, lores %s, %g fps",
            self.name,
            tuple(actual["main"]["size"]),
            self._lores_size,
            self.fps,
        )

    def read(self, timeout_s: float) -> Frame | None:
        if self._job is None:
            self._job = self._cam.capture_request(wait=False)
        try:
            request = self._cam.wait(self._job, timeout=max(0.0, timeout_s))
        except FutureTimeout:
            return self._timed_out()
        except CancelledError:
            self._job = None
            raise SourceError(f"{self.name}: capture cancelled (camera closed)") from None
        except Exception as e:  # libcamera errors surface as the job's exception
            self._job = None
            raise SourceError(f"{self.name}: capture failed: {e}") from None
        return self._frame_from(request)

    def _timed_out(self) -> Frame | None:
        silent_s = (self._clock.now_ns() - self._last_ns) / 1e9
        if silent_s >= self._opts.stall_timeout_s:
            raise SourceError(
                f"{self.name}: no frame for {silent_s:.1f} s (camera cable or power? see dmesg)"
            )
        return None

    def _frame_from(self, request: Any) -> Frame | None:
        with self._io:
            if self._closed:
                return None  # close() got in first and gave the request back
            self._job = None
            try:
                metadata = request.get_metadata()
                main = request.make_array("main")
                yuv = request.make_array("lores") if self._lores_size else None
            finally:
                request.release()
        now = self._clock.now_ns()
        self._last_ns = now
        t_ns = int(metadata.get("SensorTimestamp", 0))
        if not 0 <= now - t_ns < _MAX_TIMESTAMP_SKEW_NS:
            t_ns = now  # a clock we do not share (or none): stamp on arrival
        lores = None if yuv is None or not self._lores_size else _bgr(yuv, self._lores_size[0])
        return CameraFrame(next(self._seq), t_ns, image=main, source=self.name, lores=lores)

    def close(self) -> None:
        with self._io:
            if self._closed:
                return
            self._closed = True
            job, self._job = self._job, None
            try:
                if job is not None:
                    self._cam.cancel_all_and_flush()  # wakes a read waiting on the job
                    self._release_done(job)
                self._cam.stop()
            finally:
                self._cam.close()

    def _release_done(self, job: Any) -> None:
        # A job that completed just before the cancel holds a request: give it back.
        try:
            request = self._cam.wait(job, timeout=0)
        except Exception:
            return
        if request is not None:
            request.release()


def _bgr(yuv: Image, width: int) -> Image:
    """BGR from picamera2's YUV420 array, which is (h * 3 / 2, stride): convert at the
    stride width (the U and V planes are laid out at stride / 2), then crop the padding."""
    bgr = cast(Image, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420))
    return bgr if bgr.shape[1] == width else bgr[:, :width].copy()
