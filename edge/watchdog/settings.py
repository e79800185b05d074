"""The watchdog's config section: ``[watchdog]`` (the miss log and the deadline watchdog's
reporting).

Frozen, validated at construction, like the pipeline's sections (:mod:`edge.pipeline.settings`).
Nothing here reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import ConfigError
from edge.validate import check_range


@dataclass(frozen=True)
class WatchdogConfig:
    """``[watchdog]``: the miss log and the deadline watchdog's reporting.

    miss_log           JSON-lines file of miss and run records; ``-`` for stdout (the journal
                       under systemd); unset: :func:`edge.state.default_miss_log`
    max_bytes          rotate the miss log past this size
    backups            rotated files kept (``misses.jsonl.1`` ...)
    stuck_ms           a frame still in a stage this long after its deadline is reported at
                       once, naming the stage (a hung delegate shows up while it hangs); a frame
                       that finishes sooner is reported when it finishes, with all its stages
    status_interval_s  how often STATUS= (fps, p99, miss rate) goes to systemd
    run_record_s       how often a ``{"type": "run"}`` counters record goes to the miss log
    """

    miss_log: str | None = None
    max_bytes: int = 5 * 1024 * 1024
    backups: int = 3
    stuck_ms: float = 100.0
    status_interval_s: float = 5.0
    run_record_s: float = 60.0

    def __post_init__(self) -> None:
        if self.miss_log is not None and not self.miss_log.strip():
            raise ConfigError(
                "watchdog.miss_log is empty: give a file path, or - for stdout (leave it out "
                "for the default)"
            )
        check_range("watchdog.max_bytes", self.max_bytes, 4096, None)
        check_range("watchdog.backups", self.backups, 0, 1000)
        check_range("watchdog.stuck_ms", self.stuck_ms, 0.0, 600_000.0)
        check_range("watchdog.status_interval_s", self.status_interval_s, 0.1, 3600.0)
        check_range("watchdog.run_record_s", self.run_record_s, 1.0, 86_400.0)
