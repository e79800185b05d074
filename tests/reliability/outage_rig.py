"""Helpers for the outage tests: a live pipeline on the real clock, a camera that can be
unplugged, and an MJPEG-over-HTTP camera on loopback that can stall without closing.

Every wait is on a Condition or an Event with a real-time bound (``TIMEOUT_S``): the bound is
a failure, never a pacing device. The fake camera and the HTTP camera pace their own frames
with ``Event.wait`` as a real camera's clock would; nothing in the tests sleeps to synchronise.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.clock import MONOTONIC
from edge.errors import SourceError
from edge.frame import Detections, Frame
from edge.outputs.records import MissLogOutput
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.samples import sample_path
from edge.sources.base import Source
from edge.sources.pacing import wait_until
from edge.testing.pipeline import FakeDetector, ListSink, TickClock
from edge.watchdog.record import MissRecord

TIMEOUT_S = 20.0
log = logging.getLogger(__name__)


def vtest_images(n: int, size: tuple[int, int] = (192, 144)) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(sample_path("vtest.avi")))
    out = []
    for _ in range(n):
        ok, image = cap.read()
        assert ok
        out.append(cv2.resize(image, size))
    cap.release()
    return out


@dataclass
class LiveRun:
    """A pipeline running in a thread on the real clock with a fake (instant) detector."""

    pipe: Pipeline
    sink: ListSink
    thread: threading.Thread
    results: list[int] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, source: Source) -> LiveRun:
        det = FakeDetector(TickClock(), {})  # no stage durations: the fake clock never moves
        sink = ListSink()
        settings = Settings(PipelineConfig(gc=False), DegradeConfig(policy="off"))
        pipe = Pipeline(source, det, settings, [MissLogOutput(sink, "mem")], clock=MONOTONIC)
        run = cls(pipe, sink, threading.Thread(target=pipe.run, daemon=True))
        pipe.subscribe(run._on_result)
        run.thread.start()
        return run

    def _on_result(self, f: Frame, _d: Detections, _s: bool) -> None:
        with self.cond:
            self.results.append(f.seq)
            self.cond.notify_all()

    def wait_results(self, n: int) -> None:
        """Block until ``n`` more frames have been published."""
        with self.cond:
            target = len(self.results) + n
            ok = self.cond.wait_for(lambda: len(self.results) >= target, TIMEOUT_S)
        assert ok, f"only {len(self.results)} results, wanted {target}"

    def gaps(self) -> list[MissRecord]:
        return [m for m in self.sink.misses if m.cause == "gap"]

    def wait_gap_records(self, n: int) -> list[MissRecord]:
        self.sink.wait_misses(n, TIMEOUT_S)
        with self.sink._cond:
            ok = self.sink._cond.wait_for(lambda: len(self.gaps()) >= n, TIMEOUT_S)
        assert ok, f"expected {n} gap records, got {self.sink.misses}"
        return self.gaps()

    def stop(self) -> None:
        self.pipe.request_stop()
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive()


class Cable:
    """The camera's cable: unplug it and reads fail and reopening fails; counts attempts."""

    def __init__(self) -> None:
        self.unplugged = threading.Event()
        self.opens = 0
        self.cond = threading.Condition()

    def wait_opens(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.opens >= n, TIMEOUT_S), self.opens


class FlakyCamera:
    """A 30 fps camera on the real clock. Unplugged, its read fails the way a V4L2 device
    that vanished does through OpenCV (``read()`` returns False: the adapter raises
    :class:`SourceError`), and opening it fails ("No such device")."""

    fps = 30.0

    def __init__(self, cable: Cable, seq: Iterator[int], image: np.ndarray) -> None:
        self.name = "/dev/video9"
        self.cable, self.seq, self.image = cable, seq, image
        self.closed = threading.Event()
        self._next_ns = MONOTONIC.now_ns()

    @classmethod
    def opener(cls, cable: Cable, seq: Iterator[int], image: np.ndarray) -> Callable[[], Source]:
        def reopen() -> Source:
            with cable.cond:
                cable.opens += 1
                cable.cond.notify_all()
            if cable.unplugged.is_set():
                raise SourceError("cannot open /dev/video9: No such device")
            return cls(cable, seq, image)

        return reopen

    def read(self, timeout_s: float) -> Frame | None:
        if self.cable.unplugged.is_set():
            raise SourceError("3 reads in a row failed (device gone?)")
        due = self._next_ns + round(1e9 / self.fps)
        if not wait_until(MONOTONIC, due, timeout_s, self.closed):  # the camera's own clock
            return None
        self._next_ns = due
        return Frame(next(self.seq), due, image=self.image, source=self.name)

    def close(self) -> None:
        self.closed.set()


class StallingMjpegServer:
    """An MJPEG-over-HTTP camera on 127.0.0.1. ``stall()`` keeps every connection open but
    sends nothing more (a camera whose encoder hung; new connections get their headers and
    then nothing); ``resume()`` carries on."""

    def __init__(self, parts: list[bytes], fps: float) -> None:
        self.parts, self.period_s = parts, 1.0 / fps
        self.flowing = threading.Event()
        self.flowing.set()
        self.closing = threading.Event()
        self.connections = 0
        self.cond = threading.Condition()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.cond:
                    server.connections += 1
                    server.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for part in server.stream():
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                        self.wfile.write(head % len(part) + part + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/video.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stream(self) -> Iterator[bytes]:
        i = 0
        while not self.closing.wait(self.period_s):  # the camera's frame clock
            while not self.flowing.wait(0.2):  # stalled: the socket stays open, silent
                if self.closing.is_set():
                    return
            yield self.parts[i % len(self.parts)]
            i += 1

    def wait_connections(self, n: int) -> None:
        """Block until ``n`` connections have been made (a reconnect shows up here)."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.connections >= n, TIMEOUT_S), n

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def stop(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5.0)


def jpeg_parts(n: int) -> list[bytes]:
    out = []
    for image in vtest_images(n, (384, 288)):
        ok, data = cv2.imencode(".jpg", image)
        assert ok
        out.append(data.tobytes())
    return out
