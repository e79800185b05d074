"""The systemd notify protocol, from scratch: ``KEY=value`` lines in one unix datagram.

systemd passes ``$NOTIFY_SOCKET`` to a ``Type=notify`` service: a filesystem path, or an
abstract-namespace name written with a leading ``@`` (sent with a leading NUL byte instead).
With ``WatchdogSec=`` it also passes ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the pid the
watchdog is meant for); the service must send ``WATCHDOG=1`` more often than that, and
sd_watchdog_enabled(3) recommends every half interval, which is :attr:`watchdog_interval_s`.

A notification is a courtesy to the service manager, never a reason to stop: sending never
raises and never blocks (a non-blocking socket; a full receive queue counts as a failure).
Outside systemd ``from_env`` returns a notifier that does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes | None:
    """The sendto address for a ``$NOTIFY_SOCKET`` value; None for kinds we do not speak."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. systemd 254's "vsock:CID:PORT", for VMs, not for a Pi


def format_fields(fields: Mapping[str, object]) -> bytes:
    lines = []
    for key, value in fields.items():
        text = str(int(value)) if isinstance(value, bool) else str(value)
        # one field per line: a newline inside STATUS would start a bogus field
        lines.append(f"{key.upper()}={text.replace(chr(10), ' ')}")
    return "\n".join(lines).encode()


class Notifier:
    """Sends notifications to ``address``; with ``address=None`` every call is a no-op."""

    def __init__(self, address: str | bytes | None = None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self.sent = 0
        self.failed = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, pid: int | None = None) -> Notifier:
        """From the environment systemd gave the service (``os.environ`` in the CLI).

        The watchdog is honoured only when ``$WATCHDOG_PID`` is unset or names ``pid``
        (this process by default), as sd_watchdog_enabled(3) does.
        """
        raw = environ.get("NOTIFY_SOCKET", "")
        address = _address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%r is not a path or @abstract name: not notifying", raw)
        usec = _int_or_none(environ.get("WATCHDOG_USEC"))
        wd_pid = _int_or_none(environ.get("WATCHDOG_PID"))
        if wd_pid is not None and wd_pid != (os.getpid() if pid is None else pid):
            usec = None
        return cls(address, usec)

    @classmethod
    def null(cls) -> Notifier:
        """A notifier that does nothing (not under systemd)."""
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_usec is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``; None when off."""
        if not self.watchdog_enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2e6

    def send(self, **fields: object) -> bool:
        """Send ``KEY=value`` fields in one datagram (keys upper-cased); False if not sent."""
        if self.address is None or not fields:
            return False
        data = format_fields(fields)
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto(data, self.address)
            except OSError as e:
                self.failed += 1
                if not self._warned:
                    self._warned = True
                    log.warning("cannot notify systemd at %r: %s (carrying on)", self.address, e)
                return False
            self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1) if status is None else self.send(READY=1, STATUS=status)

    def watchdog(self) -> bool:
        """Ping the service manager's watchdog; does nothing when no watchdog is set."""
        return self.send(WATCHDOG=1) if self.watchdog_enabled else False

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING=1) if status is None else self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
