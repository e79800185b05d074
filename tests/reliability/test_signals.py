"""Signals and leftovers: SIGINT and SIGHUP stop a real ``edge run`` as SIGTERM does (summary,
flushed miss log with its exit record, ``STOPPING=1``, exit 0), a stopped run leaves no
threads and no processes behind, and the threads of a stream stuck in FFmpeg end by
themselves.

(SIGTERM: ``tests/pipeline/test_cli.py`` on a real process, ``tests/pipeline/test_runner.py``
mid-frame with a hung stage, ``tests/integration/test_service_notify.py`` as systemd runs it.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.clock import MONOTONIC
from edge.config import Config
from edge.launch import run
from edge.sources import SourceOptions, open_source
from tests.integration.service_rig import NotifyListener, short_socket_dir
from tests.integration.test_sources_rtsp import _free_port
from tests.reliability.outage_rig import LiveRun, StallingMjpegServer, jpeg_parts
from tests.tools import sample

EDGE = [sys.executable, "-m", "edge.cli.main"]
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60.0
pytestmark = pytest.mark.usefixtures("models_ready")


def session_members(sid: int) -> list[int]:
    """Live processes in session ``sid`` (the child and anything it started)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(d.name))
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_sigint_and_sighup_stop_a_run_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    sockdir = short_socket_dir()
    listener = NotifyListener(sockdir / "n.sock")
    log = tmp_path / "misses.jsonl"
    env = {**os.environ, "NOTIFY_SOCKET": str(sockdir / "n.sock")}
    argv = [*EDGE, "run", "--source", str(sample("vtest.avi")), "--model", "face"]
    argv += ["--fps", "30", "--json", "--miss-log", str(log)]
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert listener.wait_for(lambda ms: any("READY" in m.fields for m in ms), TIMEOUT_S)
        during = session_members(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
        listener.close()
    assert proc.returncode == 0, err
    assert during == [proc.pid]  # edge run starts no processes of its own
    assert session_members(proc.pid) == []  # and leaves none
    assert f"{sig.name} received: stopping" in err
    summary = json.loads(out)
    assert summary["frames"]["processed"] >= 1
    runs = [json.loads(x) for x in log.read_text().splitlines()]
    assert runs[-1]["type"] == "run" and runs[-1]["event"] == "exit"
    assert runs[-1]["processed"] == summary["frames"]["processed"]
    assert any("STOPPING" in m.fields for m in listener.messages)


def test_a_finished_run_leaves_no_threads_behind(samples_dir: Path, tmp_path: Path) -> None:
    """The whole run (capture, worker, watchdog, miss log, HTTP server) in this process."""
    before = set(threading.enumerate())
    cfg = Config.load(None).merged(
        {
            "model.name": "face",
            "source.fps": 30.0,
            "pipeline.frames": 45,
            "watchdog.miss_log": str(tmp_path / "m.jsonl"),
            "serve.http": f"127.0.0.1:{_free_port()}",
        }
    )
    summary = run(cfg, str(samples_dir / "vtest.avi"), environ={})
    assert summary.captured == 45
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == [], [t.name for t in left]


def test_threads_of_a_stream_stuck_in_ffmpeg_end_by_themselves() -> None:
    """Stopped while the camera is silent: the reader thread is inside FFmpeg's read, which
    nobody can interrupt; it must end when FFmpeg's read timeout (``stall_timeout_s``) does."""
    server = StallingMjpegServer(jpeg_parts(10), fps=15.0)
    opts = SourceOptions(stall_timeout_s=1.0, open_timeout_s=3.0, reconnect_min_s=0.1)
    try:
        src = open_source(server.url, opts, MONOTONIC)
        live = LiveRun.start(src)
        live.wait_results(5)
        server.stall()
        live.wait_gap_records(1)
        server.wait_connections(2)  # a reconnect, blocked in FFmpeg's open (up to 3 s)
        readers = [t for t in threading.enumerate() if t.name.startswith("capture:http")]
        live.stop()
        src.close()
        assert readers
        for t in readers:
            t.join(opts.stall_timeout_s + opts.open_timeout_s + 2.0)
        assert [t.name for t in readers if t.is_alive()] == []
    finally:
        server.stop()
