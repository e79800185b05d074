"""edge.doctor_checks against made-up machines: a root directory with its own /dev, /sys and
/proc files, a fake device opener where a camera would be (this machine has none), and real
subprocesses for vcgencmd (a script that prints what the Pi firmware's tool prints)."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from edge.doctor_checks import (
    Check,
    Host,
    V4l2Device,
    check_cameras,
    check_clocksource,
    check_config,
    check_governor,
    check_source_needs,
    check_systemd,
    check_thermal,
    checks,
    open_v4l2,
    parse_querycap,
)

WEBCAM = V4l2Device("uvcvideo", "HD Pro Webcam C920", capture=True)
METADATA = V4l2Device("uvcvideo", "HD Pro Webcam C920", capture=False)


def _write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _host(root: Path, **kw: object) -> Host:
    def no_systemctl(argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
        return 127, ""

    base = Host(
        root=root, environ={}, uid=os.getuid(), run=no_systemctl, has_module=lambda n: False
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _opener(table: dict[str, V4l2Device | None | OSError]) -> Callable[[str], V4l2Device | None]:
    def open_device(path: str) -> V4l2Device | None:
        got = table[Path(path).name]
        if isinstance(got, OSError):
            raise got
        return got

    return open_device


def _camera_root(tmp_path: Path, names: dict[str, str]) -> Path:
    for node, name in names.items():
        _write(tmp_path, f"dev/{node}", "")
        _write(tmp_path, f"sys/class/video4linux/{node}/name", name + "\n")
    return tmp_path


def _querycap(driver: bytes, card: bytes, caps: int, device_caps: int) -> bytes:
    return struct.pack("<16s32s32sIII12x", driver, card, b"usb-0000:01:00.0-1.2", 0x60000,
                       caps, device_caps)  # fmt: skip


# --- V4L2 ------------------------------------------------------------------------------------
def test_querycap_uses_device_caps_when_the_driver_sets_them() -> None:
    # a UVC webcam: the device supports capture, but this node is its metadata node
    meta = _querycap(b"uvcvideo", b"C920", 0x84A00001, 0x04A00000)
    assert parse_querycap(meta) == V4l2Device("uvcvideo", "C920", capture=False)
    node0 = _querycap(b"uvcvideo", b"C920", 0x84A00001, 0x04200001)
    assert parse_querycap(node0).capture
    mplane = _querycap(b"rp1-cfe", b"rp1-cfe", 0x80001000, 0x00001000)
    assert parse_querycap(mplane) == V4l2Device("rp1-cfe", "rp1-cfe", capture=True)
    old = _querycap(b"bcm2835 mmal", b"mmal", 0x00000001, 0)  # no device_caps: caps count
    assert parse_querycap(old).capture
    with pytest.raises(ValueError, match="104 bytes"):
        parse_querycap(b"\0" * 50)


def test_opening_something_that_is_not_v4l2(tmp_path: Path) -> None:
    f = _write(tmp_path, "not-a-camera", "x")
    assert open_v4l2(str(f)) is None  # the ioctl answers ENOTTY
    assert open_v4l2("/dev/null") is None
    with pytest.raises(FileNotFoundError):
        open_v4l2(str(tmp_path / "video9"))


# --- config ----------------------------------------------------------------------------------
def test_config_check(tmp_path: Path) -> None:
    ok, cfg = check_config(None)
    assert ok.ok and cfg is None
    good = _write(tmp_path, "good.toml", '[source]\nspec = "/dev/video0"\n')
    ok, cfg = check_config(str(good))
    assert ok.ok and cfg is not None and cfg.source.spec == "/dev/video0"
    bad = _write(tmp_path, "bad.toml", "[model]\nthreds = 2\n")
    check, cfg = check_config(str(bad))
    assert cfg is None and not check.ok and check.blocking
    assert "threds" in check.detail and check.fix is not None and str(bad) in check.fix


# --- cameras ---------------------------------------------------------------------------------
def test_cameras_this_user_can_and_cannot_open(tmp_path: Path) -> None:
    root = _camera_root(tmp_path, {"video0": "C920", "video1": "C920", "video10": "bcm2835-codec"})
    denied = PermissionError(errno.EACCES, "Permission denied")
    h = _host(root, open_device=_opener({"video0": WEBCAM, "video1": METADATA, "video10": denied}))
    found = {c.name: c for c in check_cameras(h, None)}
    assert list(found) == ["camera /dev/video0", "camera /dev/video1", "camera /dev/video10"]
    assert found["camera /dev/video0"].ok and "capture" in found["camera /dev/video0"].detail
    assert found["camera /dev/video1"].ok  # not a capture node, but nobody asked for it
    cant = found["camera /dev/video10"]
    assert not cant.ok and not cant.blocking and cant.fix is not None
    assert "usermod -aG" in cant.fix  # names the device's group and this user


def test_the_configured_camera_blocks(tmp_path: Path) -> None:
    root = _camera_root(tmp_path, {"video0": "C920", "video1": "C920"})
    denied = PermissionError(errno.EACCES, "Permission denied")
    h = _host(root, open_device=_opener({"video0": denied, "video1": METADATA}))
    by_spec = {spec: check_cameras(h, spec) for spec in ("0", "/dev/video1", "/dev/video4")}
    assert [c.blocking for c in by_spec["0"]] == [True, False]
    assert [c.blocking for c in by_spec["/dev/video1"]] == [False, True]
    assert (
        not by_spec["/dev/video1"][1].ok
        and "not a capture node" in by_spec["/dev/video1"][1].detail
    )
    missing = by_spec["/dev/video4"][-1]
    assert missing.name == "camera /dev/video4" and missing.blocking
    assert "present: /dev/video0, /dev/video1" in missing.detail


def test_a_camera_modules_receiver_is_not_a_webcam(tmp_path: Path) -> None:
    root = _camera_root(tmp_path, {"video0": "unicam-image"})
    raw = V4l2Device("unicam", "unicam", capture=True)
    h = _host(root, open_device=_opener({"video0": raw}))
    (c,) = check_cameras(h, "/dev/video0")
    assert not c.ok and c.blocking and c.fix is not None and "picamera2" in c.fix
    (c,) = check_cameras(h, None)
    assert c.ok  # only a problem when it is the configured source


def test_a_by_id_link_is_the_node_it_points_to(tmp_path: Path) -> None:
    root = _camera_root(tmp_path, {"video0": "C920"})
    link = root / "dev/v4l/by-id/usb-C920-video-index0"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../video0")
    denied = PermissionError(errno.EACCES, "Permission denied")
    h = _host(root, open_device=_opener({"video0": denied}))
    (c,) = check_cameras(h, "/dev/v4l/by-id/usb-C920-video-index0")
    assert c.name == "camera /dev/video0" and c.blocking


def test_no_cameras(tmp_path: Path) -> None:
    h = _host(tmp_path, open_device=_opener({}))
    (c,) = check_cameras(h, None)
    assert c.ok and c.name == "camera devices"
    (c,) = check_cameras(h, "picamera2")
    assert not c.ok and c.blocking


def test_what_picamera2_and_gstreamer_sources_need(tmp_path: Path) -> None:
    h = _host(tmp_path)
    found = {c.name: c for c in check_source_needs(h, "picamera2")}
    assert not found["picamera2"].ok and found["picamera2"].blocking
    assert "--system-site-packages" in (found["picamera2"].fix or "")
    assert not found["libcamera"].ok  # no /dev/media*
    _write(tmp_path, "dev/media0", "")
    found = {c.name: c for c in check_source_needs(replace(h, has_module=lambda n: True),
                                                   "picamera2:1")}  # fmt: skip
    assert all(c.ok for c in found.values())
    (gst,) = check_source_needs(
        replace(h, opencv_gstreamer=lambda: False), "gst:videotestsrc ! appsink"
    )
    assert not gst.ok and gst.blocking and "system OpenCV" in (gst.fix or "")
    (gst,) = check_source_needs(
        replace(h, opencv_gstreamer=lambda: True), "gst:videotestsrc ! appsink"
    )
    assert gst.ok
    assert check_source_needs(h, "rtsp://cam/stream") == []


# --- timing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "available", "ok", "fix_names"),
    [
        ("arch_sys_counter", "arch_sys_counter", True, None),
        ("tsc", "tsc hpet acpi_pm", True, None),
        ("jiffies", "jiffies", False, "the kernel offers no better"),
        ("acpi_pm", "acpi_pm", True, None),
        ("refined-jiffies", "tsc refined-jiffies", False, "tsc"),
        ("hpet", "tsc hpet acpi_pm", False, "tsc"),
    ],
)
def test_clock_source(
    tmp_path: Path, current: str, available: str, ok: bool, fix_names: str | None
) -> None:
    _write(tmp_path, "sys/devices/system/clocksource/clocksource0/current_clocksource", current)
    _write(tmp_path, "sys/devices/system/clocksource/clocksource0/available_clocksource", available)
    c = check_clocksource(_host(tmp_path))
    assert c.ok is ok and not c.blocking and c.detail.startswith(current)
    if fix_names is None:
        assert c.fix is None
    elif " " in fix_names:
        assert c.fix is not None and c.fix.startswith(fix_names)
    else:
        assert c.fix is not None and c.fix.startswith(f"echo {fix_names} |")


def test_governor(tmp_path: Path) -> None:
    h = _host(tmp_path)
    assert check_governor(h).ok  # no cpufreq at all
    for cpu, gov in enumerate(["ondemand", "ondemand", "performance", "ondemand"]):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", gov + "\n")
    c = check_governor(h)
    assert not c.ok and not c.blocking
    assert c.detail.startswith("ondemand on cpu0, cpu1, cpu3; performance on cpu2")
    for cpu in (0, 1, 3):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", "performance")
    assert check_governor(h).ok


# --- thermal ---------------------------------------------------------------------------------
def _zone(root: Path, n: int, kind: str, milli_c: int) -> None:
    _write(root, f"sys/class/thermal/thermal_zone{n}/type", kind + "\n")
    _write(root, f"sys/class/thermal/thermal_zone{n}/temp", f"{milli_c}\n")


def _vcgencmd(tmp_path: Path, output: str, status: int = 0) -> str:
    script = _write(tmp_path, "bin/vcgencmd", f"#!/bin/sh\necho '{output}'\nexit {status}\n")
    script.chmod(0o755)
    return str(script)


def test_thermal_cool_and_hot(tmp_path: Path) -> None:
    h = _host(tmp_path)
    assert check_thermal(h) == Check("thermal", True, "no thermal zone")
    _zone(tmp_path, 0, "cpu-thermal", 54_312)
    c = check_thermal(h)
    assert c.ok and c.detail == "54.3 C (cpu-thermal)"
    _zone(tmp_path, 0, "cpu-thermal", 83_000)
    c = check_thermal(h)
    assert not c.ok and not c.blocking and "hot" in c.detail and "fan" in (c.fix or "")


def test_thermal_throttling_flags(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "cpu-thermal", 60_000)
    h = _host(tmp_path, vcgencmd=_vcgencmd(tmp_path, "throttled=0x0"))
    c = check_thermal(h)
    assert c.ok and "throttled=0x0" in c.detail
    h = _host(tmp_path, vcgencmd=_vcgencmd(tmp_path, "throttled=0x50005"))
    c = check_thermal(h)
    assert not c.ok and "under-voltage" in c.detail and "throttling now" in c.detail
    assert "supply" in (c.fix or "")
    h = _host(tmp_path, vcgencmd=_vcgencmd(tmp_path, "throttled=0x50000"))
    c = check_thermal(h)
    assert not c.ok and "throttled since boot" in c.detail
    failing = _vcgencmd(tmp_path, "VCHI initialization failed", status=255)
    c = check_thermal(_host(tmp_path, vcgencmd=failing))
    assert not c.ok and "group video" in (c.fix or "")


def test_a_pi_without_vcgencmd(tmp_path: Path) -> None:
    model = tmp_path / "proc/device-tree/model"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")
    c = check_thermal(_host(tmp_path))
    assert not c.ok and "raspi-utils" in (c.fix or "")


# --- systemd ---------------------------------------------------------------------------------
def test_systemd_from_the_environment(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "10000000"}
    c = check_systemd(_host(tmp_path, environ=env))
    assert c.ok and c.detail == "under systemd, watchdog 10 s"
    c = check_systemd(_host(tmp_path, environ={"NOTIFY_SOCKET": "/run/systemd/notify"}))
    assert not c.ok and "WatchdogSec=" in (c.fix or "")
    c = check_systemd(_host(tmp_path, environ={"INVOCATION_ID": "abc"}))
    assert not c.ok and "Type=notify" in (c.fix or "")


def test_systemd_from_a_shell_asks_systemctl(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def systemctl(out: str, code: int = 0) -> Callable[[Sequence[str], float], tuple[int, str]]:
        def run(argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
            calls.append(list(argv))
            return code, out

        return run

    restarted = (
        "ActiveState=active\nSubState=running\nResult=watchdog\nNRestarts=3\n"
        "WatchdogUSec=10s\nLoadState=loaded\n"
    )
    c = check_systemd(_host(tmp_path, run=systemctl(restarted)))
    assert calls[0][:3] == ["systemctl", "show", "edge-vision.service"]
    assert not c.ok and "3 restarts" in c.detail and "watchdog" in (c.fix or "")
    healthy = restarted.replace("Result=watchdog", "Result=success").replace("=3", "=0")
    assert check_systemd(_host(tmp_path, run=systemctl(healthy))).ok
    gone = "LoadState=not-found\nActiveState=inactive\n"
    c = check_systemd(_host(tmp_path, run=systemctl(gone)))
    assert c.ok and "not installed" in c.detail


# --- all of them -----------------------------------------------------------------------------
def test_checks_in_order_and_blocking(tmp_path: Path) -> None:
    config = _write(tmp_path, "etc/config.toml", '[source]\nspec = "/dev/video0"\n')
    h = _host(tmp_path, open_device=_opener({}))
    found = checks(str(config), host=h)
    assert [c.name for c in found] == [
        "config", "camera /dev/video0", "clock source", "cpu governor", "thermal", "systemd",
    ]  # fmt: skip
    assert [c.name for c in found if c.blocking] == ["camera /dev/video0"]
    assert all(c.fix for c in found if not c.ok)  # every problem comes with its fix
    bad = _write(tmp_path, "etc/bad.toml", "[source]\nspec = 5\n")
    found = checks(str(bad), host=h)
    assert found[0].name == "config" and found[0].blocking
