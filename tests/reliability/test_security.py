"""The exposed device: no secret in any output, tokens compared in constant time, and a
flood of idle connections that cannot take the server down for longer than its timeout.

(Loopback by default and the token on every endpoint but ``/healthz``:
``tests/integration/test_serve_api.py``; the unit's hardening and its ``systemd-analyze
security`` score: ``tests/integration/test_service_unit.py`` and docs/SERVICE.md; the MQTT
password never logged: ``tests/integration/test_mqtt_broker.py``.)
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge.serve import Server
from edge.serve.config import ServeConfig
from tests.integration.service_rig import NotifyListener, short_socket_dir
from tests.integration.test_sources_rtsp import _free_port
from tests.reliability.outage_rig import StallingMjpegServer, jpeg_parts
from tests.tools import slow_infer

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60.0
SECRET_NAMES = ("token", "password", "secret", "passwd")


@pytest.mark.usefixtures("models_ready")
def test_no_secret_reaches_the_journal_the_miss_log_or_the_api(tmp_path: Path) -> None:
    """A camera URL with a password and an HTTP token, through a real ``edge run``: neither
    appears on stderr (the journal), stdout, the miss log or ``/api/stats``."""
    password, token = "s3cret-Pa55", "t0ken-abcdefgh"
    camera = StallingMjpegServer(jpeg_parts(10), fps=15.0)  # ignores the credentials
    url = camera.url.replace("http://", f"http://viewer:{password}@")
    port = _free_port()
    log = tmp_path / "misses.jsonl"
    sockdir = short_socket_dir()
    listener = NotifyListener(sockdir / "n.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(sockdir / "n.sock")}
    slow_infer(env)  # every frame misses its 1 ms budget: the miss log names the source
    argv = [sys.executable, "-m", "edge.cli.main", "-v", "run", "--source", url]
    argv += ["--model", "face", "--budget-ms", "1", "--miss-log", str(log), "--json"]
    argv += ["--http", f"127.0.0.1:{port}", "--http-token", token]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=pipe, stderr=pipe, text=True)
    try:
        assert listener.wait_for(lambda ms: any("READY" in m.fields for m in ms), TIMEOUT_S)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/stats", headers={"Authorization": f"Bearer {token}"})
        stats = conn.getresponse().read().decode()
        conn.request("GET", "/api/stats?token=wrong-token-123")  # a failed attempt
        assert conn.getresponse().status == 401
        conn.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
        listener.close()
        camera.stop()
    assert proc.returncode == 0, err
    assert json.loads(stats)["source"] == url.replace(password, "***")
    outputs = {"stderr": err, "stdout": out, "miss log": log.read_text(), "api": stats}
    assert json.loads(out)["frames"]["missed"] >= 1  # the log has records naming the source
    for name, text in outputs.items():
        assert password not in text, f"the camera password is in the {name}"
        assert token not in text, f"the HTTP token is in the {name}"
        assert "wrong-token-123" not in text, f"a tried token is in the {name}"


def _secret_compares(path: Path) -> list[str]:
    """``==`` / ``!=`` between a secret-named value and anything but None or a literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            continue
        sides = [node.left, *node.comparators]
        named = [ast.unparse(s) for s in sides if _secret_named(s)]
        literal = any(isinstance(s, ast.Constant) for s in sides)
        if named and not literal:
            found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return found


def _secret_named(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return any(s in name.lower() for s in SECRET_NAMES)


def test_secrets_are_compared_in_constant_time() -> None:
    plain = [c for p in sorted((REPO / "edge").rglob("*.py")) for c in _secret_compares(p)]
    assert plain == [], "compare secrets with hmac.compare_digest: " + "; ".join(plain)
    app = (REPO / "edge" / "serve" / "app.py").read_text()
    assert "hmac.compare_digest(" in app


def test_the_checker_finds_a_plain_comparison(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def ok(given, cfg):\n    return given == cfg.token or cfg.token is None\n")
    assert _secret_compares(bad) == ["bad.py:2 given == cfg.token"]


def test_a_flood_of_idle_connections_is_bounded_and_cleared() -> None:
    """Slowloris: connections that send half a request head and wait. One address holds at
    most ``max_connections_per_client`` (16): each newcomer past it closes that address's
    oldest connection still waiting for a head; the ones held are answered 408 at the
    header deadline; nobody is refused; then the server answers again. (The caps, the
    reserve for /healthz and the refusal log: tests/reliability/test_listener.py.)"""
    cfg = ServeConfig(http="127.0.0.1:0", max_clients=2, header_timeout_s=0.5)
    server = Server(cfg)
    server.start()
    socks: list[socket.socket] = []
    try:
        assert server.address is not None
        for _ in range(100):
            s = socket.create_connection(server.address, timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            socks.append(s)
        first = [_read_all(s) for s in socks]
        timed_out = [r for r in first if r.startswith(b"HTTP/1.1 408")]
        displaced = [r for r in first if r == b""]  # closed to make room for newer ones
        assert len(timed_out) + len(displaced) == len(socks)
        assert len(timed_out) >= cfg.max_connections_per_client  # more only on a stall
        assert first[-1].startswith(b"HTTP/1.1 408") and b"request head not complete" in first[-1]
        conn = http.client.HTTPConnection(*server.address, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        for s in socks:
            s.close()
        server.stop()


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := s.recv(4096):  # the server closes: b"" (bounded by the socket timeout)
            chunks.append(chunk)
    except ConnectionResetError:  # closed with our bytes unread: a close all the same
        pass
    return b"".join(chunks)
