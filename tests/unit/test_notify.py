from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.testing import RecordingNotifier
from edge.watchdog.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A real unix datagram socket bound in a temp dir, as systemd's notify socket is."""
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 108 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def nothing_waiting(sock: socket.socket) -> bool:
    # sendto on a unix datagram socket queues the message before it returns, so an empty
    # receive queue right after a call means nothing was sent
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2.0)
    return False


def test_messages_on_a_real_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    with Notifier.from_env(env) as n:
        assert n.enabled and n.watchdog_enabled
        assert n.watchdog_interval_s == 1.5
        assert n.ready()
        assert sock.recv(4096) == b"READY=1"
        assert n.status("30.0 fps, p99 12.1 ms,\nmiss rate 0.00%")
        assert sock.recv(4096) == b"STATUS=30.0 fps, p99 12.1 ms, miss rate 0.00%"
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert n.stopping("stopping: SIGTERM")
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping: SIGTERM"
        assert n.send(extend_timeout_usec=5_000_000, ready=True)
        assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000\nREADY=1"
        assert (n.sent, n.failed) == (5, 0)


def test_abstract_namespace_socket() -> None:
    name = f"edge-vision-test-{os.getpid()}-{threading.get_ident()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.address == b"\0" + name.encode()
        assert n.ready("warming up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=warming up"
        n.close()
    finally:
        sock.close()


def test_watchdog_for_another_pid_is_not_ours(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}
    n = Notifier.from_env(env, pid=4242)
    assert not n.watchdog_enabled and n.watchdog_interval_s is None
    assert not n.watchdog()
    assert nothing_waiting(sock)
    assert n.status("still talking")  # status still goes: only the watchdog is not ours
    assert sock.recv(4096) == b"STATUS=still talking"
    n.close()


def test_no_watchdog_usec_means_no_pings(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "junk"})
    assert n.enabled and not n.watchdog_enabled
    assert not n.watchdog()
    assert nothing_waiting(sock)
    n.close()


def test_not_under_systemd_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert not n.ready() and not n.watchdog() and not n.stopping()
    assert (n.sent, n.failed) == (0, 0)
    assert not Notifier.null().status("x")


def test_unsupported_address_kind_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.watchdog.notify"):
        n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled
    assert "vsock:2:1234" in caplog.text


def test_send_failure_never_raises_and_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="edge.watchdog.notify"):
        assert not n.ready()
        assert not n.status("x")
    assert (n.sent, n.failed) == (0, 2)
    assert len(caplog.records) == 1  # warned once, not per message
    n.close()


def test_a_full_receiver_does_not_block_the_sender(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    sent = 0
    for _ in range(100_000):  # nobody reads: the receive queue fills, then sends fail fast
        if not n.watchdog_enabled and not n.send(WATCHDOG=1):
            break
        sent += 1
    assert n.failed == 1 and 0 < sent < 100_000
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.close()


def test_recording_notifier_for_pipeline_tests() -> None:
    n = RecordingNotifier(watchdog_usec=1_000_000)
    done = threading.Event()

    def worker() -> None:
        n.ready()
        n.watchdog()
        n.watchdog()
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    assert n.wait_for("WATCHDOG", 2, timeout_s=5)
    t.join(5)
    assert n.messages == [{"READY": "1"}, {"WATCHDOG": "1"}, {"WATCHDOG": "1"}]
    assert n.count("READY") == 1 and n.watchdog_interval_s == 0.5
    assert not n.wait_for("STOPPING", timeout_s=0.01)
