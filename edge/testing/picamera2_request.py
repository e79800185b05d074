"""The request side of :mod:`edge.testing.picamera2`, as picamera2 splits it: ``Job``
(picamera2/job.py), ``CompletedRequest`` (picamera2/request.py), and how the fake sensor fills
its buffers (real footage, laid out as libcamera lays out RGB888 and YUV420 with row padding).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge.frame import Image

if TYPE_CHECKING:
    from edge.testing.picamera2 import Picamera2


class Job:
    """As picamera2.job.Job: functions returning (done, result), a Future for the result."""

    def __init__(self, functions: list[Callable[[], tuple[bool, Any]]]) -> None:
        self._functions = functions
        self._future: Future[Any] = Future()
        self._future.set_running_or_notify_cancel()

    def execute(self) -> bool:
        try:
            while self._functions:
                done, result = self._functions[0]()
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._future.set_result(result)
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        self._future.set_exception(CancelledError())


class CompletedRequest:
    """A filled buffer set, reference counted like picamera2.request.CompletedRequest."""

    def __init__(self, cam: Picamera2, buffers: dict[str, Image], metadata: dict[str, Any]):
        self.picam2 = cam
        self.ref_count = 1
        self.stop_count = cam.stop_count
        self.config = dict(cam.camera_config or {})
        self._buffers: dict[str, Image] | None = buffers
        self._metadata = metadata

    def acquire(self) -> None:
        with self.picam2.request_lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self.picam2.request_lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                self.picam2._recycle(self)
                self._buffers = None

    def get_metadata(self) -> dict[str, Any]:
        self._check()
        return dict(self._metadata)

    def make_buffer(self, name: str) -> Image:
        buffers = self._check()
        if name not in buffers:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return np.array(buffers[name], np.uint8)

    def make_array(self, name: str) -> Image:
        buf = self.make_buffer(name)
        cfg = self.config[name]
        w, h = cfg["size"]
        stride = cfg["stride"]
        if cfg["format"] in ("BGR888", "RGB888"):
            rows = buf.reshape((h, stride))[:, : w * 3]
            return np.ascontiguousarray(rows).reshape((h, w, 3))
        if cfg["format"] in ("YUV420", "YVU420"):
            return buf.reshape((h * 3 // 2, stride))
        raise RuntimeError("Format " + cfg["format"] + " not supported")

    def _check(self) -> dict[str, Image]:
        if self._buffers is None:
            raise RuntimeError(
                "request used after release (the fake catches this; libcamera would not)"
            )
        return self._buffers


def fill_rgb(bgr: Image, cfg: dict[str, Any]) -> Image:
    w, h = cfg["size"]
    img = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    if cfg["format"] == "BGR888":
        img = img[:, :, ::-1]  # libcamera's BGR888 is R, G, B in memory
    buf = np.zeros((h, cfg["stride"]), np.uint8)
    buf[:, : w * 3] = img.reshape(h, w * 3)
    return buf.reshape(-1)


def fill_yuv420(bgr: Image, cfg: dict[str, Any]) -> Image:
    w, h = cfg["size"]
    stride = cfg["stride"]
    i420 = cv2.cvtColor(
        cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2YUV_I420
    )
    flat = i420.reshape(-1)
    y = np.zeros((h, stride), np.uint8)
    y[:, :w] = flat[: w * h].reshape(h, w)
    planes = [y.reshape(-1)]
    for k in range(2):  # U then V: h/2 rows of w/2, padded to stride/2
        plane = np.zeros((h // 2, stride // 2), np.uint8)
        start = w * h + k * (w // 2) * (h // 2)
        plane[:, : w // 2] = flat[start : start + (w // 2) * (h // 2)].reshape(h // 2, w // 2)
        planes.append(plane.reshape(-1))
    return np.concatenate(planes)
