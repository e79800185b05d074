"""The miss log as an output: every miss record and every run record, to a record sink
(:class:`~edge.watchdog.misslog.MissLog`: never blocks, never raises; records it cannot
write are counted ``lost``)."""

from __future__ import annotations

from typing import Protocol

from edge.pipeline.output import OutputBase
from edge.watchdog.misslog import JsonRecord
from edge.watchdog.record import MissRecord, RunRecord


class RecordSink(Protocol):
    """What the miss log is to this output: ``write`` (never blocks or raises), ``lost``,
    ``flush``."""

    def write(self, record: JsonRecord | str) -> bool: ...

    @property
    def lost(self) -> int: ...

    def flush(self, timeout_s: float = 1.0) -> bool: ...


class MissLogOutput(OutputBase):
    """Writes the run's records to ``sink``; ``path`` names it in the summary."""

    name = "miss-log"

    def __init__(self, sink: RecordSink, path: str | None = None) -> None:
        self.sink = sink
        self.record_log = path

    def on_miss(self, record: MissRecord) -> None:
        self.sink.write(record)

    def on_run_record(self, record: RunRecord) -> None:
        self.sink.write(record)

    @property
    def records_lost(self) -> int:
        return self.sink.lost

    def flush(self, timeout_s: float = 1.0) -> bool:
        return self.sink.flush(timeout_s)


__all__ = ["MissLogOutput", "RecordSink"]
