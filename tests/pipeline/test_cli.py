"""``edge run`` and ``edge bench`` as a user runs them: real model, real video, a real process
that gets a real SIGTERM mid-run and talks to a real sd_notify socket."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.misses import analyse, load
from tests.tools import slow_infer

EDGE = [sys.executable, "-m", "edge.cli.main"]
TIMEOUT_S = 60.0

pytestmark = pytest.mark.usefixtures("models_ready")


def edge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGE, *args], capture_output=True, text=True, timeout=TIMEOUT_S, env=env
    )


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(TIMEOUT_S)
    try:
        yield sock, path
    finally:
        sock.close()


def first_message(sock: socket.socket, proc: subprocess.Popen[str]) -> bytes:
    """The first datagram, or a failure with the process's stderr as soon as it exits."""
    sock.settimeout(1.0)
    for _ in range(int(TIMEOUT_S)):
        try:
            return sock.recv(4096)
        except TimeoutError:
            if proc.poll() is not None:
                raise AssertionError(f"edge run exited early: {proc.communicate()[1]}") from None
    raise AssertionError("no READY=1 within the timeout")


def test_run_prints_a_summary_and_the_log_agrees(samples_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "misses.jsonl"
    video = str(samples_dir / "vtest.avi")
    args = ["run", "--source", video, "--model", "face", "--frames", "12", "--no-pace"]
    env = dict(os.environ)
    slow_infer(env)  # each inference 5 ms slower: every inferred frame misses, on any machine
    args += ["--budget-ms", "1", "--policy", "process-all", "--miss-log", str(log)]
    done = edge(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert "frames: captured 12, processed 12, dropped 0" in done.stdout
    # 1 ms: inferred frames all miss; degradation sheds load after 3 in a row
    missed = int(re.search(r"missed (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert missed >= 3 and "misses by cause: " in done.stdout
    assert "ended degraded" in done.stdout
    report = analyse(load([str(log)]))
    assert report["misses"] == missed and report["frames"]["missed"] == missed


def test_sigterm_stops_a_run_cleanly(
    samples_dir: Path, tmp_path: Path, notify: tuple[socket.socket, str]
) -> None:
    sock, path = notify
    log = tmp_path / "state" / "misses.jsonl"
    env = {**os.environ, "NOTIFY_SOCKET": path, "STATE_DIRECTORY": str(log.parent)}
    video = str(samples_dir / "vtest.avi")  # 795 frames at 10 fps: runs for 80 s if not stopped
    proc = subprocess.Popen(
        [*EDGE, "run", "--source", video, "--model", "person", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert first_message(sock, proc) == b"READY=1"  # the first frame is done: mid-run now
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["frames"]["processed"] >= 1
    assert summary["miss_log"] == str(log)  # $STATE_DIRECTORY/misses.jsonl
    messages: list[bytes] = []
    while not messages or messages[-1] != b"STOPPING=1":
        messages.append(sock.recv(4096))
    assert b"STOPPING=1" in messages
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in runs if r["type"] == "run"] == ["start", "exit"]
    assert runs[-1]["processed"] == summary["frames"]["processed"]


def test_bench_json(samples_dir: Path, tmp_path: Path) -> None:
    video = str(samples_dir / "vtest.avi")
    done = edge(
        "bench", "--source", video, "--model", "person", "--frames", "10", "--no-pace",
        "--json", "--floor-invokes", "5", "--miss-log", str(tmp_path / "m.jsonl"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert d["frames"]["captured"] == 10 and d["frames"]["processed"] == 10
    assert {"captured", "processed", "dropped", "missed"} <= set(d["frames"])
    assert {"p50", "p95", "p99", "max"} <= set(d["latency_ms"])
    assert {"p50", "p99"} <= set(d["stages_ms"]["infer"])
    assert d["invoke_floor_ms"]["count"] == 5
    floor = d["invoke_floor_ms"]  # timed, so only its shape is checked: no timing relations
    assert 0 < floor["min"] <= floor["p50"] <= floor["p99"] <= floor["max"]
    assert 0 <= floor["over_budget"] <= 5 and floor["over_budget"] == int(floor["over_budget"])


def test_bad_flags_are_config_errors(tmp_path: Path) -> None:
    done = edge("run", "--budget-ms", "-3", "--source", "demo", "--model", "face")
    assert done.returncode == 2
    assert "pipeline.budget_ms" in done.stderr and "out of range" in done.stderr
