"""An RTSP camera on loopback stopped for 10 s and started again, under ``edge run`` as the
service runs it (``$NOTIFY_SOCKET``, ``WATCHDOG_USEC`` of the unit's ``WatchdogSec=10``,
default reconnect settings): the run survives, reconnects once, the miss log has one counted
``gap`` and its end, ``/healthz`` says 503 while no frame completes and 200 again after, and
the ``WATCHDOG=1`` pings pause meanwhile.

Slow (about 30 s): the outage itself lasts 10 s, then the default backoff decides when the
camera is found again. Needs Debian's ``gir1.2-gst-rtsp-server-1.0 python3-gi`` (the RTSP
server of ``tests/integration/test_sources_rtsp.py``).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.misses import analyse, load
from tests.integration.service_rig import NotifyListener, short_socket_dir
from tests.integration.test_sources_rtsp import (
    RtspServer,
    _check_system_gstreamer,
    _frames_dir,
    _free_port,
)

OUTAGE_S = 10.0
WATCHDOG_USEC = 10_000_000  # the unit's WatchdogSec=10
TIMEOUT_S = 90.0
log = logging.getLogger(__name__)


def _pings(listener: NotifyListener) -> list[float]:
    return [m.t for m in listener.with_key("WATCHDOG")]


def _healthz(port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.usefixtures("models_ready")
def test_rtsp_camera_down_for_10_s_under_edge_run(tmp_path: Path) -> None:
    _check_system_gstreamer()
    workdir = _frames_dir(tmp_path)
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    miss_log = tmp_path / "misses.jsonl"
    sockdir = short_socket_dir()
    listener = NotifyListener(sockdir / "notify.sock")
    server = RtspServer(workdir, port)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(sockdir / "notify.sock"),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    http_port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "edge.cli.main",
        "run",
        "--source",
        url,
        "--model",
        "face",
        "--miss-log",
        str(miss_log),
        "--json",
        "--http",
        f"127.0.0.1:{http_port}",
    ]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(argv, env=env, stdout=pipe, stderr=pipe, text=True)
    try:
        assert listener.wait_for(lambda ms: any("READY" in m.fields for m in ms), TIMEOUT_S)
        assert listener.wait_for(lambda ms: len(_pings(listener)) >= 2, TIMEOUT_S)
        server.stop()
        threading.Event().wait(OUTAGE_S)  # the fault itself: the camera is away for 10 s
        health_down = _healthz(http_port)
        server = RtspServer(workdir, port)
        n_before = len(_pings(listener))
        # frames complete again: the pings come back
        assert listener.wait_for(lambda ms: len(_pings(listener)) > n_before + 1, TIMEOUT_S)
        health_up = _healthz(http_port)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
        server.stop()
        listener.close()
    assert proc.returncode == 0, err
    assert health_down[0] == 503 and "no frame completed" in health_down[1], health_down
    assert health_up[0] == 200, health_up
    summary = json.loads(out)
    pings = _pings(listener)
    longest_s = max(b - a for a, b in zip(pings, pings[1:], strict=False))
    records = [json.loads(x) for x in miss_log.read_text().splitlines()]
    gaps = [r for r in records if r.get("cause") == "gap"]
    assert [g["action"] for g in gaps] == ["source-silent", "source-back"]
    assert summary["missed_by_cause"].get("gap") == 1
    assert summary["source_stats"]["reconnects"] == 1
    assert summary["source_stats"]["read_errors"] == 1
    lost = [x for x in err.splitlines() if " lost: " in x]
    back = [x for x in err.splitlines() if " back after " in x]
    assert len(lost) == 1 and len(back) == 1, err
    silent_s = gaps[1]["latency_ms"] / 1000
    assert OUTAGE_S <= silent_s < OUTAGE_S + 35  # 10 s down + detection + the backoff
    report = analyse(load([str(miss_log)]))
    figures = {
        "outage_s": OUTAGE_S,
        "no_frames_s": round(silent_s, 1),
        "back_line": back[0].split(": ", 1)[-1],
        "longest_ping_interval_s": round(longest_s, 1),
        "watchdog_sec": WATCHDOG_USEC / 1e6,
        "frames": summary["frames"],
        "edge_misses_by_cause": report["by_cause"],
        "healthz_during": health_down,
    }
    log.info("rtsp outage figures: %s", json.dumps(figures))
    # no frame for that long means no ping for that long: systemd's watchdog would have fired
    assert longest_s >= min(silent_s, WATCHDOG_USEC / 1e6) - 1.0
