"""The listener against idle, slow and hostile clients (issue 18: holes 1 and 6, token
guessing): the real server on loopback, real sockets, real HTTP clients.

Other loopback addresses (127.0.0.2, ...) stand in for other machines: Linux routes the
whole 127.0.0.0/8 to this host, so a socket bound to one is a different client address to
the server without leaving the machine.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.frame import Detections, Frame
from edge.serve import ServeConfig, Server
from edge.serve.config import Bind
from edge.serve.guard import HostNames, client_key, exposure_warning
from edge.testing import FakeClock
from tests.integration.serve_rig import MjpegReader, get

BUDGET_NS = 33_000_000
TIMEOUT_S = 10.0  # a bound on every wait: a failure, never a pacing device
TOKEN = "s3cret-token-123"


def serve(clock: FakeClock, **kw: object) -> Server:
    """A started server with one frame published; the fake clock stands still, so
    ``/healthz`` stays 200 however slow the test is, until the test moves it."""
    server = Server(ServeConfig(http="127.0.0.1:0", **kw), clock=clock)  # type: ignore[arg-type]
    server.attach_stats(lambda: {}, BUDGET_NS, clock=clock)
    server.start()
    publish(server, clock)
    return server


def publish(server: Server, clock: FakeClock) -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    server.publish(Frame(0, clock.now_ns(), image=image), Detections.empty())


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


def connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    assert server.address is not None
    return socket.create_connection(server.address, TIMEOUT_S, source_address=(source, 0))


def closed_by_server(s: socket.socket) -> bytes:
    """What the server sent before it closed ``s`` (a reset counts as a close)."""
    chunks = []
    try:
        while chunk := s.recv(4096):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def health(server: Server, source: str = "127.0.0.1") -> tuple[int, dict[str, object]]:
    status, _, body = get(server, "/healthz", source=source)
    return status, json.loads(body)


@pytest.fixture()
def sockets() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


# -- hole 1: idle and slow sockets must not take /healthz (or the page) away --------------


def test_healthz_answers_while_idle_sockets_fill_the_server(
    clock: FakeClock, sockets: list[socket.socket]
) -> None:
    """96 silent sockets from 8 addresses (12 each: under the per-address cap) against a
    cap of 65: before, /healthz was 503 until the client timeout; now the oldest sockets that
    have not sent a request give way, and /healthz and the page answer."""
    server = serve(clock, max_clients=1, header_timeout_s=600.0, client_timeout_s=600.0)
    try:
        for i in range(96):
            sockets.append(connect(server, f"127.0.0.{2 + i % 8}"))
        status, body = health(server)
        assert (status, body.get("ok")) == (200, True), body
        assert get(server, "/")[0] == 200
        conns = json.loads(get(server, "/api/stats")[2])["connections"]
        assert conns["open"] <= 65 and conns["displaced"] >= 96 + 2 - 65, conns
        assert conns["refused"] == 0
        # the displaced ones were closed by the server, without a word
        assert [closed_by_server(s) for s in sockets[:20]] == [b""] * 20
    finally:
        server.stop()


def test_one_address_holds_at_most_its_cap_of_idle_connections(
    clock: FakeClock, sockets: list[socket.socket]
) -> None:
    """100 sockets from one address that send half a request head and wait: the newest 16
    are held (``max_connections_per_client``), the others are closed to make room; another
    address is served meanwhile."""
    server = serve(clock, header_timeout_s=600.0, client_timeout_s=600.0)
    try:
        for _ in range(100):
            s = connect(server)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            sockets.append(s)
        status, _, body = get(server, "/api/stats", source="127.0.0.2")  # accepted after them
        conns = json.loads(body)["connections"]
        assert status == 200 and conns["open"] == 16 + 1 and conns["displaced"] == 84, conns
        assert [closed_by_server(s) for s in sockets[:84]] == [b""] * 84
        assert health(server)[0] == 200  # the same address: its oldest idle one gives way
    finally:
        server.stop()


def test_a_slowloris_is_cut_off_at_the_header_deadline(
    clock: FakeClock, sockets: list[socket.socket]
) -> None:
    """K sockets each send a byte of a request head every 20 ms and never finish it (bounded:
    at most 500 bytes each, about 10 s). With a 0.3 s header deadline and a 600 s client
    timeout, the server closes every one of them (408) long before they run out of bytes,
    and /healthz answers 200 at every check meanwhile."""
    k, tick_s, budget = 24, 0.02, 500
    server = serve(
        clock, header_timeout_s=0.3, client_timeout_s=600.0, max_connections_per_client=64
    )
    sel = selectors.DefaultSelector()
    got: dict[socket.socket, bytes] = {}
    try:
        for _ in range(k):
            s = connect(server)
            s.setblocking(False)
            sockets.append(s)
            sel.register(s, selectors.EVENT_READ)
            got[s] = b""
        head = b"GET /api/stats HTTP/1.1\r\nX-Slow: " + b"a" * budget
        open_ = set(sockets)
        checks = []
        for i in range(budget):
            for s in list(open_):
                try:
                    s.send(head[i : i + 1])
                except OSError:  # the server closed it: the read below says so
                    pass
            # pacing of the load, not a handshake: the outcome is read, never timed
            for key, _ in sel.select(tick_s):
                s = key.fileobj  # type: ignore[assignment]
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                got[s] += chunk
                if not chunk:
                    open_.discard(s)
                    sel.unregister(s)
            if i % 10 == 0:
                checks.append(health(server)[0])
            if not open_:
                break
        assert not open_, f"{len(open_)} of {k} slow sockets still open after {budget} bytes"
        assert checks and set(checks) == {200}, checks
        answered = [v for v in got.values() if v]
        assert all(v.startswith(b"HTTP/1.1 408") for v in answered), answered[:1]
    finally:
        sel.close()
        server.stop()


def test_refusals_when_every_slot_is_busy_are_logged_once_and_healthz_still_answers(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An address with two streams open and a cap of two: its next requests get 503 with
    ``Retry-After``, but /healthz is answered from a reserved slot; one warning line for
    the lot, the next one only after the interval, with the count; other addresses are
    served as usual."""
    server = serve(clock, max_clients=2, max_connections_per_client=2)
    caplog.set_level(logging.WARNING, logger="edge.serve.guard")
    streams = [MjpegReader(server) for _ in range(2)]
    try:
        assert [r.status for r in streams] == [200, 200]
        for _ in range(10):
            status, headers, body = get(server, "/api/stats")
            assert status == 503 and headers["retry-after"] == "5", body
            assert b"too many connections" in body
        status, body = health(server)
        assert (status, body.get("ok")) == (200, True), body
        assert get(server, "/api/stats", source="127.0.0.2")[0] == 200
        lines = [r.getMessage() for r in caplog.records if "refusing" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith("refusing HTTP connections: 1 refused;")
        assert "127.0.0.1 holds its 2 connections" in lines[0]
        clock.advance(61_000_000_000)
        publish(server, clock)
        assert get(server, "/api/stats")[0] == 503
        lines = [r.getMessage() for r in caplog.records if "refusing" in r.getMessage()]
        assert len(lines) == 2 and "11 refused in the last 61 s" in lines[1], lines
    finally:
        for r in streams:
            r.close()
        server.stop()


# -- hole 6: DNS rebinding ------------------------------------------------------------------


def test_a_foreign_host_name_cannot_read_the_camera(clock: FakeClock) -> None:
    """Without a token, a page on a rebinding domain used to get the frame; now a Host that
    is not an address, localhost, this machine's name or a configured name is 403."""
    server = serve(clock)
    assert server.address is not None
    port = server.address[1]
    try:
        for host in ("attacker-rebind.example", f"attacker-rebind.example:{port}", "a:b"):
            for path in ("/snapshot.jpg", "/api/stats", "/", "/stream.mjpg"):
                status, _, body = get(server, path, {"Host": host})
                assert status == 403 and b"serve.allowed_hosts" in body, (host, path)
        assert get(server, "/healthz", {"Host": "attacker-rebind.example"})[0] == 200
        for host in (f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", f"[::1]:{port}",
                     "cam.localhost", "192.168.1.20:8080", socket.gethostname()):  # fmt: skip
            assert get(server, "/snapshot.jpg", {"Host": host})[0] == 200, host
        with socket.create_connection(server.address, TIMEOUT_S) as s:  # HTTP/1.0, no Host
            s.sendall(b"GET /api/stats HTTP/1.0\r\n\r\n")
            assert closed_by_server(s).startswith(b"HTTP/1.1 200")
    finally:
        server.stop()


def test_configured_names_are_accepted(clock: FakeClock) -> None:
    server = serve(clock, allowed_hosts=("cam.example.com", ".example.net"))
    try:
        for host in ("cam.example.com", "CAM.example.com.:8080", "example.net", "a.b.example.net"):
            assert get(server, "/api/stats", {"Host": host})[0] == 200, host
        for host in ("evil-example.net", "cam.example.com.evil", "example.com"):
            assert get(server, "/api/stats", {"Host": host})[0] == 403, host
    finally:
        server.stop()


def test_allowed_hosts_are_validated() -> None:
    for bad in ("", "bad name", "http://cam", "..x", "a/b"):
        with pytest.raises(ConfigError, match="serve.allowed_hosts"):
            ServeConfig(allowed_hosts=(bad,))
    assert ServeConfig(allowed_hosts=("*", ".lan", "cam-1.lan")).allowed_hosts[0] == "*"
    assert HostNames(["*"], "pi").allows("anything.example")
    assert HostNames([], "pi").allows("pi.local:8080") and HostNames([], "pi").allows("PI")


def test_a_non_loopback_bind_without_a_token_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "cam.example.com"):
        warning = exposure_warning(Bind(host, 8080), None)
        assert warning is not None and "without a token" in warning, host
        assert exposure_warning(Bind(host, 8080), TOKEN) is None
    for host in ("127.0.0.1", "127.0.0.5", "::1", "localhost"):
        assert exposure_warning(Bind(host, 8080), None) is None, host
    caplog.set_level(logging.WARNING)
    server = Server(ServeConfig(http="127.0.0.1:0"))
    server.start()
    server.stop()
    assert not [r for r in caplog.records if "without a token" in r.getMessage()]


# -- wrong tokens are rate-limited per address ----------------------------------------------


def test_wrong_tokens_make_an_address_wait(clock: FakeClock) -> None:
    """Five wrong tokens, then 429 with ``Retry-After`` for everything from that address
    (the right token too) until the wait is over; the wait doubles; another address and
    /healthz are unaffected; the right token after the wait clears the count."""
    server = serve(clock, token=TOKEN)
    bearer = {"Authorization": "Bearer " + TOKEN}
    try:
        statuses = [get(server, f"/api/stats?token=wrong-{i:04}")[0] for i in range(5)]
        assert statuses == [401] * 5
        status, headers, body = get(server, "/api/stats", bearer)
        assert status == 429 and headers["retry-after"] == "1", body
        assert get(server, "/api/stats?token=wrong-9999")[0] == 429
        assert health(server)[0] == 200
        assert get(server, "/api/stats", bearer, source="127.0.0.2")[0] == 200
        clock.advance(1_000_000_000)
        publish(server, clock)
        assert get(server, "/api/stats?token=wrong-0005")[0] == 401  # and now 2 s
        status, headers, _ = get(server, "/api/stats", bearer)
        assert status == 429 and headers["retry-after"] == "2"
        clock.advance(2_000_000_000)
        publish(server, clock)
        assert get(server, "/api/stats", bearer)[0] == 200
        assert get(server, "/api/stats?token=wrong-0006")[0] == 401  # the count starts over
        assert get(server, "/api/stats", bearer)[0] == 200
        stats = json.loads(get(server, "/api/stats", bearer)[2])
        assert stats["connections"]["token_lockouts"] == 3
    finally:
        server.stop()


def test_client_keys() -> None:
    assert client_key(("127.0.0.1", 5)) == "127.0.0.1"
    assert client_key(("::ffff:10.0.0.7", 5, 0, 0)) == "10.0.0.7"
    a = client_key(("2001:db8:1:2:aaaa::1", 5, 0, 0))
    assert a == client_key(("2001:db8:1:2:bbbb::9", 5, 0, 0)) == "2001:db8:1:2::/64"


def test_allowed_hosts_from_the_config_file_and_the_command_line(tmp_path: Path) -> None:
    from edge.cli.main import build_parser
    from edge.cli.run import load_config

    toml = tmp_path / "edge.toml"
    toml.write_text('[serve]\nallowed_hosts = ["cam.example.com", ".lan"]\n')
    args = build_parser().parse_args(["run", "--config", str(toml)])
    assert load_config(args).serve.allowed_hosts == ("cam.example.com", ".lan")
    argv = ["run", "--config", str(toml), "--http-allow-host", "a.example"]
    args = build_parser().parse_args([*argv, "--http-allow-host", "*"])
    assert load_config(args).serve.allowed_hosts == ("a.example", "*")  # the flags win
    args = build_parser().parse_args(["run", "--http-allow-host", "no such name"])
    with pytest.raises(ConfigError, match="serve.allowed_hosts: 'no such name' is not a host"):
        load_config(args)
    toml.write_text('[serve]\nallowed_hosts = "cam.example.com"\n')
    with pytest.raises(ConfigError, match="allowed_hosts must be a list"):
        load_config(build_parser().parse_args(["run", "--config", str(toml)]))
