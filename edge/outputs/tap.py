"""A record sink that copies the watchdog's miss records to listeners (the MQTT output, the
HTTP viewer) on the way to the miss log, so outputs hear of misses without the pipeline
knowing about them.

    out = Outputs(MissTap(miss_log, mqtt.on_miss, server.record_miss), notifier, ...)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from edge.watchdog.misslog import JsonRecord
from edge.watchdog.record import MissRecord

log = logging.getLogger(__name__)

MissListener = Callable[[MissRecord], None]


class _Sink(Protocol):
    def write(self, record: JsonRecord | str) -> bool: ...

    @property
    def lost(self) -> int: ...

    def flush(self, timeout_s: float = 1.0) -> bool: ...


class MissTap:
    """Same interface as :class:`~edge.watchdog.misslog.MissLog` as the watchdog uses it:
    ``write`` never blocks or raises (a listener that raises is logged once and ignored),
    ``lost``, ``flush``. Listeners run on the watchdog thread: they must only hand off."""

    def __init__(self, sink: _Sink, *listeners: MissListener) -> None:
        self.sink = sink
        self.listeners = listeners
        self.listener_errors = 0

    def write(self, record: JsonRecord | str) -> bool:
        if isinstance(record, MissRecord):
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:  # an output must never cost the miss log a record
                    self.listener_errors += 1
                    if self.listener_errors == 1:
                        log.exception("a miss listener failed (logged once, then counted)")
        return self.sink.write(record)

    @property
    def lost(self) -> int:
        return self.sink.lost

    def flush(self, timeout_s: float = 1.0) -> bool:
        return self.sink.flush(timeout_s)
