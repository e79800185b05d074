"""Viewer benchmark: does watching the live view slow the pipeline?

One process, one model, one server; the same paced source run in phases (alternating over
``--rounds`` so machine noise hits all of them alike):

  none     no viewer
  one      one viewer reading /stream.mjpg as fast as it can
  ten      ten viewers, five of them reading at 1 KB/s (they are disconnected by the server's
           client timeout and reconnect, as the page does)
  chart    one page's latency chart: /api/series?stages=1 polled once a second, as the page
           polls it (the server folds the per-second series only while someone asks; here it
           stops 2 s after the phase, so the other phases run without it)

The viewers run in a child process (their reading must not take the pipeline's GIL) and
connect before the phase starts. Prints, per phase, the medians over the rounds of fps and
capture-to-result p50/p99 and their ratios to "none" (targets: fps >= 0.97x, p99 <= 1.1x),
the spread of p99 over the rounds (on a shared machine it is mostly other people's load), and
the server's direct costs: the worker's overlay stage (where ``publish`` runs) and the CPU
time of the server's own threads.

    .venv/bin/python scripts/bench_viewers.py [--seconds 10] [--rounds 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: (fast viewers, 1 KB/s viewers, chart pollers)
PHASES = {"none": (0, 0, 0), "one": (1, 0, 0), "ten": (5, 5, 0), "chart": (0, 0, 1)}
SLOW_BPS = 1024


# -- the viewers (child process) ------------------------------------------------------------
def viewer(addr: tuple[str, int], slow: bool, stop: threading.Event, out: dict[str, int]) -> None:
    """Read the stream until ``stop``; reconnect when the server hangs up (as the page does)."""
    while not stop.is_set():
        try:
            with socket.create_connection(addr, timeout=5) as s:
                s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n")
                out["connects"] += 1
                _read(s, slow, stop, out)
        except OSError:
            out["errors"] += 1
        stop.wait(1.0 if slow else 0.2)  # the page retries after a pause too


def _read(s: socket.socket, slow: bool, stop: threading.Event, out: dict[str, int]) -> None:
    s.settimeout(30)
    t0 = time.monotonic()
    while not stop.is_set():
        data = s.recv(SLOW_BPS if slow else 1 << 16)
        if not data:
            return
        out["bytes"] += len(data)
        out["parts"] += data.count(b"--edgeframe")
        if slow:  # a token bucket at SLOW_BPS: wait until the bytes read so far are due
            due = t0 + out["bytes"] / SLOW_BPS
            stop.wait(max(0.0, due - time.monotonic()))


def chart(addr: tuple[str, int], stop: threading.Event, out: dict[str, int]) -> None:
    """Poll /api/series like the page: everything once with the stages, then what is new."""
    import http.client

    since = ""
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection(*addr, timeout=5)
            conn.request("GET", "/api/series?stages=1" + since)
            body = json.loads(conn.getresponse().read())
            conn.close()
            out["parts"] += len(body["t"])
            out["bytes"] += len(json.dumps(body))
            if body["t"]:
                since = f"&since={body['t'][-1]}"
        except (OSError, ValueError, KeyError):
            out["errors"] += 1
        stop.wait(1.0)  # the page's poll period


def run_viewers(url: str, fast: int, slow: int, charts: int = 0) -> int:
    # the viewers stand in for phones and browsers elsewhere on the LAN: on this machine they
    # must not take the CPU from the pipeline they are measuring, so they run at nice 19
    os.nice(19)
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    stop = threading.Event()
    n = fast + slow + charts
    stats = [dict.fromkeys(("connects", "errors", "bytes", "parts"), 0) for _ in range(n)]
    threads = [
        threading.Thread(target=viewer, args=((host, int(port)), i >= fast, stop, stats[i]))
        for i in range(fast + slow)
    ] + [
        threading.Thread(target=chart, args=((host, int(port)), stop, stats[i]))
        for i in range(fast + slow, n)
    ]
    for t in threads:
        t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # the parent closes stdin at the end of the phase
    stop.set()
    for t in threads:
        t.join(5)
    out = {"fast": stats[:fast], "slow": stats[fast : fast + slow], "chart": stats[fast + slow :]}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


# -- the pipeline (parent) ------------------------------------------------------------------
class NullSink:
    """The miss log's interface, keeping nothing (the records still reach the server)."""

    lost = 0

    def write(self, record: object) -> bool:
        return True

    def flush(self, timeout_s: float = 1.0) -> bool:
        return True


def server_cpu_s() -> float:
    """CPU seconds used so far by the server's threads (serve-http, serve-render)."""
    total = 0
    for t in threading.enumerate():
        if t.name.startswith("serve") and t.native_id is not None:
            try:
                stat = Path(f"/proc/self/task/{t.native_id}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def phase(args: argparse.Namespace, server: Any, detector: Any, name: str) -> dict[str, Any]:
    from edge.outputs.records import MissLogOutput
    from edge.pipeline.runner import Pipeline, Settings
    from edge.pipeline.settings import PipelineConfig
    from edge.sources.base import SourceOptions
    from edge.sources.registry import open_source

    fast, slow, charts = PHASES[name]
    child = None
    if fast + slow + charts:
        child = subprocess.Popen(
            [sys.executable, __file__, "--viewers", server.url, str(fast), str(slow),
             str(charts)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    source = open_source(args.source, SourceOptions(fps=args.fps, loop=True))
    settings = Settings(PipelineConfig(frames=round(args.seconds * args.fps)))
    pipeline = Pipeline(source, detector, settings, [MissLogOutput(NullSink())])
    pipeline.add_output(server)
    cpu0 = server_cpu_s()
    summary = pipeline.run()
    cpu_ms_per_s = 1e3 * (server_cpu_s() - cpu0) / summary.elapsed_s
    viewers: dict[str, Any] = {}
    if child is not None:
        out, _ = child.communicate("", timeout=30)
        viewers = json.loads(out.strip().splitlines()[-1])
    lat = summary.latency_ms
    return {
        "phase": name, "fps": round(summary.fps, 3), "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"), "processed": summary.processed, "missed": summary.missed,
        "viewer_parts": [v["parts"] for v in viewers.get("fast", [])],
        "slow_connects": [v["connects"] for v in viewers.get("slow", [])],
        "chart_points": [v["parts"] for v in viewers.get("chart", [])],
        "overlay_p99_ms": summary.stages_ms.get("overlay", {}).get("p99"),
        "server_cpu_ms_per_s": round(cpu_ms_per_s, 1), "load": os.getloadavg()[0],
    }  # fmt: skip


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import edge.serve.app
    from edge.config import ModelConfig
    from edge.detector import load_detector
    from edge.serve import ServeConfig, Server

    edge.serve.app.SERIES_LINGER_S = 2.0  # the series stops soon after the chart phase
    detector = load_detector(ModelConfig(name=args.model))
    for _ in range(5):
        detector.bare_invoke_ns()
    # the ten "phones" share one address here: lift the per-address cap they would not share
    cfg = ServeConfig(http="127.0.0.1:0", max_clients=16, max_connections_per_client=80)
    server = Server(cfg)
    server.start()
    runs: list[dict[str, Any]] = []
    try:
        warm = argparse.Namespace(**{**vars(args), "seconds": 2.0})
        phase(warm, server, detector, "one")  # warm caches and the render path; not reported
        names = args.phases
        for i in range(args.rounds):
            k = i % len(names)
            for name in names[k:] + names[:k]:  # rotate, so order biases cancel
                runs.append(phase(args, server, detector, name))
                _progress(runs[-1])
    finally:
        server.stop()
    return summarise(runs)


def _progress(r: dict[str, Any]) -> None:
    sys.stderr.write(
        f"  {r['phase']:<5} fps {r['fps']:6.2f}  p50 {r['p50_ms']:6.2f} ms  "
        f"p99 {r['p99_ms']:6.2f} ms  overlay p99 {r['overlay_p99_ms']:.3f} ms  server cpu "
        f"{r['server_cpu_ms_per_s']:5.1f} ms/s  load {r['load']:.2f}  viewer frames "
        f"{r['viewer_parts']}  chart points {r['chart_points']}\n"
    )


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs, "phases": {}}
    for name in dict.fromkeys(r["phase"] for r in runs):
        rs = [r for r in runs if r["phase"] == name]
        out["phases"][name] = {
            "fps": round(statistics.median(r["fps"] for r in rs), 3),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 3),
            "missed": sum(r["missed"] for r in rs),
            "p99_range_ms": [min(r["p99_ms"] for r in rs), max(r["p99_ms"] for r in rs)],
            "overlay_p99_ms": statistics.median(r["overlay_p99_ms"] for r in rs),
            "server_cpu_ms_per_s": statistics.median(r["server_cpu_ms_per_s"] for r in rs),
        }
    base = out["phases"]["none"]
    for name in [n for n in out["phases"] if n != "none"]:
        p = out["phases"][name]
        p["fps_ratio"] = round(p["fps"] / base["fps"], 4)
        p["p99_ratio"] = round(p["p99_ms"] / base["p99_ms"], 4)
        p["ok"] = p["fps_ratio"] >= 0.97 and p["p99_ratio"] <= 1.1
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--viewers":
        return run_viewers(sys.argv[2], *(int(a) for a in sys.argv[3:6]))
    from edge.samples import sample_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=str(sample_path("Megamind.avi")))
    p.add_argument("--model", default="face")
    p.add_argument("--fps", type=float, default=30.0, help="pace of the source")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--phases", type=lambda v: v.split(","), default=list(PHASES),
                   help=f"comma-separated, from {','.join(PHASES)} (none always runs)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"--phases: unknown {', '.join(sorted(unknown))}; pick from {', '.join(PHASES)}")
    args.phases = ["none", *(n for n in PHASES if n in args.phases and n != "none")]
    result = bench(args)
    if args.json:
        print(json.dumps(result))
        return 0
    head = ("phase", "fps", "p50 ms", "p99 ms", "missed", "fps x", "p99 x", "p99 range",
            "ovl p99", "srv cpu")  # fmt: skip
    print(f"{head[0]:<6} " + " ".join(f"{h:>8}" for h in head[1:]))
    for name, ph in result["phases"].items():
        cells = (ph["fps"], ph["p50_ms"], ph["p99_ms"])
        ratios = (ph.get("fps_ratio", 1.0), ph.get("p99_ratio", 1.0))
        print(
            f"{name:<6} " + " ".join(f"{c:8.2f}" for c in cells) + f" {ph['missed']:8d} "
            + " ".join(f"{r:8.3f}" for r in ratios)
            + " {:>4.1f}-{:<4.1f}".format(*ph["p99_range_ms"])
            + f" {ph['overlay_p99_ms']:8.3f} {ph['server_cpu_ms_per_s']:5.1f}ms/s"
        )  # fmt: skip
    met = all(ph["ok"] for n, ph in result["phases"].items() if n != "none")
    print(f"targets: fps >= 0.97x and p99 <= 1.1x of 'none': {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
