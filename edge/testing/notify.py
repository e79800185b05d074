"""A systemd notifier that keeps each message instead of sending it (the fake beside
:class:`edge.watchdog.notify.Notifier`)."""

from __future__ import annotations

import threading

from edge.watchdog.notify import Notifier, format_fields


class RecordingNotifier(Notifier):
    """The fake beside the real one: keeps each message instead of sending it.

    For pipeline tests that check *when* READY / WATCHDOG / STOPPING are sent; tests of the
    wire format use :class:`Notifier` with a real socket.
    """

    def __init__(self, watchdog_usec: int | None = None) -> None:
        super().__init__("<recording>", watchdog_usec)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()

    def send(self, **fields: object) -> bool:
        if not fields:
            return False
        parsed = dict(line.split("=", 1) for line in format_fields(fields).decode().split("\n"))
        with self._cond:
            self.messages.append(parsed)
            self.sent += 1
            self._cond.notify_all()
        return True

    def count(self, key: str) -> int:
        with self._cond:
            return sum(key in m for m in self.messages)

    def wait_for(self, key: str, n: int = 1, timeout_s: float = 1.0) -> bool:
        """Block until ``n`` messages carried ``key`` (e.g. ``"READY"``); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: sum(key in m for m in self.messages) >= n, timeout_s)
