"""A real RTSP server on loopback (GStreamer's gst-rtsp-server, run by Debian's python3 through
PyGObject), streaming real JPEG frames as RTP/JPEG; read through OpenCV's FFmpeg backend. The
server is stopped for a while mid-run and started again on the same port: the source must
say it lost the stream, retry with backoff, and say when it is back.

Needs the apt packages ``gir1.2-gst-rtsp-server-1.0`` and ``python3-gi`` (which bring
gstreamer1.0-plugins-base/-good/-bad with them).
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest

from edge.clock import MONOTONIC
from edge.samples import sample_path
from edge.sources import SourceOptions, SupervisedSource, open_source

SYSTEM_PYTHON = "/usr/bin/python3"
APT = "gir1.2-gst-rtsp-server-1.0 python3-gi"
TIMEOUT_S = 20.0  # real-time bound on every loop below

SERVER = r"""
import signal, sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

Gst.init(None)
port, pattern, fps = sys.argv[1], sys.argv[2], sys.argv[3]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# multifilesrc loops the JPEGs; videorate gives them timestamps so they go out at fps
factory.set_launch(
    f"( multifilesrc location={pattern} loop=true caps=image/jpeg,framerate={fps}/1 "
    f"! jpegparse ! videorate ! image/jpeg,framerate={fps}/1 ! rtpjpegpay name=pay0 pt=96 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/live", factory)
if server.attach(None) == 0:
    sys.exit("could not listen on port " + port)
loop = GLib.MainLoop()
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
print("ready", flush=True)
loop.run()
"""


def _check_system_gstreamer() -> None:
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import GstRtspServer"
    )
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    except FileNotFoundError:
        pytest.fail(f"{SYSTEM_PYTHON} is missing: this test needs Debian's python3 and {APT}")
    if r.returncode != 0:
        pytest.fail(f"gst-rtsp-server is not importable by {SYSTEM_PYTHON}: apt install {APT}")


class RtspServer:
    def __init__(self, workdir: Path, port: int, fps: int = 15) -> None:
        script = workdir / "rtsp_server.py"
        script.write_text(SERVER)
        args = [SYSTEM_PYTHON, str(script), str(port), str(workdir / "%04d.jpg"), str(fps)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the server listens (or dies)
        if line.strip() != "ready":
            self.stop()
            pytest.fail(f"RTSP server did not start: {line!r}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _frames_dir(tmp_path: Path) -> Path:
    cap = cv2.VideoCapture(str(sample_path("vtest.avi")))
    for i in range(30):
        ok, image = cap.read()
        assert ok
        cv2.imwrite(str(tmp_path / f"{i:04d}.jpg"), cv2.resize(image, (384, 288)))
    cap.release()
    return tmp_path


def _until(src: SupervisedSource, done: Callable[[], bool], stamps: list[tuple[int, int]]) -> None:
    deadline = MONOTONIC.now_ns() + int(TIMEOUT_S * 1e9)
    while not done() and MONOTONIC.now_ns() < deadline:
        frame = src.read(0.2)
        if frame is not None:
            assert frame.image is not None and frame.image.shape == (288, 384, 3)
            stamps.append((frame.seq, frame.t_capture_ns))
    assert done(), "timed out"


@pytest.mark.slow
def test_rtsp_server_stopped_and_restarted_is_reconnected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _check_system_gstreamer()
    workdir = _frames_dir(tmp_path)
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    server = RtspServer(workdir, port)
    opts = SourceOptions(
        # 4 s: a loaded machine's hiccup is not taken for a stall (one reconnect, exactly)
        stall_timeout_s=4.0, open_timeout_s=4.0, reconnect_min_s=0.2, reconnect_max_s=1.0
    )
    got: list[tuple[int, int]] = []
    src = open_source(url, opts, MONOTONIC)
    try:
        assert src.fps == 15.0  # from the stream's SDP
        with caplog.at_level(logging.WARNING, logger="edge.sources.supervisor"):
            _until(src, lambda: len(got) >= 15, got)
            server.stop()
            _until(src, lambda: not src.connected, got)
            lost_at = len(got)
            _until(src, lambda: src.reconnect_attempts >= 2, got)  # down: attempts refused
            assert len(got) == lost_at
            server = RtspServer(workdir, port)
            _until(src, lambda: src.reconnects == 1 and len(got) >= lost_at + 15, got)
    finally:
        src.close()
        server.stop()
    seqs = [s for s, _ in got]
    stamps = [t for _, t in got]
    stats = src.stats()
    # one numbering across both connections; gaps are frames the reader overwrote (dropped)
    assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False))
    assert seqs[-1] + 1 <= stats.frames + stats.dropped + 1  # + one left unread at close
    assert stamps == sorted(stamps)
    assert (stats.read_errors, stats.reconnects) == (1, 1)
    assert stats.reconnect_attempts >= 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"source {url} lost: ") and "reconnecting in 0.2 s" in lines[0]
    assert lines[1].startswith(f"source {url} back after ")
