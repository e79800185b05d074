"""The deadline watchdog's parts: miss records, the miss log, sd_notify and thermal readings."""

from edge.watchdog.misslog import JOURNAL_PREFIX, MissLog, MissSummary
from edge.watchdog.notify import Notifier
from edge.watchdog.record import CAUSES, MissRecord, RunRecord, new_run_id
from edge.watchdog.thermal import ThermalMonitor, ThermalState, read_thermal

__all__ = [
    "CAUSES",
    "JOURNAL_PREFIX",
    "MissLog",
    "MissRecord",
    "MissSummary",
    "Notifier",
    "RunRecord",
    "ThermalMonitor",
    "ThermalState",
    "new_run_id",
    "read_thermal",
]
