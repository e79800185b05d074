"""Where edge-vision keeps what it writes on its own (the miss log): the state directory.

In order, the first that is set:

1. ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=edge-vision``: ``/var/lib/edge-vision``;
   systemd may pass several directories separated by ``:``, and the first is ours),
2. ``$XDG_STATE_HOME/edge-vision`` (the XDG base directory for state; an absolute path only,
   as the specification says: a relative one is ignored),
3. ``~/.local/state/edge-vision`` (the XDG default).

Never the current directory: a run started from a checkout, ``/`` or a cron job writes to the
same place. The environment is passed in (nothing here reads ``os.environ`` on its own).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from edge.errors import ConfigError

APP_DIR = "edge-vision"
MISS_LOG_NAME = "misses.jsonl"
#: where the service keeps its state (the unit's ``StateDirectory=edge-vision``)
SERVICE_STATE_DIR = Path("/var/lib") / APP_DIR


def state_dir(environ: Mapping[str, str]) -> Path:
    """The state directory for this environment (see the module's docstring)."""
    systemd = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_DIR
    home = environ.get("HOME", "")
    if not home:
        try:
            home = str(Path.home())
        except (RuntimeError, KeyError):
            home = ""
    if not home or not os.path.isabs(home):
        raise ConfigError(
            "no state directory: neither STATE_DIRECTORY, XDG_STATE_HOME nor HOME is set; "
            "set one of them, or give the miss log's path with --miss-log"
        )
    return Path(home) / ".local" / "state" / APP_DIR


def default_miss_log(environ: Mapping[str, str]) -> Path:
    """The miss log when the config does not name one: ``<state dir>/misses.jsonl``."""
    return state_dir(environ) / MISS_LOG_NAME


def ensure_state_dir(environ: Mapping[str, str]) -> Path:
    """The state directory, created when missing (private to the user, as XDG asks: 0700)."""
    d = state_dir(environ)
    if not d.is_dir():
        d.parent.mkdir(parents=True, exist_ok=True)
        d.mkdir(mode=0o700, exist_ok=True)
    return d
