"""A stand-in for the ``picamera2`` module, for machines without a Raspberry Pi camera.

Tests put it in ``sys.modules["picamera2"]`` and open ``picamera2`` sources as usual, so the
real adapter runs against it. It follows picamera2's own code (raspberrypi/picamera2:
``picamera2.py``, ``request.py``, ``job.py``) for everything the adapter touches: camera
info and opening errors, ``create_video_configuration`` defaults and checks, ``configure``
filling in ``stride``, jobs on a ``Future`` with ``capture_request(wait, signal_function,
flush)`` and ``wait(job, timeout)``, ``cancel_all_and_flush``, reference-counted requests
(a camera whose buffers are all held delivers nothing), ``make_array`` for RGB888 (B, G, R;
row padding removed) and YUV420 (``(h * 3 / 2, stride)``, padding kept), and metadata with
``SensorTimestamp`` (CLOCK_MONOTONIC ns, start of exposure). docs/SOURCES.md lists it all.

Not modelled: libcamera itself, controls other than FrameDurationLimits, raw streams,
previews, encoders, the event-loop thread (jobs run on the fake sensor's thread instead).
Frames are real footage: a sample clip (Megamind by default), looped, scaled to each stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import cv2

from edge.frame import Image
from edge.samples import sample_path
from edge.testing.picamera2_request import (
    CompletedRequest,
    Job,
    fill_rgb,
    fill_yuv420,
)


class FakeState:
    """Test controls: which cameras exist, the footage, and a 'cable pulled' switch."""

    def __init__(self) -> None:
        self.cameras: list[dict[str, Any]] = [
            {"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/soc/i2c0mux/imx708@1a"}
        ]
        self.clip: Path | None = None  # None: the Megamind sample
        self.stalled = threading.Event()  # set: the sensor delivers nothing
        self.open: dict[int, Picamera2] = {}
        self.delivered: list[int] = []  # SensorTimestamp of every frame handed to a job
        self.lost = 0  # frames the sensor dropped for want of a free buffer

    def outstanding(self) -> int:
        """Requests the application holds and has not released, over all open cameras."""
        return sum(cam._held() for cam in self.open.values())


state = FakeState()


def reset() -> None:
    global state
    state = FakeState()


def _align(size: tuple[int, int]) -> tuple[int, int]:
    return (size[0] - size[0] % 2, size[1] - size[1] % 2)


def _stream(defaults: dict[str, Any], updates: dict[str, Any] | None) -> dict[str, Any] | None:
    if updates is None:
        return None
    for key in updates:
        if key not in ("format", "size", "preserve_ar"):
            raise ValueError(
                f"Bad key {key!r}: valid stream configuration keys are ('format', 'size')"
            )
    out = defaults | updates
    out["size"] = _align(tuple(out["size"]))
    return out


_RGB = ("RGB888", "BGR888")
_YUV = ("YUV420", "YVU420")


def _stride(fmt: str, width: int) -> int:
    row = width * 3 if fmt in _RGB else width
    return -(-row // 64) * 64  # rows padded to 64 bytes, so make_array must crop


class Picamera2:
    """The subset of picamera2.Picamera2 that edge.sources.picamera2 uses."""

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [dict(c, Num=i) for i, c in enumerate(state.cameras)]

    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: int | None = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        camera_num = self.global_camera_info()[camera_num]["Num"]  # IndexError, as upstream
        if camera_num in state.open:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_idx = camera_num
        self.lock = threading.Lock()  # jobs and completed_requests, as upstream
        self.request_lock = threading.Lock()  # reference counts, as upstream
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True
        self.stop_count = 0
        self.completed_requests: list[CompletedRequest] = []
        self._job_list: list[Job] = []
        self._max_queue_len = 1
        self._free_buffers = 0
        self._live: set[int] = set()  # ids of requests with a reference held
        self._stop_sensor = threading.Event()
        self._sensor: threading.Thread | None = None
        state.open[camera_num] = self

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
    ) -> dict[str, Any]:
        main_cfg = _stream({"format": "XBGR8888", "size": (1280, 720)}, main or {})
        assert main_cfg is not None
        lores_cfg = _stream({"format": "YUV420", "size": main_cfg["size"]}, lores)
        config = {
            "use_case": "video",
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_cfg,
            "lores": lores_cfg,
            "raw": None,  # the fake has no raw stream
            "controls": {"FrameDurationLimits": (33333, 33333)} | (controls or {}),
            "display": display,
            "encode": encode,
        }
        for use in (display, encode):
            if use is not None and config.get(use) is None:
                raise RuntimeError(f"Display stream {use} was not defined")
        return config

    def configure(self, camera_config: dict[str, Any] | None = None) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None:
            raise NotImplementedError("the fake only takes explicit configurations")
        config: dict[str, Any] = {
            k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()
        }
        main, lores = config["main"], config["lores"]
        if main["format"] not in _RGB:
            raise NotImplementedError(
                f"the fake's main stream is RGB888/BGR888, not {main['format']}"
            )
        if lores is not None:
            if lores["format"] not in _YUV:
                raise RuntimeError("lores stream must be YUV")
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        for stream in (main, lores):
            if stream is not None:
                stream["stride"] = _stride(stream["format"], stream["size"][0])
                rows = stream["size"][1] * (3 if stream["format"] in _YUV else 2) // 2
                stream["framesize"] = stream["stride"] * rows
        self._max_queue_len = 1 if config["queue"] and config["buffer_count"] > 1 else 0
        self._free_buffers = config["buffer_count"]
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def start(self, config: dict[str, Any] | None = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self.started = True
        self._stop_sensor.clear()
        self._sensor = threading.Thread(target=self._run_sensor, name="fake-sensor", daemon=True)
        self._sensor.start()

    def stop(self) -> None:
        if not self.started:
            return
        self._stop_sensor.set()
        if self._sensor is not None:
            self._sensor.join(timeout=5.0)
        with self.lock:
            self.stop_count += 1
            self.started = False
            pending, self.completed_requests = self.completed_requests, []
        for request in pending:
            request.release()

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        state.open.pop(self.camera_idx, None)
        self.is_open = False

    # --- jobs, as upstream ---------------------------------------------------------------

    def dispatch_functions(
        self,
        functions: list[Callable[[], tuple[bool, Any]]],
        wait: bool | float | None,
        signal_function: Callable[[Job], None] | None = None,
        immediate: bool = False,
    ) -> Any:
        if wait is None:
            wait = signal_function is None
        timeout = None if wait is True else wait
        with self.lock:
            job = Job(functions)
            self._job_list.append(job)
            if len(self._job_list) == 1 and self.completed_requests:
                self._run_jobs()  # upstream prods its event loop, which does this at once
        return job.get_result(timeout=timeout) if wait else job

    def wait(self, job: Job, timeout: float | None = None) -> Any:
        return job.get_result(timeout=timeout)

    def capture_request(
        self,
        wait: bool | float | None = None,
        signal_function: Callable[[Job], None] | None = None,
        flush: bool | int | None = None,
    ) -> Any:
        if flush is True:
            flush = time.monotonic_ns()
        functions: list[Callable[[], tuple[bool, Any]]] = [
            partial(self._wait_for_timestamp_, flush),
            self._capture_request_,
        ]
        return self.dispatch_functions(functions, wait, signal_function)

    def cancel_all_and_flush(self) -> None:
        with self.lock:
            for job in self._job_list:
                job.cancel()
            self._job_list = []

    def _capture_request_(self) -> tuple[bool, Any]:
        if not self.completed_requests:
            return (False, None)
        request = self.completed_requests.pop(0)
        state.delivered.append(request._metadata["SensorTimestamp"])
        return (True, request)

    def _wait_for_timestamp_(self, timestamp_ns: int | None) -> tuple[bool, None]:
        if not timestamp_ns:
            return (True, None)
        while self.completed_requests:
            md = self.completed_requests[0]._metadata
            if md["SensorTimestamp"] - 1000 * md["ExposureTime"] >= timestamp_ns:
                return (True, None)
            self.completed_requests.pop(0).release()
        return (False, None)

    def _run_jobs(self) -> None:
        while self._job_list and self._job_list[0].execute():
            self._job_list.pop(0)

    # --- the sensor ----------------------------------------------------------------------

    def _held(self) -> int:
        with self.lock, self.request_lock:
            return len(self._live - {id(r) for r in self.completed_requests})

    def _recycle(self, request: CompletedRequest) -> None:
        self._live.discard(id(request))
        self._free_buffers += 1

    def _run_sensor(self) -> None:
        assert self.camera_config is not None
        frame_us = int(self.camera_config["controls"]["FrameDurationLimits"][1])
        clip = state.clip or sample_path("Megamind.avi")
        cap = cv2.VideoCapture(str(clip))
        next_ns, seq = time.monotonic_ns(), 0
        try:
            while not self._stop_sensor.wait(max(0, next_ns - time.monotonic_ns()) / 1e9):
                next_ns += frame_us * 1000
                if state.stalled.is_set():
                    continue
                ok, bgr = cap.read()
                if not ok:
                    cap.release()
                    cap = cv2.VideoCapture(str(clip))
                    ok, bgr = cap.read()
                self._complete(self._buffers(cast(Image, bgr)), frame_us, seq)
                seq += 1
        finally:
            cap.release()

    def _buffers(self, bgr: Image) -> dict[str, Image]:
        assert self.camera_config is not None
        out = {"main": fill_rgb(bgr, self.camera_config["main"])}
        if self.camera_config["lores"] is not None:
            out["lores"] = fill_yuv420(bgr, self.camera_config["lores"])
        return out

    def _complete(self, buffers: dict[str, Image], frame_us: int, seq: int) -> None:
        exposure_us = frame_us // 2
        metadata = {
            "SensorTimestamp": time.monotonic_ns() - exposure_us * 1000,
            "ExposureTime": exposure_us,
            "FrameDuration": frame_us,
            "SensorSequence": seq,
        }
        with self.request_lock:
            if self._free_buffers == 0:  # the application holds every buffer
                state.lost += 1
                return
            self._free_buffers -= 1
            request = CompletedRequest(self, buffers, metadata)
            self._live.add(id(request))
        with self.lock:
            self.completed_requests.append(request)
            self._run_jobs()
            stale = self.completed_requests[
                : max(0, len(self.completed_requests) - self._max_queue_len)
            ]
            del self.completed_requests[: len(stale)]
        for old in stale:
            old.release()


__all__ = ["CompletedRequest", "FakeState", "Job", "Picamera2", "reset", "state"]
