"""Wall-clock jumps (an NTP step on a Pi that booted without a clock) change no measured
latency or deadline: every duration in ``edge/`` comes from the monotonic clock, by
construction (an AST check over the package) and in a real run whose wall clock is stepped
a year forward and then back by libfaketime (Debian's ``faketime``), monotonic untouched.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.service_rig import Notification, NotifyListener, short_socket_dir
from tests.tools import libfaketime, sample, slow_infer

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "edge"
TIMEOUT_S = 60.0

#: wall-clock readers: (module, function); durations must never come from these
WALL_CLOCK = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "localtime"),
    ("time", "gmtime"),
    ("time", "ctime"),
    ("time", "asctime"),
    ("time", "strftime"),
    ("time", "clock_gettime"),
    ("time", "clock_gettime_ns"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
}
#: where reading the wall clock is the point, and why
ALLOWED = {
    ("edge/clock.py", "datetime.now"): "wall_iso: the ts of log records",
    ("edge/misses.py", "datetime.now"): "--since 10m is relative to now, against record ts",
}


def wall_clock_calls(path: Path) -> Iterator[tuple[int, str]]:
    """(line, "module.function") for each wall-clock read in ``path``, through any import
    form (``import time``, ``import time as t``, ``from time import time``, ``from datetime
    import datetime``)."""
    tree = ast.parse(path.read_text(), str(path))
    names: dict[str, str] = {}  # local name -> "module" or "module.function"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and names.get(f.id, "").count(".") == 1:
            mod, fn = names[f.id].split(".")
            if (mod, fn) in WALL_CLOCK:
                yield node.lineno, f"{mod}.{fn}"
        elif isinstance(f, ast.Attribute):
            base = _base_name(f.value, names)
            if base is not None and (base.rsplit(".", 1)[-1], f.attr) in WALL_CLOCK:
                yield node.lineno, f"{base.rsplit('.', 1)[-1]}.{f.attr}"


def _base_name(node: ast.expr, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):  # datetime.datetime.now
        inner = _base_name(node.value, names)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def test_no_duration_reads_the_wall_clock() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for line, call in wall_clock_calls(path):
            found[(rel, call)] = line
    unexpected = {k: v for k, v in found.items() if k not in ALLOWED}
    assert unexpected == {}, "wall clock outside log timestamps: " + ", ".join(
        f"{f}:{line} {c}" for (f, c), line in unexpected.items()
    )
    assert set(found) == set(ALLOWED)  # the allowance is still needed (and the check works)


def test_the_checker_sees_every_import_form(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import time\nimport time as t\nfrom time import time as now\n"
        "from datetime import datetime\nimport datetime as dt\n"
        "a = time.time()\nb = t.time_ns()\nc = now()\nd = datetime.now()\n"
        "e = dt.datetime.utcnow()\nf = time.monotonic_ns()\ng = time.perf_counter()\n"
    )
    assert [c for _, c in wall_clock_calls(src)] == [
        "time.time",
        "time.time_ns",
        "time.time",
        "datetime.now",
        "datetime.utcnow",
    ]


def _held(n: int) -> Callable[[list[Notification]], bool]:
    def ok(ms: list[Notification]) -> bool:
        last = [m.fields["STATUS"] for m in ms if "STATUS" in m.fields]
        return bool(last) and int(last[-1].rsplit("of ", 1)[-1].rstrip(")")) >= n

    return ok


@pytest.mark.usefixtures("models_ready")
def test_a_wall_clock_step_changes_no_latency(tmp_path: Path) -> None:
    lib = libfaketime()  # Debian's, for this machine's architecture
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[degrade]\npolicy = "off"\n[watchdog]\nstatus_interval_s = 0.2\n')
    log = tmp_path / "misses.jsonl"
    sockdir = short_socket_dir()
    listener = NotifyListener(sockdir / "n.sock")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(sockdir / "n.sock"),
        "LD_PRELOAD": str(lib),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",  # read the offset file at every call: the step is at once
        "DONT_FAKE_MONOTONIC": "1",  # an NTP step moves CLOCK_REALTIME only
    }
    # a 1 ms budget and inference made 5 ms slower: every frame misses, so every frame leaves
    # a record with ts and latency
    slow_infer(env)
    argv = [sys.executable, "-m", "edge.cli.main", "run", "--config", str(cfg), "--json"]
    argv += ["--source", str(sample("vtest.avi")), "--model", "face", "--fps", "30"]
    argv += ["--budget-ms", "1", "--policy", "process-all", "--miss-log", str(log)]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=pipe, stderr=pipe, text=True)
    try:
        assert listener.wait_for(_held(15), TIMEOUT_S)
        offset.write_text("+365d\n")  # the clock steps a year forward ...
        assert listener.wait_for(_held(30), TIMEOUT_S)
        offset.write_text("-2d\n")  # ... then back to two days before the real time
        assert listener.wait_for(_held(45), TIMEOUT_S)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.kill()
        listener.close()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    misses = [json.loads(x) for x in log.read_text().splitlines()]
    misses = [m for m in misses if m["type"] == "miss"]
    years = [datetime.fromisoformat(m["ts"]).year for m in misses]
    now_year = datetime.now().year
    assert now_year + 1 in years and years[-1] in (now_year, now_year - 1)  # ts follow the steps
    latencies = [m["latency_ms"] for m in misses]
    assert len(misses) == summary["frames"]["missed"] >= 45
    # no frame lasted the step (two days, a year): an hour bounds any load, a step breaks it
    hour_ms = 3600e3
    assert all(1.0 < ms < hour_ms for ms in latencies), max(latencies)
    assert summary["elapsed_s"] < hour_ms / 1e3 and summary["latency_ms"]["max"] < hour_ms
