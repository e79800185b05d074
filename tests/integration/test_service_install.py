"""scripts/install-service: shellcheck, the --dry-run plan, and real installs into a temporary
root (``--root``: every path prefixed; useradd, chown, systemctl and the venv steps printed, not
run) that are idempotent, keep an edited config, and uninstall cleanly. Needs the Debian package
``shellcheck``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.config import Config
from tests.integration.service_rig import REPO, SYSTEMD_DIR

SCRIPT = REPO / "scripts" / "install-service"
PREFIX = "opt/edge-vision"


def _install(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd="/"
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _steps(out: str) -> list[str]:
    return [line[2:] for line in out.splitlines() if line.startswith("+ ")]


def _index(steps: list[str], fragment: str) -> int:
    hits = [i for i, s in enumerate(steps) if fragment in s]
    assert hits, f"no step with {fragment!r} in:\n" + "\n".join(steps)
    return hits[0]


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root`` with its mode and content hash (files) or '' (dirs)."""
    out: dict[str, tuple[int, str]] = {}
    for p in sorted(root.rglob("*")):
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (p.stat().st_mode & 0o7777, digest)
    return out


def test_shellcheck_is_clean() -> None:
    tool = shutil.which("shellcheck")
    if tool is None:
        pytest.fail("shellcheck is missing: apt-get install shellcheck (scripts/test does)")
    done = subprocess.run([tool, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dry_run_into_a_root_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    steps = _steps(_install("--dry-run", "--root", str(root), "--platform", "pi").stdout)
    assert list(root.iterdir()) == []
    r = str(root)
    order = [
        "useradd --system --user-group --home-dir /var/lib/edge-vision",
        "usermod --append --groups video,render edge-vision",
        f"| tar -C {r}/{PREFIX} -xf -",
        "-m venv --system-site-packages /opt/edge-vision/.venv",
        "/opt/edge-vision/.venv/bin/python -m pip install",
        "bin/edge models fetch",
        f"install -m 0640 {SYSTEMD_DIR}/config.example.toml {r}/etc/edge-vision/config.toml",
        f"install -m 0644 {SYSTEMD_DIR}/edge-vision.default {r}/etc/default/edge-vision",
        f"install -d -m 0750 {r}/var/lib/edge-vision {r}/var/log/edge-vision",
        f"{SYSTEMD_DIR}/edge-vision.service {r}/etc/systemd/system/edge-vision.service",
        f"{r}/etc/systemd/system/edge-vision.service.d/raspberrypi.conf",
        "systemctl daemon-reload",
        "systemctl enable --now edge-vision.service",
    ]
    at = [_index(steps, fragment) for fragment in order]
    assert at == sorted(at), "steps out of order"
    assert "--editable /opt/edge-vision" in steps[at[4]]
    # the steps that write files write under the root; those that would change the host
    # itself (users, ownership, systemd, the venv) are marked as not run
    host = [s for s in steps if s.endswith("# not run: --root")]
    writes = [s for s in steps if s.startswith(("install ", "rm ", "rmdir ")) and s not in host]
    assert writes and all(f" {r}/" in s for s in writes), writes
    assert {s.split()[0] for s in host} >= {"useradd", "usermod", "chown", "systemctl"}
    assert all(s in host for s in steps if " -m venv " in s or " -m pip " in s)


@pytest.mark.parametrize(
    ("platform", "venv_flag", "dropin"),
    [("generic", False, None), ("jetson", True, "jetson.conf")],
)
def test_dry_run_per_platform(
    tmp_path: Path, platform: str, venv_flag: bool, dropin: str | None
) -> None:
    steps = _steps(_install("--dry-run", "--root", str(tmp_path), "--platform", platform).stdout)
    venv = steps[_index(steps, "-m venv")]
    assert ("--system-site-packages" in venv) == venv_flag
    conf = [s for s in steps if "edge-vision.service.d/" in s]
    assert [s.rsplit("/", 1)[1] for s in conf if s.startswith("install -m")] == (
        [dropin] if dropin else []
    )


def test_install_is_idempotent_keeps_edits_and_uninstalls(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = _install("--root", str(root), "--platform", "pi").stdout
    assert "useradd" in out and "# not run: --root" in out
    unit = root / "etc/systemd/system/edge-vision.service"
    assert unit.read_bytes() == (SYSTEMD_DIR / "edge-vision.service").read_bytes()
    assert (root / "etc/systemd/system/edge-vision.service.d/raspberrypi.conf").is_file()
    config = root / "etc/edge-vision/config.toml"
    assert config.stat().st_mode & 0o777 == 0o640
    assert Config.load(config).source.spec == "/dev/video0"  # no camera module in this root
    for item in ("edge/cli/run.py", "models/manifest.toml", "pyproject.toml", "docs/SERVICE.md"):
        assert (root / PREFIX / item).is_file(), item
    assert not list((root / PREFIX).rglob("__pycache__"))

    before = _tree(root)
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    edited = _tree(root)
    again = _install("--root", str(root), "--platform", "pi").stdout
    assert (
        "config.toml exists and differs" in again and "edge-vision.service is up to date" in again
    )
    assert _tree(root) == edited != before  # nothing changed but the operator's edit

    (root / "var/lib/edge-vision/misses.jsonl").write_text('{"type":"miss"}\n')
    _install("--root", str(root), "--uninstall")
    assert not unit.exists() and not (root / PREFIX).exists()
    assert not (root / "etc/systemd/system/edge-vision.service.d").exists()
    assert not (root / "etc/default/edge-vision").exists()  # unedited: removed
    assert config.is_file()  # edited: kept
    assert (root / "var/lib/edge-vision/misses.jsonl").is_file()  # the miss log: kept

    _install("--root", str(root), "--platform", "pi")
    purge = _install("--root", str(root), "--uninstall", "--purge").stdout
    assert "userdel edge-vision" in purge
    left = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert not any("edge-vision" in p for p in left), left


@pytest.mark.parametrize(
    ("platform", "sensor", "spec_start"),
    [("pi", "unicam", "picamera2"), ("jetson", "vi-output, imx219 9-0010", "gst:nvargus")],
)
def test_a_fresh_config_starts_with_the_boards_camera(
    tmp_path: Path, platform: str, sensor: str, spec_start: str
) -> None:
    sysfs = tmp_path / "sys/class/video4linux/video0"
    sysfs.mkdir(parents=True)
    (sysfs / "name").write_text(sensor + "\n")
    _install("--root", str(tmp_path), "--platform", platform)
    cfg = Config.load(tmp_path / "etc/edge-vision/config.toml")
    assert cfg.source.spec is not None and cfg.source.spec.startswith(spec_start)
    # uninstall still recognises the file it wrote as unedited
    _install("--root", str(tmp_path), "--uninstall")
    assert not (tmp_path / "etc/edge-vision").exists()


def test_platform_is_detected_from_the_root(tmp_path: Path) -> None:
    model = tmp_path / "proc/device-tree/model"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    out = _install("--dry-run", "--root", str(tmp_path)).stdout
    assert out.splitlines()[0].startswith("==> installing edge-vision (pi)")


def test_bad_options_are_refused() -> None:
    done = _install("--frobnicate", check=False)
    assert done.returncode == 2 and "unknown option --frobnicate" in done.stderr
    done = _install("--dry-run", "--platform", "vax", check=False)
    assert done.returncode == 1 and "expected pi, jetson or generic" in done.stderr
    assert os.access(SCRIPT, os.X_OK)
