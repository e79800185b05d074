"""The unit file and its companions, checked by systemd's own tools and against the pipeline.

``systemd-analyze verify`` checks the unit with each platform drop-in (it needs the ExecStart
binary to exist, so it verifies a copy whose ExecStart runs a stub); ``systemd-analyze security
--offline=yes`` scores it, and docs/SERVICE.md must state the score it gets. Needs the Debian
package ``systemd`` (for systemd-analyze; no running systemd needed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.config import Config
from edge.state import default_miss_log
from tests.integration.service_rig import (
    DROPIN_DIR,
    INSTALLED_EDGE,
    REPO,
    SYSTEMD_DIR,
    UNIT_PATH,
    Unit,
    read_environment_file,
)

DROPINS = ("raspberrypi", "jetson")


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (scripts/test does)")
    return tool


def _staged(tmp: Path, dropin: str | None, extra: str = "") -> Path:
    """A copy of the unit (and one drop-in) whose ExecStart runs an existing stub."""
    stub = tmp / "bin" / "edge"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp / "edge-vision.service"
    text = UNIT_PATH.read_text()
    assert text.count(INSTALLED_EDGE) == 1
    unit.write_text(text.replace(INSTALLED_EDGE, str(stub)) + extra)
    if dropin is not None:
        d = tmp / "edge-vision.service.d"
        d.mkdir(exist_ok=True)
        shutil.copy(DROPIN_DIR / f"{dropin}.conf", d / f"{dropin}.conf")
    return unit


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unit.parent,
    )


@pytest.mark.parametrize("dropin", [None, *DROPINS])
def test_systemd_analyze_verify_is_clean(tmp_path: Path, dropin: str | None) -> None:
    done = _verify(_staged(tmp_path, dropin))
    # verify exits 0 even on unknown keys and bad values: any output is a finding
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_verify_reports_what_it_should(tmp_path: Path) -> None:
    """The clean-output check above can fail: a bad key and a bad value are both reported."""
    done = _verify(
        _staged(tmp_path, None, extra="[Service]\nWatchdogSecs=5\nDeviceAllow=/dev/x rwx\n")
    )
    out = done.stdout + done.stderr
    assert "WatchdogSecs" in out and "rwx" in out


def test_the_unit_as_the_service_needs_it() -> None:
    unit = Unit.load()
    s = "Service"
    assert unit.get(s, "Type") == "notify" and unit.get(s, "NotifyAccess") == "main"
    exec_start = unit.get(s, "ExecStart") or ""
    assert exec_start == f"{INSTALLED_EDGE} run --config /etc/edge-vision/config.toml $EDGE_ARGS"
    assert unit.get(s, "EnvironmentFile") == "-/etc/default/edge-vision"
    assert unit.get(s, "Restart") == "on-failure"
    assert unit.get(s, "User") == "edge-vision"
    assert set((unit.get(s, "SupplementaryGroups") or "").split()) >= {"video", "render"}
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "StateDirectory": "edge-vision",
        "LogsDirectory": "edge-vision",
        "DevicePolicy": "closed",
    }.items():
        assert unit.get(s, key) == value, key
    allowed = {v.split()[0] for v in unit.all(s, "DeviceAllow")}
    assert allowed >= {"char-video4linux", "char-media", "char-dma_heap", "char-usb_device",
                       "char-apex"}  # fmt: skip
    # the timers fit together: pings every WatchdogSec/2 once READY=1, which comes after the
    # first frame; a crash loop (fails at once, RestartSec apart) reaches the start limit
    watchdog, restart = unit.seconds(s, "WatchdogSec"), unit.seconds(s, "RestartSec")
    assert 2 <= watchdog <= 60 and watchdog < unit.seconds(s, "TimeoutStartSec")
    burst = int(unit.get("Unit", "StartLimitBurst") or 0)
    assert burst > 1 and burst * restart < unit.seconds("Unit", "StartLimitIntervalSec")


@pytest.mark.parametrize("dropin", DROPINS)
def test_platform_dropins_only_add_devices(dropin: str) -> None:
    base = Unit.load()
    merged = Unit.load(dropins=[DROPIN_DIR / f"{dropin}.conf"])
    added = set(merged.all("Service", "DeviceAllow")) - set(base.all("Service", "DeviceAllow"))
    assert added and all(a.startswith(("/dev/", "char-")) and a.endswith(" rw") for a in added)
    # the drop-in extends the list; an empty DeviceAllow= would have reset it
    assert set(base.all("Service", "DeviceAllow")) <= set(merged.all("Service", "DeviceAllow"))
    assert merged.get("Service", "DevicePolicy") == "closed"


def test_miss_log_lands_in_the_state_directory() -> None:
    """The unit's StateDirectory= is where the pipeline puts the miss log under systemd."""
    state = f"/var/lib/{Unit.load().get('Service', 'StateDirectory')}"
    assert default_miss_log({"STATE_DIRECTORY": state}) == Path(state) / "misses.jsonl"


def test_example_config_and_every_commented_key_load(tmp_path: Path) -> None:
    example = SYSTEMD_DIR / "config.example.toml"
    cfg = Config.load(example)
    assert cfg.source.spec == "/dev/video0" and cfg.model.name == "person"
    # settings shown commented out (#key = value) must be valid keys too
    text = example.read_text()
    uncommented = re.sub(r"(?m)^#([a-z_]+ = )", r"\1", text)
    assert uncommented != text
    p = tmp_path / "all.toml"
    p.write_text(uncommented)
    full = Config.load(p)
    assert full.watchdog.miss_log == "/var/log/edge-vision/misses.jsonl"
    assert full.source.lores_size == (320, 320)


def test_environment_file_parses() -> None:
    env = read_environment_file((SYSTEMD_DIR / "edge-vision.default").read_text())
    assert env["EDGE_ARGS"] == ""
    assert set(env) == {"EDGE_ARGS", "LIBCAMERA_LOG_LEVELS"}


def _exposure(tmp: Path, dropin: str | None) -> float:
    unit = _staged(tmp, dropin)
    done = subprocess.run(
        [_analyze(), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    )
    m = re.search(r"Overall exposure level for edge-vision\.service: (\d+\.\d)", done.stdout)
    assert m, done.stdout[-500:] + done.stderr
    return float(m.group(1))


def _systemd_version() -> int:
    done = subprocess.run([_analyze(), "--version"], capture_output=True, text=True, timeout=30)
    m = re.match(r"systemd (\d+)", done.stdout)
    assert m, done.stdout
    return int(m.group(1))


def test_security_score_is_recorded_in_the_docs(tmp_path: Path) -> None:
    """Every systemd version scores the unit as well hardened (exposure <= 3.0, where 10 is
    none); the figures in docs/SERVICE.md are checked exactly only under the systemd version the
    doc says they come from, since each version weighs the settings a little differently."""
    doc = (REPO / "docs" / "SERVICE.md").read_text()
    stated = re.search(r"`systemd-analyze security --offline=yes` \(systemd (\d+)\)", doc)
    assert stated, "docs/SERVICE.md should say which systemd version its scores come from"
    same_version = int(stated.group(1)) == _systemd_version()
    for dropin in (None, *DROPINS):
        score = _exposure(tmp_path / (dropin or "base"), dropin)
        assert score <= 3.0, f"{dropin}: exposure {score}"
        label = dropin or "unit alone"
        row = re.search(rf"^\| {re.escape(label)} \| (\d+\.\d) \|$", doc, re.M)
        assert row, f"docs/SERVICE.md should have a row for {label!r}"
        if same_version:
            assert float(row.group(1)) == score, f"docs/SERVICE.md: {label} scores {score:.1f}"


def test_metrics_doc_names_only_metrics_that_exist() -> None:
    """Every ``edge_*`` name in docs/METRICS.md is in the exposition of edge.metrics."""
    from edge.metrics import EdgeMetrics

    stats = {
        "frames": {"captured": 3, "processed": 3, "shed": 1},
        "missed_by_cause": {"infer": 1},
        "temperature_c": 50.0,
        "stream": {"clients": 1, "rendered": 2, "dropped": {"slow": 1}},
        "budget_ms": 33.3,
    }
    metrics = EdgeMetrics(1 / 30, lambda: stats)
    metrics.observe_frame({"infer": 10_000_000})
    text = metrics.exposition()[0].decode()
    exposed = set(re.findall(r"^(edge_[a-z_]+)", text, re.M))
    documented = set(re.findall(r"\b(edge_[a-z_]+)", (REPO / "docs" / "METRICS.md").read_text()))
    families = {n for n in documented if n in exposed or f"{n}_bucket" in exposed}
    assert documented - families == set(), "documented but not exposed"
    assert {"edge_frame_latency_seconds", "edge_frames_missed_total"} <= families
