"""An MJPEG-over-HTTP camera on loopback (a tiny threaded http.server sending
multipart/x-mixed-replace of real JPEG frames, some of them damaged), read through OpenCV's
FFmpeg backend: corrupt parts are counted and skipped, and a server stopped and restarted
mid-run is reconnected to."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator

import cv2
import pytest

from edge.clock import MONOTONIC
from edge.samples import sample_path
from edge.sources import SourceOptions, SupervisedSource, open_source

BOUNDARY = b"frame"
TIMEOUT_S = 15.0  # real-time bound on every loop below: a failure, never a pacing device


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    cap = cv2.VideoCapture(str(sample_path("vtest.avi")))
    out = []
    for _ in range(30):
        ok, image = cap.read()
        assert ok
        ok, data = cv2.imencode(".jpg", cv2.resize(image, (384, 288)))
        assert ok
        out.append(data.tobytes())
    cap.release()
    return out


class MjpegServer:
    """Serves ``parts`` at ``fps`` to each client, once or round and round, until stopped."""

    def __init__(self, parts: list[bytes], fps: float, port: int = 0, once: bool = False):
        self.parts, self.period_s, self.once = parts, 1.0 / fps, once
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for part in server.stream():
                        head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                        self.wfile.write(head % (BOUNDARY, len(part)) + part + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stream(self) -> Iterator[bytes]:
        i = 0
        # Event.wait paces the fake camera (and ends it at once when stopping)
        while not self.stopping.wait(self.period_s):
            if self.once and i == len(self.parts):
                return
            yield self.parts[i % len(self.parts)]
            i += 1

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()  # joins the handler threads, which end at once
        self.thread.join(timeout=5.0)


def _url(server: MjpegServer) -> str:
    return f"http://127.0.0.1:{server.port}/video.mjpg"


def _until(src: SupervisedSource, done: object, frames: list[int]) -> None:
    deadline = MONOTONIC.now_ns() + int(TIMEOUT_S * 1e9)
    while not done() and MONOTONIC.now_ns() < deadline:  # type: ignore[operator]
        frame = src.read(0.2)
        if frame is not None:
            assert frame.image is not None and frame.image.shape == (288, 384, 3)
            frames.append(frame.seq)
    assert done(), "timed out"  # type: ignore[operator]


def test_corrupt_parts_are_counted_and_skipped(jpegs: list[bytes]) -> None:
    parts = list(jpegs) + list(jpegs[:10])  # 40 parts
    parts[10] = b"garbage!" * 100  # not a JPEG at all
    parts[20] = b"\xff\xd8" + bytes(5000) + b"\xff\xd9"  # markers around nothing
    parts[25] = jpegs[25][: len(jpegs[25]) // 2]  # cut short: FFmpeg conceals the rest
    server = MjpegServer(parts, fps=60.0, once=True)
    opts = SourceOptions(stall_timeout_s=3.0, reconnect_min_s=600.0, reconnect_max_s=600.0)
    src = open_source(_url(server), opts)
    seqs: list[int] = []
    try:
        _until(src, lambda: not src.connected, seqs)  # read to the end of the response
    finally:
        src.close()
        server.stop()
    stats = src.stats()
    assert stats.corrupt_frames == 2  # the two parts FFmpeg could not decode
    assert stats.frames == len(seqs) and stats.frames + stats.dropped == 38
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert stats.read_errors == 1  # the end of the stream counts as losing a live source


def test_server_stopped_and_restarted_is_reconnected(
    jpegs: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    server = MjpegServer(jpegs, fps=30.0)
    port = server.port
    # the stop is seen at once (the connection closes); 4 s keeps a loaded machine's hiccup
    # from counting as a stall (one reconnect, exactly)
    opts = SourceOptions(
        stall_timeout_s=4.0, open_timeout_s=4.0, reconnect_min_s=0.1, reconnect_max_s=0.4
    )
    src = open_source(_url(server), opts)
    seqs: list[int] = []
    try:
        with caplog.at_level(logging.WARNING, logger="edge.sources.supervisor"):
            _until(src, lambda: len(seqs) >= 10, seqs)
            server.stop()
            _until(src, lambda: not src.connected, seqs)
            lost_at = len(seqs)
            # stay down until at least two reconnect attempts were refused
            _until(src, lambda: src.reconnect_attempts >= 2, seqs)
            assert len(seqs) == lost_at and not src.connected
            server = MjpegServer(jpegs, fps=30.0, port=port)
            _until(src, lambda: src.reconnects == 1 and len(seqs) >= lost_at + 10, seqs)
    finally:
        src.close()
        server.stop()
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # seq goes on across the gap
    stats = src.stats()
    assert stats.read_errors == 1 and stats.reconnects == 1 and stats.connected is False
    assert stats.reconnect_attempts >= 3  # at least two refused, then the one that worked
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert (
        lines[0].startswith(f"source {_url(server)} lost: ") and "reconnecting in 0.1 s" in lines[0]
    )
    assert lines[1].startswith(f"source {_url(server)} back after ")
