from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from edge.watchdog.record import MissRecord
from edge.watchdog.thermal import (
    ThermalMonitor,
    decode_throttled,
    parse_throttled,
    read_thermal,
    read_zones,
)


def fake_sysfs(root: Path, zones: dict[str, str | None]) -> Path:
    """A /sys/class/thermal tree: {type: temp text} per zone, None for an unreadable temp."""
    base = root / "sys" / "class" / "thermal"
    for i, (kind, temp) in enumerate(zones.items()):
        zone = base / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        if temp is not None:
            (zone / "temp").write_text(temp + "\n")
    (base / "cooling_device0").mkdir()  # real trees have these too; not a zone
    return root


def fake_vcgencmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """A ``vcgencmd`` script first on PATH; it appends its arguments to ``calls``."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    script = bindir / "vcgencmd"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n{body}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return calls


def ncalls(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def test_raspberry_pi_zone(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path / "pi", {"cpu-thermal": "48312"})
    state = read_thermal(root, vcgencmd=None)
    assert (state.temp_c, state.zone) == (48.3, "cpu-thermal")
    assert state.throttled is None and state.throttle_flags == ()


def test_jetson_nano_takes_the_cpu_zone(tmp_path: Path) -> None:
    zones = {
        "AO-therm": "40000",
        "CPU-therm": "45500",
        "GPU-therm": "43000",
        "PLL-therm": "41000",
        "PMIC-Die": "100000",
        "thermal-fan-est": "44000",
    }
    state = read_thermal(fake_sysfs(tmp_path, zones), vcgencmd=None)
    assert (state.temp_c, state.zone) == (45.5, "CPU-therm")


def test_without_a_cpu_zone_takes_the_hottest_plausible(tmp_path: Path) -> None:
    zones = {
        "soc-thermal": "50250",
        "PMIC-Die": "100000",
        "CV0-therm": "-256000",  # Orin's reading for a sensor that is off
        "gpu-thermal": "not a number",
        "tj-thermal": None,  # temp unreadable
        "board": "49000",
    }
    root = fake_sysfs(tmp_path, zones)
    assert read_zones(root) == [("soc-thermal", 50.25), ("PMIC-Die", 100.0), ("board", 49.0)]
    state = read_thermal(root, vcgencmd=None)
    assert (state.temp_c, state.zone) == (50.2, "soc-thermal")


def test_no_thermal_tree(tmp_path: Path) -> None:
    state = read_thermal(tmp_path, vcgencmd=None)
    assert state.temp_c is None and state.zone is None


def test_zones_sorted_numerically(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, {f"cpu{i}-thermal": f"{40000 + i * 1000}" for i in range(12)})
    assert [z[0] for z in read_zones(root)] == [f"cpu{i}-thermal" for i in range(12)]
    assert read_thermal(root, vcgencmd=None).temp_c == 51.0


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (0x0, ()),
        (0x50005, ("under-voltage", "throttled", "under-voltage-occurred", "throttled-occurred")),
        (0x80008, ("soft-temp-limit", "soft-temp-limit-occurred")),
        (0x20002, ("arm-frequency-capped", "arm-frequency-capped-occurred")),
        (0x100, ("bit-8",)),
    ],
)
def test_decode_throttled(value: int, names: tuple[str, ...]) -> None:
    assert decode_throttled(value) == names


def test_parse_throttled() -> None:
    assert parse_throttled("throttled=0x50005\n") == "0x50005"
    assert parse_throttled("throttled=0xE0000") == "0xe0000"
    assert parse_throttled("VCHI initialization failed") is None


def test_vcgencmd_on_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_vcgencmd(tmp_path, monkeypatch, 'echo "throttled=0x50005"')
    root = fake_sysfs(tmp_path / "sys-root", {"cpu-thermal": "81000"})
    state = read_thermal(root)
    assert state.throttled == "0x50005"
    assert state.throttle_flags == decode_throttled(0x50005)
    assert calls.read_text() == "get_throttled\n"
    miss = MissRecord(
        frame=1,
        source="picamera2",
        budget_ms=33.3,
        latency_ms=40.0,
        over_ms=6.7,
        stages={"infer": 39.0},
        cause="infer",
        action="completed-late",
        consecutive=1,
        **state.record_fields(),
    )
    assert (miss.temp_c, miss.throttled) == (81.0, "0x50005")
    assert "under-voltage" in miss.to_json()


def test_monitor_caches_for_max_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_vcgencmd(tmp_path, monkeypatch, 'echo "throttled=0x0"')
    root = fake_sysfs(tmp_path / "r", {"cpu-thermal": "50000"})
    temp = root / "sys/class/thermal/thermal_zone0/temp"
    mon = ThermalMonitor(root, max_age_s=1.0)
    assert mon.has_vcgencmd
    t0 = 5_000_000_000
    assert mon.read(t0).temp_c == 50.0
    temp.write_text("60000\n")
    assert mon.read(t0 + 999_000_000).temp_c == 50.0  # cached
    assert ncalls(calls) == 1
    state = mon.read(t0 + 1_000_000_000)
    assert (state.temp_c, state.throttled, state.throttle_flags) == (60.0, "0x0", ())
    assert ncalls(calls) == 2


def test_failing_vcgencmd_is_dropped_after_one_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = fake_vcgencmd(tmp_path, monkeypatch, 'echo "VCHI initialization failed" >&2; exit 255')
    root = fake_sysfs(tmp_path / "r", {"cpu-thermal": "50000"})
    mon = ThermalMonitor(root, max_age_s=1.0)
    with caplog.at_level(logging.WARNING, logger="edge.watchdog.thermal"):
        first = mon.read(0)
        second = mon.read(2_000_000_000)
    assert first.temp_c == 50.0 and first.throttled is None
    assert second.temp_c == 50.0 and second.throttled is None
    assert ncalls(calls) == 1 and not mon.has_vcgencmd
    assert "VCHI initialization failed" in caplog.text and "video" in caplog.text


def test_no_vcgencmd_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    mon = ThermalMonitor(fake_sysfs(tmp_path / "r", {"cpu-thermal": "41000"}))
    assert not mon.has_vcgencmd
    assert mon.read(0).temp_c == 41.0
