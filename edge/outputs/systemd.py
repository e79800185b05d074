"""systemd as an output: the run's lifecycle as sd_notify datagrams through a
:class:`~edge.watchdog.notify.Notifier` (``READY=1`` after the first frame, ``WATCHDOG=1``
every half ``WatchdogSec=`` while frames complete, ``STATUS=`` every status interval,
``STOPPING=1``). Outside systemd the notifier does nothing, and neither does this."""

from __future__ import annotations

from edge.pipeline.output import OutputBase
from edge.watchdog.notify import Notifier


class SystemdOutput(OutputBase):
    """Speaks for the process to systemd; closing the notifier is its owner's."""

    name = "systemd"

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    @property
    def alive_interval_s(self) -> float | None:
        return self.notifier.watchdog_interval_s

    @property
    def wants_status(self) -> bool:
        return self.notifier.enabled

    def on_ready(self) -> None:
        self.notifier.ready()

    def on_alive(self) -> None:
        self.notifier.watchdog()

    def on_status(self, text: str) -> None:
        self.notifier.status(text)

    def on_stopping(self) -> None:
        self.notifier.stopping()


__all__ = ["SystemdOutput"]
