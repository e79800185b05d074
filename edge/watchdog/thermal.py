"""CPU temperature and firmware throttling, for the miss records.

A frame that is late because the SoC is throttling is not the model's fault; the miss record
says so when the machine can tell. Temperature comes from ``/sys/class/thermal/thermal_zone*``
(millidegrees C): on a Pi the zone is ``cpu-thermal``; on a Jetson Nano ``CPU-therm``, on
Orin ``cpu-thermal``; we take the CPU zone (the hottest of them if several), else the hottest
plausible zone. Throttling comes from ``vcgencmd get_throttled`` (Raspberry Pi firmware) when
the binary exists. The kernel's own ``soc:firmware/get_throttled`` file is not used: it is
deprecated and reading it puts a WARN in the kernel log.

Reading sysfs costs microseconds, running vcgencmd a few milliseconds, so
:class:`ThermalMonitor` caches the reading for ``max_age_s`` (the caller passes its clock's
``now_ns``) and gives up on a vcgencmd that fails (e.g. the user is not in group ``video``).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: bits of ``get_throttled`` (Raspberry Pi documentation, "vcgencmd get_throttled")
THROTTLE_BITS: dict[int, str] = {
    0: "under-voltage",
    1: "arm-frequency-capped",
    2: "throttled",
    3: "soft-temp-limit",
    16: "under-voltage-occurred",
    17: "arm-frequency-capped-occurred",
    18: "throttled-occurred",
    19: "soft-temp-limit-occurred",
}

# zones whose readings are not a die temperature worth reporting (Jetson's PMIC-Die sits at
# a constant 100 C; thermal-fan-est is an estimate for the fan governor)
_IGNORED_ZONES = ("pmic", "fan")
# readings outside this range are sentinels of absent sensors (Jetson Orin reports -256 C)
_PLAUSIBLE_C = (-40.0, 200.0)
_THROTTLED_RE = re.compile(r"throttled=(0x[0-9a-fA-F]+)")


@dataclass(frozen=True)
class ThermalState:
    temp_c: float | None = None
    zone: str | None = None  # the thermal zone's type, e.g. "cpu-thermal"
    throttled: str | None = None  # raw get_throttled value, e.g. "0x50005"
    throttle_flags: tuple[str, ...] = ()

    def record_fields(self) -> dict[str, Any]:
        """The MissRecord keywords: ``MissRecord(..., **state.record_fields())``."""
        return {
            "temp_c": self.temp_c,
            "throttled": self.throttled,
            "throttle_flags": self.throttle_flags,
        }


def decode_throttled(value: int) -> tuple[str, ...]:
    """Names of the set bits, low bit first; unknown bits as ``bit-N``."""
    return tuple(THROTTLE_BITS.get(bit, f"bit-{bit}") for bit in range(32) if value & (1 << bit))


def parse_throttled(text: str) -> str | None:
    """``"throttled=0x50005"`` (vcgencmd's output) -> ``"0x50005"``; None if not in the text."""
    m = _THROTTLED_RE.search(text)
    return m.group(1).lower() if m else None


def _zone_index(path: Path) -> int:
    digits = path.name.removeprefix("thermal_zone")
    return int(digits) if digits.isdigit() else 1 << 30


def read_zones(root: str | Path = "/") -> list[tuple[str, float]]:
    """``[(zone type, deg C)]`` for every readable zone with a plausible reading."""
    base = Path(root) / "sys" / "class" / "thermal"
    zones: list[tuple[str, float]] = []
    for zone in sorted(base.glob("thermal_zone*"), key=_zone_index):
        try:
            kind = (zone / "type").read_text().strip()
            temp_c = int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue  # some zones answer EINVAL or EAGAIN while their sensor is off
        if _PLAUSIBLE_C[0] < temp_c < _PLAUSIBLE_C[1]:
            zones.append((kind, temp_c))
    return zones


def cpu_temperature(zones: list[tuple[str, float]]) -> tuple[float | None, str | None]:
    """The CPU zone's temperature (hottest CPU zone), else the hottest plausible zone."""
    cpu = [z for z in zones if z[0].lower().startswith("cpu")]
    pool = cpu or [z for z in zones if not any(s in z[0].lower() for s in _IGNORED_ZONES)]
    if not pool:
        return None, None
    kind, temp_c = max(pool, key=lambda z: z[1])
    return round(temp_c, 1), kind


def run_vcgencmd(binary: str, timeout_s: float = 1.0) -> str:
    """``vcgencmd get_throttled`` -> ``"0x50005"``; ``OSError`` / ``ValueError`` on failure."""
    try:
        done = subprocess.run(
            [binary, "get_throttled"], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"{binary} get_throttled took more than {timeout_s} s") from e
    value = parse_throttled(done.stdout)
    if done.returncode != 0 or value is None:
        detail = (done.stderr or done.stdout).strip()[:200]
        raise ValueError(
            f"{binary} get_throttled: expected 'throttled=0x...', got exit {done.returncode}: "
            f"{detail!r} (on a Pi, add the user to group 'video')"
        )
    return value


def _reading(root: str | Path, binary: str | None) -> tuple[ThermalState, Exception | None]:
    temp_c, zone = cpu_temperature(read_zones(root))
    throttled, error = None, None
    if binary:
        try:
            throttled = run_vcgencmd(binary)
        except (OSError, ValueError) as e:
            error = e
    flags = decode_throttled(int(throttled, 16)) if throttled else ()
    return ThermalState(temp_c, zone, throttled, flags), error


def read_thermal(root: str | Path = "/", vcgencmd: str | None = "vcgencmd") -> ThermalState:
    """One uncached reading. ``vcgencmd``: a name looked up on PATH, a path, or None (skip)."""
    state, error = _reading(root, shutil.which(vcgencmd) if vcgencmd else None)
    if error is not None:
        log.debug("no throttling flags: %s", error)
    return state


class ThermalMonitor:
    """Cached :func:`read_thermal` for the watchdog: at most one reading per ``max_age_s``.

    Used from one thread (the watchdog's).
    """

    def __init__(
        self,
        root: str | Path = "/",
        max_age_s: float = 1.0,
        vcgencmd: str | None = "vcgencmd",
    ) -> None:
        self.root = Path(root)
        self._max_age_ns = int(max_age_s * 1e9)
        self._vcgencmd = shutil.which(vcgencmd) if vcgencmd else None
        self._state = ThermalState()
        self._read_at_ns: int | None = None

    @property
    def has_vcgencmd(self) -> bool:
        return self._vcgencmd is not None

    def read(self, now_ns: int) -> ThermalState:
        last = self._read_at_ns
        if last is not None and now_ns - last < self._max_age_ns:
            return self._state
        self._read_at_ns = now_ns
        self._state, error = _reading(self.root, self._vcgencmd)
        if error is not None:
            # a vcgencmd that fails once (no /dev/vchiq access) fails every time
            log.warning("%s; miss records will carry no throttling flags", error)
            self._vcgencmd = None
        return self._state
