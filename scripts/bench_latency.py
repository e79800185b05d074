"""Capture-to-result against the model's own speed, side by side in one run.

The real pipeline (``edge.pipeline.runner.Pipeline``: source, handoff, worker, watchdog, miss
log) on paced footage at --fps (60), for two sources:
  video  Megamind.avi through OpenCV's FFmpeg reader (decoded BGR frames)
  jpeg   the same frames as JPEG files read undecoded, as an MJPEG camera delivers them (the
         worker decodes, DCT-reduced)
and for each handoff variant:
  thread       a capture thread hands frames to the worker through LatestSlot, default timer
               slack (50 us): the pipeline before this change
  thread+slack the same with the threads' timer slack at 1 us
  pull+slack   the worker reads the source itself (PullSlot: no capture thread, no wake-up
               between a frame's arrival and its processing), slack 1 us: what runs now
Rounds alternate the variants (and a block of bare invokes, the "invoke floor", on the same
interpreter) so that machine noise hits them alike. Printed per source and variant: capture to
result (``total``) and ``wait`` p50/p99, and the excess over the bare invoke's p50/p99 measured
in the same rounds (targets: p50 + 0.35 ms, p99 + 1.0 ms; wait p50 <= 0.05, p99 <= 0.3 ms).
Also prints the load average, since the figures mean little on a busy host without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edge.config import ModelConfig
from edge.detector import load_detector
from edge.launch import apply_opencv_threads, warm_up
from edge.outputs.records import MissLogOutput
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.samples import sample_path
from edge.sources.base import SourceOptions
from edge.sources.registry import open_source
from edge.watchdog.misslog import MissLog

STAGES = ("total", "wait", "decode", "preprocess", "infer", "postprocess", "overlay", "publish")
VARIANTS = {  # name: (direct, timer slack ns or None for the default)
    "thread": (False, None),
    "thread+slack": (False, 1_000),
    "pull+slack": (True, 1_000),
}


def jpeg_folder(dest: Path, frames: int) -> Path:
    cap = cv2.VideoCapture(str(sample_path("Megamind.avi")))
    n = 0
    while n < frames:
        ok, f = cap.read()
        if not ok:
            break
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])
        (dest / f"{n:04d}.jpg").write_bytes(buf.tobytes())
        n += 1
    cap.release()
    return dest


def one_run(det, spec: str, fps: float, frames: int, variant: str, log: Path) -> dict:
    direct, slack = VARIANTS[variant]
    opts = SourceOptions(fps=fps, raw_jpeg=True)
    source = open_source(spec, opts)
    warm_up(det, source.peek(), 2)
    settings = Settings(PipelineConfig(frames=frames), DegradeConfig(policy="off"))
    try:
        with MissLog(str(log), 5 * 1024 * 1024, 0) as sink:
            pipe = Pipeline(source, det, settings, [MissLogOutput(sink)], direct=direct,
                            timer_slack_ns=slack)  # fmt: skip
            pipe.run()
    finally:
        source.close()
    return {k: samples_ms(pipe, k) for k in STAGES}


def samples_ms(pipe: Pipeline, stage: str) -> list[float]:
    ring = pipe.stats._rings.get(stage)  # the run's own samples (fewer than the ring holds)
    return [] if ring is None else (ring.samples() / 1e6).tolist()


def floor(det, n: int) -> list[float]:
    return [det.bare_invoke_ns() / 1e6 for _ in range(n)]


def pcts(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="face")
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--frames", type=int, default=250, help="frames per run (Megamind: 270)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--sources", default="video,jpeg")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    apply_opencv_threads(1)
    det = load_detector(ModelConfig(name=a.model, threads=1))
    variants = a.variants.split(",")
    load0 = os.getloadavg()
    res: dict[str, dict[str, dict[str, list[float]]]] = {}
    inv: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = {"video": str(sample_path("Megamind.avi")),
                 "jpeg": str(jpeg_folder(Path(tmp), a.frames))}  # fmt: skip
        log = Path(tmp) / "misses.jsonl"
        for _ in range(a.rounds):
            for src in a.sources.split(","):
                for v in variants:
                    got = one_run(det, specs[src], a.fps, a.frames, v, log)
                    slot = res.setdefault(src, {}).setdefault(v, {k: [] for k in STAGES})
                    for k in STAGES:
                        slot[k] += got[k]
                inv += floor(det, 200)
    load1 = os.getloadavg()
    f50, f99 = pcts(inv)
    out = {"model": a.model, "fps": a.fps, "rounds": a.rounds, "frames": a.frames,
           "loadavg_before": load0, "loadavg_after": load1,
           "invoke_floor_ms": {"p50": f50, "p99": f99}, "runs": {}}  # fmt: skip
    for src, by in res.items():
        for v, st in by.items():
            t50, t99 = pcts(st["total"])
            w50, w99 = pcts(st["wait"])
            out["runs"][f"{src}/{v}"] = {
                "total_ms": {"p50": t50, "p99": t99}, "wait_ms": {"p50": w50, "p99": w99},
                "over_invoke_ms": {"p50": t50 - f50, "p99": t99 - f99}, "frames": len(st["total"]),
                "stages_p50_ms": {k: pcts(st[k])[0] for k in STAGES[2:] if st[k]},
            }  # fmt: skip
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"model {a.model}, {a.fps:g} fps, {a.frames} frames x {a.rounds} rounds per variant; "
          f"load average {load0[0]:.2f} before, {load1[0]:.2f} after")  # fmt: skip
    print(f"bare invoke (same rounds)   p50 {f50:.3f}  p99 {f99:.3f} ms")
    print(f"{'source/variant':<22}{'total p50':>10}{'p99':>8}{'+inv p50':>10}{'+inv p99':>10}"
          f"{'wait p50':>10}{'p99':>8}")  # fmt: skip
    for name, r in out["runs"].items():
        print(f"{name:<22}{r['total_ms']['p50']:>10.3f}{r['total_ms']['p99']:>8.3f}"
              f"{r['over_invoke_ms']['p50']:>+10.3f}{r['over_invoke_ms']['p99']:>+10.3f}"
              f"{r['wait_ms']['p50']:>10.3f}{r['wait_ms']['p99']:>8.3f}")  # fmt: skip
    print("stage p50s (ms): " + "  ".join(STAGES[2:6]))
    for name, r in out["runs"].items():
        cells = "".join(f"{r['stages_p50_ms'].get(k, 0):>9.3f}" for k in STAGES[2:6])
        print(f"  {name:<20}{cells}")
    print("targets: +inv p50 <= +0.35, +inv p99 <= +1.0; wait p50 <= 0.05, p99 <= 0.3 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
