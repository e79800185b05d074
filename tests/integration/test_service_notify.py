"""The service contract end to end, without PID 1: this test plays systemd's part.

It binds a real unix datagram socket as ``$NOTIFY_SOCKET``, sets ``$WATCHDOG_USEC`` and
``$WATCHDOG_PID``, builds the environment from the unit's ``Environment=`` and its
``EnvironmentFile=`` (systemd/edge-vision.default), and starts the unit's own ``ExecStart=``
(pointed at this checkout's venv and a test config: the sample clip, looped, with the person
model). Then: ``READY=1``, regular ``WATCHDOG=1``, all from the main pid (``NotifyAccess=main``);
an inference made to hang (a delegate that never returns) stops the pings within one ping
interval, and the miss log under ``$STATE_DIRECTORY`` names the stuck stage; SIGTERM gives
``STOPPING=1`` and exit status 0 within the unit's ``TimeoutStopSec=``.

The hang is injected from outside the package: a ``sitecustomize`` module on ``PYTHONPATH``
wraps ``Detector.infer`` so that, after SIGUSR1, the next call blocks forever, and tells the
test the moment it starts hanging by a datagram of its own on the same socket.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.service_rig import (
    SYSTEMD_DIR,
    Notification,
    NotifyListener,
    Unit,
    as_main_pid,
    exec_start,
    short_socket_dir,
    systemd_environment,
)

#: WATCHDOG_USEC for the test: systemd would give 10 s (the unit's WatchdogSec=); 2 s keeps the
#: test short while leaving the pipeline's pings (every 1 s) a whole second of scheduling slack
WATCHDOG_USEC = 2_000_000
PING_S = WATCHDOG_USEC / 2e6
#: a generous budget, so that the only miss is the hang itself
EDGE_ARGS = "--budget-ms 500"

HOOK = textwrap.dedent(
    '''
    """Fault injection for test_service_notify.py, loaded as sitecustomize: after SIGUSR1 the
    next Detector.infer() blocks forever, like a delegate that never returns."""
    import os
    import signal
    import socket
    import threading

    import edge.detector

    _armed = threading.Event()
    _forever = threading.Event()
    _real_infer = edge.detector.Detector.infer


    def _tell(message):
        address = os.environ.get("NOTIFY_SOCKET")
        if address:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(message, address)


    def _infer(self):
        if _armed.is_set():
            _tell(b"X_TEST_HUNG=infer")
            _forever.wait()
        return _real_infer(self)


    edge.detector.Detector.infer = _infer
    signal.signal(signal.SIGUSR1, lambda *_: _armed.set())
    _tell(b"X_TEST_HOOK=1")
    '''
)


@pytest.fixture()
def sock_dir() -> Iterator[Path]:
    d = short_socket_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _write_config(path: Path, clip: Path) -> None:
    path.write_text(
        f'[source]\nspec = "{clip}"\nloop = true\n\n[model]\nname = "person"\n', encoding="utf-8"
    )


def _environment_file() -> str:
    """The shipped /etc/default/edge-vision with EDGE_ARGS set, as an operator would."""
    text = (SYSTEMD_DIR / "edge-vision.default").read_text()
    assert "\nEDGE_ARGS=\n" in text, "the default file should carry an empty EDGE_ARGS="
    return text.replace("\nEDGE_ARGS=\n", f'\nEDGE_ARGS="{EDGE_ARGS}"\n')


def _pings_after(listener: NotifyListener, t: float) -> list[Notification]:
    return [m for m in listener.with_key("WATCHDOG") if m.t > t]


@pytest.mark.slow
@pytest.mark.usefixtures("models_ready")
def test_service_contract(samples_dir: Path, tmp_path: Path, sock_dir: Path) -> None:
    unit = Unit.load()
    assert unit.get("Service", "Type") == "notify"
    assert unit.get("Service", "NotifyAccess") == "main"
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    state, logs = tmp_path / "state", tmp_path / "logs"
    state.mkdir()
    logs.mkdir()
    config = tmp_path / "config.toml"
    _write_config(config, samples_dir / "vtest.avi")

    listener = NotifyListener(sock_dir / "notify")
    env = systemd_environment(
        unit,
        _environment_file(),
        NOTIFY_SOCKET=str(listener.path),
        WATCHDOG_USEC=str(WATCHDOG_USEC),
        STATE_DIRECTORY=str(state),
        LOGS_DIRECTORY=str(logs),
        INVOCATION_ID="0123456789abcdef0123456789abcdef",
        PYTHONPATH=str(hook_dir),
        EDGE_CACHE=os.environ["EDGE_CACHE"],
    )
    argv = exec_start(unit, env, config)
    assert argv[-2:] == EDGE_ARGS.split()  # $EDGE_ARGS from the environment file, split
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(as_main_pid(argv), env=env, cwd=state, stdout=fo, stderr=fe)
    try:
        _contract(proc, listener, unit)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        listener.close()
    stderr = err.read_text()
    assert "withholding WATCHDOG=1" in stderr, stderr[-2000:]
    assert "SIGTERM received" in stderr
    assert "frames: captured" in out.read_text()  # the exit summary
    # the miss log went where the unit's StateDirectory= puts it, and names the hung stage
    records = [json.loads(line) for line in (state / "misses.jsonl").read_text().splitlines()]
    misses = [r for r in records if r["type"] == "miss"]
    assert [(r["cause"], r["action"]) for r in misses] == [("infer", "stuck")], misses
    assert {r["event"] for r in records if r["type"] == "run"} >= {"start", "exit"}
    assert not (logs / "misses.jsonl").exists()


def _contract(proc: subprocess.Popen[bytes], listener: NotifyListener, unit: Unit) -> None:
    # the fault injector is in place (else the rest proves nothing)
    assert listener.wait_for(lambda ms: any("X_TEST_HOOK" in m.fields for m in ms), 30.0)
    # READY=1 after the first frame, within the unit's start timeout
    start_s = unit.seconds("Service", "TimeoutStartSec")
    assert listener.wait_for(lambda ms: any("READY" in m.fields for m in ms), start_s), (
        f"no READY=1 (exit status {proc.poll()})"
    )
    ready = listener.with_key("READY")
    assert len(ready) == 1 and ready[0].fields["READY"] == "1"
    # regular pings while frames complete: every gap shorter than WATCHDOG_USEC
    assert listener.wait_for(lambda ms: len(_pings_after(listener, ready[0].t)) >= 4, 8 * PING_S)
    pings = [ready[0].t] + [m.t for m in _pings_after(listener, ready[0].t)]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < WATCHDOG_USEC / 1e6, gaps
    # a stage hangs: the pings stop within one ping interval of the hang
    proc.send_signal(signal.SIGUSR1)
    assert listener.wait_for(lambda ms: any("X_TEST_HUNG" in m.fields for m in ms), 5.0)
    hung = listener.with_key("X_TEST_HUNG")[0].t
    # wait out a whole watchdog interval past the last ping a hang may still let through: a
    # ping now would be a failure, so the wait is expected to time out
    late = listener.wait_for(
        lambda ms: any("WATCHDOG" in m.fields and m.t > hung + PING_S + 0.5 for m in ms),
        PING_S + 1.0 + WATCHDOG_USEC / 1e6,
    )
    assert not late, [m.t - hung for m in _pings_after(listener, hung)]
    last_ping = max(m.t for m in listener.with_key("WATCHDOG"))
    assert proc.poll() is None, "the hang must not end the process: systemd does that"
    # systemd would now have seen WATCHDOG_USEC pass without a ping, and restarted the service
    assert time.monotonic() - last_ping > WATCHDOG_USEC / 1e6
    # SIGTERM: STOPPING=1, exit status 0, within TimeoutStopSec=
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(unit.seconds("Service", "TimeoutStopSec")) == 0
    assert listener.wait_for(lambda ms: any("STOPPING" in m.fields for m in ms), 2.0)
    # every notification came from the main process, as NotifyAccess=main demands
    assert {m.pid for m in listener.messages} == {proc.pid}
