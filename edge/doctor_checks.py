"""The checks ``edge doctor`` runs on the machine a service will run on, each problem with its fix.

:func:`checks` returns one :class:`Check` per finding: the config, the camera devices (and
whether this user can open them: run the doctor as the service user, ``sudo -u edge-vision edge
doctor``, to see what the service sees), the configured source's own needs (picamera2,
GStreamer), the clock source, the CPU frequency governor, temperature and throttling, and
whether the process runs under systemd with a watchdog. A check that would make ``edge run``
fail is ``blocking`` (the doctor then exits non-zero); the others are advice.

Everything the checks look at comes through :class:`Host` (the filesystem root, the
environment, how a device is opened, how a command runs), so tests point them at a made-up
``/dev`` and ``/sys``; the CLI uses :meth:`Host.local`.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import Config
from edge.errors import ConfigError
from edge.sources.registry import parse_spec
from edge.watchdog import thermal

#: VIDIOC_QUERYCAP = _IOR('V', 0, struct v4l2_capability), a 104-byte struct
VIDIOC_QUERYCAP = 0x80685600
_CAP_VIDEO_CAPTURE = 0x00000001
_CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
_CAP_DEVICE_CAPS = 0x80000000
#: V4L2 nodes of a Raspberry Pi camera module's receiver: raw Bayer, for libcamera only
PI_RECEIVERS = ("unicam", "rp1-cfe")
#: temperature above which a Pi's firmware starts capping the clock (soft limit 80 C, hard 85 C)
HOT_C = 80.0
#: flags of ``vcgencmd get_throttled`` that describe the present (the rest say "since boot")
_NOW_FLAGS = ("under-voltage", "arm-frequency-capped", "throttled", "soft-temp-limit")
_COARSE_CLOCKS = ("jiffies", "refined-jiffies")
_SLOW_CLOCKS = ("hpet", "acpi_pm")
_FAST_CLOCKS = ("tsc", "arch_sys_counter", "kvm-clock")
CLOCKSOURCE = "sys/devices/system/clocksource/clocksource0"


@dataclass(frozen=True)
class Check:
    """One finding. ``fix`` says what to do when ``ok`` is False; ``blocking`` ones stop a run."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    blocking: bool = False


@dataclass(frozen=True)
class V4l2Device:
    """What ``VIDIOC_QUERYCAP`` says about a device node."""

    driver: str
    card: str
    capture: bool  # it delivers frames (not a codec, an ISP or a metadata node)


def parse_querycap(buf: bytes) -> V4l2Device:
    """``struct v4l2_capability`` -> :class:`V4l2Device` (device_caps when the driver sets them)."""
    if len(buf) < 104:
        raise ValueError(f"v4l2_capability is 104 bytes, got {len(buf)}")

    def text(b: bytes) -> str:
        return b.split(b"\0", 1)[0].decode("utf-8", "replace")

    caps, device_caps = int.from_bytes(buf[84:88], "little"), int.from_bytes(buf[88:92], "little")
    effective = device_caps if caps & _CAP_DEVICE_CAPS else caps
    capture = bool(effective & (_CAP_VIDEO_CAPTURE | _CAP_VIDEO_CAPTURE_MPLANE))
    return V4l2Device(text(buf[0:16]), text(buf[16:48]), capture)


def open_v4l2(path: str) -> V4l2Device | None:
    """Open ``path`` as this user would and ask what it is; None when it is not a V4L2 device.

    ``PermissionError`` when this user may not open it. Opening a V4L2 node does not start a
    stream, so this is safe while the service runs.
    """
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        buf = bytearray(104)
        try:
            fcntl.ioctl(fd, VIDIOC_QUERYCAP, buf)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL):
                return None
            raise
        return parse_querycap(bytes(buf))
    finally:
        os.close(fd)


def run_command(argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
    """Run ``argv``; (exit code, stdout). 127 when it is not installed, 124 on timeout."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        return 127, ""
    except subprocess.TimeoutExpired:
        return 124, ""
    return done.returncode, done.stdout


@dataclass(frozen=True)
class Host:
    """The machine the checks look at; tests replace the root, the environment and the probes."""

    root: Path = Path("/")
    environ: Mapping[str, str] = field(default_factory=dict)
    uid: int = 0
    open_device: Callable[[str], V4l2Device | None] = open_v4l2
    run: Callable[[Sequence[str], float], tuple[int, str]] = run_command
    vcgencmd: str | None = None  # path of vcgencmd, None when absent
    has_module: Callable[[str], bool] = lambda name: importlib.util.find_spec(name) is not None
    opencv_gstreamer: Callable[[], bool] | None = None

    @classmethod
    def local(cls) -> Host:
        """This machine, this process's user and environment (what the CLI passes)."""
        return cls(
            root=Path("/"),
            environ=dict(os.environ),
            uid=os.getuid(),
            vcgencmd=shutil.which("vcgencmd"),
            opencv_gstreamer=_opencv_gstreamer,
        )

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def read(self, rel: str) -> str | None:
        try:
            return self.path(rel).read_text().strip("\0\n ")
        except (OSError, UnicodeDecodeError):
            return None


def _opencv_gstreamer() -> bool:
    from edge.sources.opencv_live import has_gstreamer

    return bool(has_gstreamer())


def checks(config_path: str | None, *, host: Host | None = None) -> list[Check]:
    """Every check, in the order the doctor prints them."""
    h = host or Host.local()
    cfg_check, cfg = check_config(config_path)
    spec = cfg.source.spec if cfg is not None else None
    out = [cfg_check]
    out += check_cameras(h, spec)
    out += check_source_needs(h, spec)
    out += [check_clocksource(h), check_governor(h), check_thermal(h), check_systemd(h)]
    return out


# --- config and source -----------------------------------------------------------------------
def check_config(config_path: str | None) -> tuple[Check, Config | None]:
    if config_path is None:
        return Check("config", True, "no --config: edge run uses its built-in defaults"), None
    try:
        cfg = Config.load(config_path)
    except ConfigError as e:
        return Check("config", False, str(e), f"edit {config_path} (docs/SERVICE.md)", True), None
    return Check("config", True, f"{config_path} is valid"), cfg


def _source_kind(spec: str | None) -> str | None:
    """The kind of a spec as ``edge run`` will parse it (a missing file counts as a video)."""
    if spec is None:
        return None
    try:
        return parse_spec(spec).kind
    except ConfigError:
        return "video"  # a file that is missing: the run says so, the doctor has no advice


def _v4l2_path(spec: str) -> str:
    return f"/dev/video{spec}" if spec.isdigit() else spec


# --- cameras ---------------------------------------------------------------------------------
def _numbered(h: Host, pattern: str) -> list[Path]:
    def key(p: Path) -> tuple[int, str]:
        digits = re.sub(r"\D", "", p.name)
        return (int(digits) if digits else -1, p.name)

    return sorted(h.path("dev").glob(pattern), key=key)


def _group_of(path: Path) -> str:
    try:
        gid = path.stat().st_gid
        return grp.getgrgid(gid).gr_name
    except (OSError, KeyError):
        return "video"


def _user(h: Host) -> str:
    try:
        return pwd.getpwuid(h.uid).pw_name
    except KeyError:
        return str(h.uid)


def _dev(h: Host, node: Path) -> str:
    """``/dev/video0`` for ``<root>/dev/video0``."""
    return "/" + str(node.relative_to(h.root))


def _cannot_open(h: Host, node: Path, label: str, err: OSError, configured: bool) -> Check:
    name = f"camera {_dev(h, node)}"
    if isinstance(err, PermissionError):
        group, user = _group_of(node), _user(h)
        fix = (
            f"add {user} to group {group}: sudo usermod -aG {group} {user}, then log in again "
            "(the service gets it from SupplementaryGroups=)"
        )
        return Check(name, False, f"{label}: this user cannot open it", fix, configured)
    fix = "replug the camera; `dmesg | tail` shows what its driver says"
    return Check(name, False, f"{label}: cannot open: {err.strerror or err}", fix, configured)


def _device_check(h: Host, node: Path, configured: bool) -> Check:
    label = h.read(f"sys/class/video4linux/{node.name}/name") or "?"
    name = f"camera {_dev(h, node)}"
    try:
        info = h.open_device(str(node))
    except OSError as e:
        return _cannot_open(h, node, label, e, configured)
    pick = "set [source] spec to a capture node (v4l2-ctl --list-devices lists them)"
    if info is None:
        return Check(name, not configured, f"{label}: not a V4L2 device", pick, configured)
    card = f"{info.card} ({info.driver})"
    if info.driver in PI_RECEIVERS or label.startswith(PI_RECEIVERS):
        fix = 'a camera module is read through libcamera: set [source] spec = "picamera2"'
        detail = f"{card}: a camera module's raw receiver"
        return Check(name, not configured, detail, fix, configured)
    if not info.capture:
        detail = f"{card}: not a capture node (codec, ISP or metadata)"
        return Check(name, not configured, detail, pick, configured)
    return Check(name, True, f"{card}: capture, this user can open it")


def check_cameras(h: Host, spec: str | None) -> list[Check]:
    """One check per /dev/video* node; blocking for the node the config names."""
    kind = _source_kind(spec)
    wanted = h.path(_v4l2_path(spec)) if kind == "v4l2" and spec else None
    target = wanted.resolve() if wanted is not None else None  # /dev/v4l/by-id/... links
    nodes = _numbered(h, "video*")
    out = [_device_check(h, n, n.resolve() == target) for n in nodes]
    if wanted is not None and not wanted.exists():
        present = ", ".join(_dev(h, n) for n in nodes) or "none"
        fix = "plug the camera in, or set [source] spec to a capture node above"
        out.append(Check(f"camera {_dev(h, wanted)}", False, f"missing (present: {present})",
                         fix, True))  # fmt: skip
    if not nodes and wanted is None:
        needed = kind == "picamera2"
        fix = "check the camera's cable or USB port; `dmesg | tail` says what the kernel saw"
        out.append(Check("camera devices", not needed, "no /dev/video* devices",
                         fix if needed else None, needed))  # fmt: skip
    return out


def check_source_needs(h: Host, spec: str | None) -> list[Check]:
    """What the configured source kind needs besides a device node."""
    kind = _source_kind(spec)
    if kind == "picamera2":
        out = []
        if not h.has_module("picamera2"):
            fix = (
                "sudo apt install python3-picamera2, and make the venv with "
                "--system-site-packages (scripts/install-service does on a Pi)"
            )
            out.append(Check("picamera2", False, "picamera2 cannot be imported", fix, True))
        else:
            out.append(Check("picamera2", True, "picamera2 is importable"))
        if not _numbered(h, "media*"):
            fix = "check the ribbon cable, then `rpicam-hello --list-cameras`"
            out.append(Check("libcamera", False, "no /dev/media* devices", fix, True))
        return out
    if kind == "gst":
        has = h.opencv_gstreamer() if h.opencv_gstreamer else False
        fix = (
            "use the system OpenCV: apt install python3-opencv, a venv made with "
            "--system-site-packages, and pip uninstall opencv-python-headless (docs/JETSON.md)"
        )
        detail = "this OpenCV has GStreamer" if has else "this OpenCV has no GStreamer"
        return [Check("gstreamer", has, detail, None if has else fix, not has)]
    return []


# --- timing ----------------------------------------------------------------------------------
def _clock_step_ns(samples: int = 200) -> int:
    """The smallest non-zero step of the monotonic clock seen in ``samples`` changes."""
    best = 1 << 62
    last = time.monotonic_ns()
    for _ in range(samples):
        now = time.monotonic_ns()
        while now == last:
            now = time.monotonic_ns()
        best, last = min(best, now - last), now
    return best


def check_clocksource(h: Host) -> Check:
    current = h.read(f"{CLOCKSOURCE}/current_clocksource")
    available = (h.read(f"{CLOCKSOURCE}/available_clocksource") or "").split()
    step = _clock_step_ns()
    detail = f"{current or 'unknown'}; the monotonic clock steps {step} ns"
    better = next((c for c in _FAST_CLOCKS if c in available), None)
    fix = (
        f"echo {better} | sudo tee /{CLOCKSOURCE}/current_clocksource "
        f"(keep it: clocksource={better} on the kernel command line)"
        if better
        else "the kernel offers no better clock source: it lacks this SoC's timer driver"
    )
    if current in _COARSE_CLOCKS or step > 1_000_000:
        return Check("clock source", False, f"{detail}: too coarse to time a frame", fix)
    if current in _SLOW_CLOCKS and better:
        return Check("clock source", False, f"{detail}: each read is a slow system call", fix)
    return Check("clock source", True, detail)


def check_governor(h: Host) -> Check:
    """``performance`` keeps the clock up; others ramp it with load, which adds jitter."""
    found: dict[str, list[str]] = {}
    for f in sorted(h.path("sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")):
        gov = h.read(str(f.relative_to(h.root)))
        if gov:
            found.setdefault(gov, []).append(f.parent.parent.name)
    if not found:
        return Check("cpu governor", True, "no cpufreq (the clock does not scale)")
    detail = "; ".join(f"{g} on {', '.join(cpus)}" for g, cpus in sorted(found.items()))
    if set(found) == {"performance"}:
        return Check("cpu governor", True, detail)
    fix = (
        "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor "
        "(on a Jetson: sudo jetson_clocks; docs/TUNING.md)"
    )
    return Check("cpu governor", False, f"{detail}: the clock ramps with load", fix)


def check_thermal(h: Host) -> Check:
    """Temperature from the thermal zones; throttling from vcgencmd on a Raspberry Pi."""
    temp_c, zone = thermal.cpu_temperature(thermal.read_zones(h.root))
    parts = [f"{temp_c:.1f} C ({zone})" if temp_c is not None else "no thermal zone"]
    problems, fixes = [], []
    if temp_c is not None and temp_c >= HOT_C:
        problems.append(f"hot (>= {HOT_C:.0f} C)")
        fixes.append("cool it: a heatsink and a fan (Pi 5: the Active Cooler)")
    is_pi = "Raspberry Pi" in (h.read("proc/device-tree/model") or "")
    if h.vcgencmd:
        try:
            raw = thermal.run_vcgencmd(h.vcgencmd)
        except (OSError, ValueError) as e:
            problems.append(f"vcgencmd failed: {e}")
            fixes.append("add the user to group video (/dev/vchiq)")
        else:
            flags = thermal.decode_throttled(int(raw, 16))
            parts.append(f"throttled={raw}" + (f" ({', '.join(flags)})" if flags else ""))
            now = [f for f in flags if f in _NOW_FLAGS]
            if now or flags:
                problems.append("throttling now" if now else "throttled since boot")
                fixes.append("a proper supply (Pi 5: 5 V 5 A, Pi 4: 5 V 3 A) and cooling")
    elif is_pi:
        problems.append("vcgencmd is missing: no throttling flags")
        fixes.append("sudo apt install raspi-utils (libraspberrypi-bin on bullseye)")
    detail = "; ".join(parts + problems)
    return Check("thermal", not problems, detail, "; ".join(fixes) or None)


# --- systemd ---------------------------------------------------------------------------------
def check_systemd(h: Host) -> Check:
    env = h.environ
    if env.get("NOTIFY_SOCKET"):
        usec = env.get("WATCHDOG_USEC", "")
        if usec.isdigit() and int(usec) > 0:
            detail = f"under systemd, watchdog {int(usec) / 1e6:g} s"
            return Check("systemd", True, detail)
        fix = "set WatchdogSec=10 in the unit (systemd/edge-vision.service does)"
        return Check("systemd", False, "under systemd without a watchdog", fix)
    if env.get("INVOCATION_ID"):
        fix = "Type=notify in the unit: edge run reports READY=1 after its first frame"
        return Check("systemd", False, "under systemd, but not as Type=notify", fix)
    return _service_state(h)


def _service_state(h: Host) -> Check:
    """Outside systemd: what the installed service is doing, when systemctl can tell."""
    props = "ActiveState,SubState,Result,NRestarts,WatchdogUSec,LoadState"
    code, out = h.run(["systemctl", "show", "edge-vision.service", f"--property={props}"], 5.0)
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if code != 0 or state.get("LoadState") in (None, "not-found"):
        return Check("systemd", True, "not under systemd; edge-vision.service is not installed")
    restarts = state.get("NRestarts", "0")
    detail = (
        f"not under systemd; edge-vision.service is {state.get('ActiveState')} "
        f"({state.get('SubState')}), {restarts} restarts, watchdog {state.get('WatchdogUSec')}"
    )
    if state.get("Result") == "watchdog" or (restarts.isdigit() and int(restarts) > 0):
        fix = (
            f"last result: {state.get('Result')}; see journalctl -u edge-vision and "
            "edge misses /var/lib/edge-vision/misses.jsonl for the stage that hung"
        )
        return Check("systemd", False, detail, fix)
    return Check("systemd", True, detail)
