"""Helpers for the service tests: read the unit the way systemd does, and play systemd's part.

``Unit`` parses ``systemd/edge-vision.service`` (sections, repeated keys, drop-ins), and turns
its ``ExecStart=`` and environment settings into the argv and environment systemd would give
the process. ``NotifyListener`` is the receiving end of ``$NOTIFY_SOCKET``: a real unix
datagram socket with ``SO_PASSCRED``, so every message arrives with the sender's pid, as
systemd sees it when it enforces ``NotifyAccess=main``.
"""

from __future__ import annotations

import re
import shlex
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
UNIT_PATH = SYSTEMD_DIR / "edge-vision.service"
DROPIN_DIR = SYSTEMD_DIR / "edge-vision.service.d"
INSTALLED_EDGE = "/opt/edge-vision/.venv/bin/edge"
INSTALLED_CONFIG = "/etc/edge-vision/config.toml"


@dataclass
class Unit:
    """A unit file's settings: ``{section: [(key, value), ...]}`` in file order."""

    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, *texts: str) -> Unit:
        """The unit, then its drop-ins, in order (later assignments win, as in systemd)."""
        unit = cls()
        for text in texts:
            section = ""
            for raw in text.splitlines():
                line = raw.strip()
                if not line or line[0] in "#;":
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1]
                    unit.sections.setdefault(section, [])
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise ValueError(f"not a key=value line in [{section}]: {raw!r}")
                unit.sections.setdefault(section, []).append((key.strip(), value.strip()))
        return unit

    @classmethod
    def load(cls, path: Path = UNIT_PATH, dropins: list[Path] | None = None) -> Unit:
        return cls.parse(path.read_text(), *(p.read_text() for p in dropins or []))

    def all(self, section: str, key: str) -> list[str]:
        """Every value of ``key``; an empty assignment resets the list, as in systemd."""
        out: list[str] = []
        for k, v in self.sections.get(section, []):
            if k == key:
                out = [] if v == "" else [*out, v]
        return out

    def get(self, section: str, key: str) -> str | None:
        values = self.all(section, key)
        return values[-1] if values else None

    def seconds(self, section: str, key: str) -> float:
        """A time span in seconds (``10``, ``10s``, ``500ms``, ``2min``)."""
        value = self.get(section, key)
        if value is None:
            raise KeyError(f"[{section}] {key} is not set")
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|sec|min)?", value)
        if m is None:
            raise ValueError(f"[{section}] {key}={value}: not a time span this helper reads")
        scale = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, None: 1.0}[m.group(2)]
        return float(m.group(1)) * scale

    def environment(self) -> dict[str, str]:
        """``Environment=`` assignments (quoted words, as systemd splits them)."""
        env: dict[str, str] = {}
        for value in self.all("Service", "Environment"):
            for word in shlex.split(value):
                k, _, v = word.partition("=")
                env[k] = v
        return env


def read_environment_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of an ``EnvironmentFile=`` (comments, blank lines, quotes)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ValueError(f"not an environment assignment: {raw!r}")
        words = shlex.split(value, comments=False) if value.strip() else [""]
        env[key.strip()] = " ".join(words)
    return env


def expand_exec(line: str, env: Mapping[str, str]) -> list[str]:
    """``ExecStart=`` -> argv: a bare ``$VAR`` word becomes the value split at whitespace
    (zero or more words), ``${VAR}`` is replaced inside its word (systemd.service(5))."""
    argv: list[str] = []
    for word in shlex.split(line):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda g: env.get(g.group(1), ""), word))
    return argv


@dataclass(frozen=True)
class Notification:
    t: float  # time.monotonic() at arrival
    pid: int  # the sender, from SCM_CREDENTIALS
    fields: dict[str, str]


class NotifyListener:
    """Receives sd_notify datagrams on a bound unix socket, in a thread of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[Notification] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        creds_size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self._stop.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, creds_size)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._cond:
                self.messages.append(Notification(time.monotonic(), pid, fields))
                self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[Notification]], bool], timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pred(self.messages), timeout_s)

    def with_key(self, key: str) -> list[Notification]:
        with self._cond:
            return [m for m in self.messages if key in m.fields]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.sock.close()


def systemd_environment(unit: Unit, environment_file: str, **extra: str) -> dict[str, str]:
    """What systemd gives the main process: a clean base, the unit's ``Environment=``, the
    ``EnvironmentFile=``, then the manager's own variables (``extra``)."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }
    env.update(unit.environment())
    env.update(read_environment_file(environment_file))
    env.update(extra)
    return env


def exec_start(unit: Unit, env: Mapping[str, str], config: Path) -> list[str]:
    """The unit's ``ExecStart=`` for this checkout: the repository's ``edge`` and ``config``."""
    line = unit.get("Service", "ExecStart")
    if line is None:
        raise KeyError("the unit has no ExecStart=")
    argv = expand_exec(line, env)
    if argv[0] != INSTALLED_EDGE:
        raise ValueError(f"ExecStart runs {argv[0]}, expected {INSTALLED_EDGE}")
    argv[0] = str(REPO / ".venv" / "bin" / "edge")
    return [str(config) if a == INSTALLED_CONFIG else a for a in argv]


def as_main_pid(argv: list[str]) -> list[str]:
    """Run ``argv`` with ``$WATCHDOG_PID`` set to its own pid, as systemd sets it (the shell
    execs the command, so the pid stays the same)."""
    return ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh", *argv]


def short_socket_dir() -> Path:
    """A directory whose socket paths fit sun_path (108 bytes), unlike deep pytest tmp dirs."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="ev-", dir="/tmp"))


def pids_of(messages: list[Notification]) -> set[int]:
    return {m.pid for m in messages}


__all__ = [
    "DROPIN_DIR",
    "INSTALLED_CONFIG",
    "INSTALLED_EDGE",
    "REPO",
    "SYSTEMD_DIR",
    "UNIT_PATH",
    "Notification",
    "NotifyListener",
    "Unit",
    "as_main_pid",
    "exec_start",
    "expand_exec",
    "pids_of",
    "read_environment_file",
    "short_socket_dir",
    "systemd_environment",
]
