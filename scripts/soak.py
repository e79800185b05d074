#!/usr/bin/env python3
"""Soak benchmark: ``edge run`` on a looping real video for a long time, watched from outside.

The pipeline runs as the service runs it: ``edge run`` in a child process, with this script
playing systemd's part (``$NOTIFY_SOCKET`` bound here, ``$WATCHDOG_USEC`` set). Every
``--interval-s`` (60) it samples the child from outside:

* ``/proc/PID/status`` ``VmRSS`` and ``Threads``, ``/proc/PID/fd`` (open descriptors),
  ``/proc/PID/stat`` CPU time, and the host's load average (other work on a shared machine);
* the child's latest ``STATUS=`` line (``fps, p99, misses X% (missed of held)``): p99 is the
  worker's rolling window of the last 4096 frames (about 2.3 min at 30 fps), the miss rate of
  the interval comes from the difference of the cumulative counts;
* how many ``WATCHDOG=1`` pings arrived (they stop if frames stop completing);
* ``/api/stats`` of the run's own HTTP server (``--http`` on loopback, nobody watching): the
  degradation mode (inference on every k-th frame) and the frames it shed, which explain the
  CPU time and the latency of a loaded machine.

At the end it sends SIGTERM and keeps the exit code, the run's summary and any process left
behind; it writes ``NAME.csv``, ``NAME.json`` (samples, summary, verdict) and ``NAME.png``.

Targets (issue 6): RSS growth <= 2 MB after warm-up, no growth in fds or threads, p99 stable
within 10% (max and min of the post-warm-up samples within 10% of their median).

``--burn N`` runs N CPU burners (a busy loop per process) beside the pipeline for the whole
run: the CPU-contention benchmark. ``--replot NAME.json`` redraws the plot of a finished run.

    .venv/bin/python scripts/soak.py --minutes 30 --out docs/soak
    .venv/bin/python scripts/soak.py --minutes 3 --interval-s 15 --burn 2 --name contention
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from soak_plot import BLUE, GREEN, GREY, RED, plot

REPO = Path(__file__).resolve().parents[1]
STATUS_RE = re.compile(
    r"fps (?P<fps>[\d.]+)(?:, p99 (?P<p99>[\d.]+) ms)?, misses [\d.]+% "
    r"\((?P<missed>\d+) of (?P<held>\d+)\)"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    minute: float
    rss_kb: int
    fds: int
    threads: int
    cpu_s: float
    load1: float
    fps: float
    p99_ms: float
    missed: int
    held: int
    miss_rate_pct: float  # of the frames held to a deadline during this interval
    pings_total: int  # WATCHDOG=1 received since the start (they stop if frames stop)
    every: int = -1  # degradation: inference on every k-th frame (-1: not known)
    shed: int = -1  # frames shed so far (no inference, last boxes reused)
    steal_pct: float = -1.0  # host CPU time stolen by the hypervisor this interval (-1: unknown)


class Listener:
    """The ``$NOTIFY_SOCKET`` end: keeps the last STATUS and counts pings."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.status = ""
        self.pings = 0
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(ln.split("=", 1) for ln in data.split("\n") if "=" in ln)
            with self._lock:
                self.status = fields.get("STATUS", self.status)
                self.pings += fields.get("WATCHDOG") == "1"
            if fields.get("READY") == "1":
                self.ready.set()
            if fields.get("STOPPING") == "1":
                self.stopping.set()

    def take(self) -> tuple[str, int]:
        with self._lock:
            return self.status, self.pings

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()


def proc_sample(pid: int) -> dict[str, Any]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(ln.split(":", 1) for ln in status.splitlines() if ":" in ln)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": (int(stat[11]) + int(stat[12])) / CLK_TCK,  # utime + stime
        "load1": os.getloadavg()[0],
    }


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat: on a shared VM, the time the
    hypervisor gave to other guests, which no process here can see or avoid."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (a pipeline must not leave any behind)."""
    out: list[int] = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def write_config(path: Path, status_s: float, degrade: str) -> None:
    path.write_text(
        "[source]\nloop = true\n\n"
        f"[degrade]\npolicy = {json.dumps(degrade)}\n\n"
        f"[watchdog]\nstatus_interval_s = {status_s}\nrun_record_s = 60.0\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_stats(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=5) as r:
            return dict(json.load(r))
    except (OSError, ValueError):
        return {}


def start_child(
    args: argparse.Namespace, work: Path, notify: Path, port: int
) -> subprocess.Popen[bytes]:
    config = work / "soak.toml"
    write_config(config, status_s=min(10.0, args.interval_s), degrade=args.degrade)
    argv = [
        str(REPO / ".venv/bin/edge"),
        "run",
        "--config",
        str(config),
        "--source",
        args.source,
        "--model",
        args.model,
        "--fps",
        str(args.fps),
        "--miss-log",
        str(work / "misses.jsonl"),
        "--json",
        "--http",
        f"127.0.0.1:{port}",
    ]
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "10000000"}
    env.pop("WATCHDOG_PID", None)
    out, err = open(work / "stdout.json", "wb"), open(work / "stderr.log", "wb")  # noqa: SIM115
    return subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=REPO)


def sample(
    pid: int,
    port: int,
    listener: Listener,
    minute: float,
    prev: Sample | None,
    steal: tuple[tuple[int, int], tuple[int, int]],
) -> Sample:
    p = proc_sample(pid)
    (s0, t0), (s1, t1) = steal
    steal_pct = round(100.0 * (s1 - s0) / (t1 - t0), 2) if t1 > t0 else -1.0
    api = api_stats(port)
    every = int(api.get("every", -1))
    shed = int(api["frames"].get("shed", 0)) if "frames" in api else -1
    status, pings = listener.take()
    m = STATUS_RE.search(status)
    fps = float(m["fps"]) if m else 0.0
    p99 = float(m["p99"]) if m and m["p99"] else float("nan")
    missed, held = (int(m["missed"]), int(m["held"])) if m else (0, 0)
    d_missed = missed - (prev.missed if prev else 0)
    d_held = held - (prev.held if prev else 0)
    rate = 100.0 * d_missed / d_held if d_held > 0 else 0.0
    return Sample(
        round(minute, 3),
        p["rss_kb"],
        p["fds"],
        p["threads"],
        p["cpu_s"],
        p["load1"],
        fps,
        p99,
        missed,
        held,
        round(rate, 4),
        pings,
        every,
        shed,
        steal_pct,
    )


def verdict(samples: list[Sample], warmup_min: float) -> dict[str, Any]:
    after = [s for s in samples if s.minute >= warmup_min]
    if len(after) < 2:
        return {"ok": False, "why": "fewer than two samples after warm-up"}
    base = after[0]
    rss_growth_mb = (max(s.rss_kb for s in after) - base.rss_kb) / 1024
    fd_growth = max(s.fds for s in after) - base.fds
    thread_growth = max(s.threads for s in after) - base.threads
    p99 = np.array([s.p99_ms for s in after if np.isfinite(s.p99_ms)])
    med = float(np.median(p99)) if p99.size else float("nan")
    spread = float(max(p99.max() - med, med - p99.min()) / med) if p99.size else float("nan")
    # drift, which the spread cannot tell from noise: the least-squares slope of p99 over
    # time, as % of the median per 10 minutes (a slowing pipeline shows a steady slope)
    mins = np.array([s.minute for s in after if np.isfinite(s.p99_ms)])
    trend = float("nan")
    if p99.size >= 3 and np.ptp(mins) > 0:
        trend = float(np.polyfit(mins, p99, 1)[0]) * 10 / med
    steal = [s.steal_pct for s in after if s.steal_pct >= 0]
    checks = {
        "rss_growth_mb": (round(rss_growth_mb, 3), rss_growth_mb <= 2.0),
        "fd_growth": (fd_growth, fd_growth <= 0),
        "thread_growth": (thread_growth, thread_growth <= 0),
        "p99_spread_pct": (round(100 * spread, 2), spread <= 0.10),
    }
    return {
        "warmup_min": warmup_min,
        "p99_median_ms": round(med, 3),
        "p99_trend_pct_per_10min": round(100 * trend, 2),
        "steal_pct": [min(steal), max(steal)] if steal else None,
        **{k: {"value": v, "ok": bool(ok)} for k, (v, ok) in checks.items()},
        "ok": all(ok for _, ok in checks.values()),
    }


def save(out: Path, name: str, samples: list[Sample], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
    doc = {**meta, "samples": [asdict(s) for s in samples]}
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    if len(samples) >= 2:
        draw(samples, out / f"{name}.png", f"{name}: {meta['argv_summary']}")


def stop_child(child: subprocess.Popen[bytes], work: Path) -> dict[str, Any]:
    kids_before = children_of(child.pid)
    child.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        rc = child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        child.kill()
        rc = child.wait()
    stop_s = time.monotonic() - t0
    try:
        summary = json.loads((work / "stdout.json").read_text() or "null")
    except json.JSONDecodeError:
        summary = None
    left = [p for p in kids_before if Path(f"/proc/{p}").exists()]
    return {
        "exit_code": rc,
        "stop_s": round(stop_s, 3),
        "summary": summary,
        "children_before_stop": kids_before,
        "children_left": left,
    }


def start_burners(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes that each keep a core busy (CPU contention on every core)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def soak(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    listener = Listener(work / "notify.sock")
    burners = start_burners(args.burn)
    port = free_port()
    child = start_child(args, work, work / "notify.sock", port)
    meta: dict[str, Any] = {
        "argv_summary": f"{Path(args.source).name} {args.model} @{args.fps:g} fps, "
        f"{args.minutes:g} min, degrade {args.degrade}"
        + (f", {args.burn} CPU burners" if args.burn else ""),
        "source": args.source,
        "model": args.model,
        "fps": args.fps,
        "minutes": args.minutes,
        "interval_s": args.interval_s,
        "work": str(work),
        "pid": child.pid,
        "cpus": os.cpu_count(),
        "burners": args.burn,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    samples: list[Sample] = []
    try:
        if not listener.ready.wait(120):
            raise RuntimeError(f"no READY=1 within 120 s; see {work}/stderr.log")
        t0 = time.monotonic()
        n = max(1, round(args.minutes * 60 / args.interval_s))
        wake = threading.Event()  # never set: a timed wait on the schedule, not a sync
        times = cpu_times()
        for k in range(1, n + 1):
            wake.wait(max(0.0, t0 + k * args.interval_s - time.monotonic()))
            if child.poll() is not None:
                raise RuntimeError(f"edge run exited early ({child.returncode}); see {work}")
            prev = samples[-1] if samples else None
            now_times = cpu_times()
            minute = (time.monotonic() - t0) / 60
            s = sample(child.pid, port, listener, minute, prev, (times, now_times))
            times = now_times
            samples.append(s)
            sys.stderr.write(json.dumps(asdict(s)) + "\n")
            save(Path(args.out), args.name, samples, meta)
    finally:
        meta["stop"] = (
            stop_child(child, work) if child.poll() is None else {"exit_code": child.returncode}
        )
        meta["stopping_seen"] = listener.stopping.is_set()
        listener.close()
        for b in burners:
            b.kill()
            b.wait()
        meta["verdict"] = verdict(samples, args.warmup_min)
        save(Path(args.out), args.name, samples, meta)
    sys.stdout.write(json.dumps({k: meta[k] for k in ("verdict", "stop")}, indent=1) + "\n")
    return 0 if meta["verdict"].get("ok") else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--interval-s", type=float, default=60.0, help="sampling period")
    p.add_argument("--warmup-min", type=float, default=2.0, help="excluded from the targets")
    p.add_argument("--source", default=str(REPO / ".cache/samples/vtest.avi"))
    p.add_argument("--model", default="person")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--out", default=str(REPO / "docs/soak"))
    p.add_argument("--name", default="soak")
    p.add_argument("--burn", type=int, default=0, metavar="N", help="CPU burners beside it")
    p.add_argument(
        "--degrade",
        default="every-k",
        choices=("every-k", "off"),
        help="the degradation policy (off: p99 of the pipeline without load shedding)",
    )
    p.add_argument("--replot", metavar="JSON", help="redraw the plot of a finished run")
    args = p.parse_args(argv)
    if args.replot:
        return replot(Path(args.replot))
    return soak(args)


def replot(path: Path) -> int:
    doc = json.loads(path.read_text())
    samples = [Sample(**s) for s in doc["samples"]]
    draw(samples, path.with_suffix(".png"), f"{path.stem}: {doc['argv_summary']}")
    return 0


def draw(samples: list[Sample], path: Path, title: str) -> None:
    """RSS; fds and threads; p99; miss rate; CPU and load; the degradation mode."""
    xs = [s.minute for s in samples]
    cpu = [float("nan")] + [
        100 * (b.cpu_s - a.cpu_s) / max(1e-9, (b.minute - a.minute) * 60)
        for a, b in zip(samples, samples[1:], strict=False)
    ]
    every = [float(s.every) if s.every > 0 else float("nan") for s in samples]
    panels = [
        ("RSS MB", [([s.rss_kb / 1024 for s in samples], BLUE)]),
        ("open fds (blue), threads (red)",
         [([float(s.fds) for s in samples], BLUE), ([float(s.threads) for s in samples], RED)]),
        ("p99 ms, capture to result (last 4096 frames)", [([s.p99_ms for s in samples], GREEN)]),
        ("miss rate % per interval", [([s.miss_rate_pct for s in samples], RED)]),
        ("CPU % of one core (blue); host load x100 (grey)",
         [(cpu, BLUE), ([100 * s.load1 for s in samples], GREY)]),
    ]  # fmt: skip
    steal = [s.steal_pct if s.steal_pct >= 0 else float("nan") for s in samples]
    if any(np.isfinite(steal)):  # runs before steal sampling have none
        panels.append(
            ("host CPU steal % (time the hypervisor gave to other guests)", [(steal, GREY)])
        )
    if any(np.isfinite(every)):  # runs before --http sampling have no mode
        panels.append(("degradation: inference on every k-th frame", [(every, RED)]))
    plot(panels, xs, path, title)


if __name__ == "__main__":
    sys.exit(main())
