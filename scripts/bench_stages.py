"""Stage benchmark: the same 640x480 MJPEG frames through (a) the bare model invoke, (b) our path
stage by stage, (c) MediaPipe's own pipeline (decode + FaceDetection.process, in .venv-ref).

Runs the three in alternating rounds in one run, so machine noise hits all of them alike, and
prints medians, p99 and the ratios the project's targets are stated in:
  overhead = our per-frame time - JPEG decode - invoke   (target <= 0.25 ms median)
  ours / MediaPipe, JPEG bytes to detections             (target <= 0.75)
The overhead is printed two ways: per frame, total - decode - our infer stage (= preprocess +
postprocess); and median(total - decode) - median(bare invoke), which also charges us for an
infer stage slower than the bare invoke (caches our stages evicted).
OpenCV runs on --cv-threads threads (default 1, as the pipeline runs it).

Then, on the same frames decoded beforehand (full size), ``Detector.detect`` (preprocess +
invoke + postprocess) against MediaPipe's own ``FaceDetection.process()`` and against our bare
invoke, alternating in rounds: p50 and p99 ratios (targets: p50 <= 0.8x and p99 <= 0.9x
MediaPipe; detect <= 1.1x the bare invoke at p50).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge.config import ModelConfig
from edge.detector import load_detector
from edge.frame import Frame
from edge.samples import sample_path

ROOT = Path(__file__).resolve().parent.parent


def make_frames(n: int, dest: Path) -> list[bytes]:
    cap = cv2.VideoCapture(str(sample_path("Megamind.avi")))
    blobs = []
    while len(blobs) < n:
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        f = cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])
        blobs.append(buf.tobytes())
        (dest / f"{len(blobs):04d}.jpg").write_bytes(blobs[-1])
    return blobs


def ours(det, blobs: list[bytes]) -> dict[str, list[float]]:
    st: dict[str, list[float]] = {k: [] for k in
                                  ("decode", "preprocess", "infer", "postprocess", "total")}
    clock = time.perf_counter_ns
    for i, b in enumerate(blobs):
        frame = Frame(i, clock(), jpeg=b)
        t0 = clock()
        img, f = det.decode(frame)
        t1 = clock()
        t = det.preprocess(img)
        t2 = clock()
        det.infer()
        t3 = clock()
        det.postprocess(t, f)
        t4 = clock()
        for k, a, z in (("decode", t0, t1), ("preprocess", t1, t2), ("infer", t2, t3),
                        ("postprocess", t3, t4), ("total", t0, t4)):
            st[k].append((z - a) / 1e6)
    return st


def detect_decoded(det, images: list[np.ndarray]) -> list[float]:
    out = []
    for img in images:
        t0 = time.perf_counter_ns()
        det.detect(img)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def mediapipe_decoded(frames_dir: Path, model: str) -> list[float]:
    py = ROOT / ".venv-ref/bin/python"
    req = {"model": model, "bench_decoded": str(frames_dir), "repeat": 1}
    r = subprocess.run([str(py), str(ROOT / "scripts/mediapipe_ref.py")], input=json.dumps(req),
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["per_frame_ms"]  # type: ignore[no-any-return]


def bare(det, n: int) -> list[float]:
    return [det.bare_invoke_ns() / 1e6 for _ in range(n)]


def mediapipe(frames_dir: Path, model: str) -> list[float]:
    py = ROOT / ".venv-ref/bin/python"
    req = {"model": model, "bench_jpegs": str(frames_dir), "repeat": 1}
    r = subprocess.run([str(py), str(ROOT / "scripts/mediapipe_ref.py")], input=json.dumps(req),
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["per_frame_ms"]  # type: ignore[no-any-return]


def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs)
    return float(np.median(a)), float(np.percentile(a, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="face", choices=["face", "face-full"])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="interpreter threads")
    ap.add_argument("--cv-threads", type=int, default=1,
                    help="OpenCV threads (cv2.setNumThreads), 1 as the pipeline runs it")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cv2.setNumThreads(a.cv_threads)
    det = load_detector(ModelConfig(name=a.model, threads=a.threads))
    with tempfile.TemporaryDirectory() as tmp:
        blobs = make_frames(a.frames, Path(tmp))
        ours(det, blobs[:20])  # warm-up
        acc: dict[str, list[float]] = {}
        inv: list[float] = []
        mp: list[float] = []
        images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs]
        dec: list[float] = []
        mp_dec: list[float] = []
        inv_dec: list[float] = []
        detect_decoded(det, images[:20])
        for _ in range(a.rounds):
            for k, v in ours(det, blobs).items():
                acc.setdefault(k, []).extend(v)
            inv += bare(det, len(blobs))
            mp += mediapipe(Path(tmp), a.model)[5:]  # MediaPipe's first frames warm it up
            dec += detect_decoded(det, images)
            mp_dec += mediapipe_decoded(Path(tmp), a.model)[5:]
            inv_dec += bare(det, len(blobs))
    parts = zip(acc["total"], acc["decode"], acc["infer"], strict=True)
    overhead = [t - d - i for t, d, i in parts]
    total_less_decode = [t - d for t, d in zip(acc["total"], acc["decode"], strict=True)]
    res = {
        "model": a.model, "frames": len(blobs), "rounds": a.rounds, "threads": a.threads,
        "cv_threads": a.cv_threads,
        "bare_invoke_ms": pct(inv), **{f"{k}_ms": pct(v) for k, v in acc.items()},
        "overhead_excl_decode_ms": pct(overhead), "mediapipe_ms": pct(mp),
    }
    res["overhead_vs_bare_invoke_ms"] = pct(total_less_decode)[0] - res["bare_invoke_ms"][0]
    res["ratio_total_over_invoke"] = res["total_ms"][0] / res["bare_invoke_ms"][0]
    res["ratio_ours_over_mediapipe"] = res["total_ms"][0] / res["mediapipe_ms"][0]
    res["decoded"] = {
        "detect_ms": pct(dec), "mediapipe_process_ms": pct(mp_dec), "bare_invoke_ms": pct(inv_dec),
        "detect_over_mediapipe": [pct(dec)[i] / pct(mp_dec)[i] for i in (0, 1)],
        "detect_over_bare_invoke": [pct(dec)[i] / pct(inv_dec)[i] for i in (0, 1)],
        "loadavg": os.getloadavg(),
    }  # fmt: skip
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"model {a.model}, {len(blobs)} frames 640x480 JPEG x {a.rounds} rounds, "
          f"{a.threads} interpreter thread(s), {a.cv_threads} OpenCV thread(s)")
    print(f"{'stage':<28}{'median ms':>10}{'p99 ms':>10}")
    for k in ("bare_invoke_ms", "decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms",
              "total_ms", "overhead_excl_decode_ms", "mediapipe_ms"):
        print(f"{k[:-3]:<28}{res[k][0]:>10.3f}{res[k][1]:>10.3f}")
    print(f"ratio end-to-end / bare invoke   {res['ratio_total_over_invoke']:.2f}")
    print(f"ratio ours / MediaPipe           {res['ratio_ours_over_mediapipe']:.2f}  "
          "(target <= 0.75)")
    print(f"non-model overhead (excl decode) {res['overhead_excl_decode_ms'][0]:.3f} ms  "
          "(target <= 0.25; preprocess + postprocess, per frame)")
    print(f"  ... counting infer - bare      {res['overhead_vs_bare_invoke_ms']:.3f} ms  "
          "(median(total - decode) - median(bare invoke))")
    d = res["decoded"]
    print(f"same decoded 640x480 frames (load average {d['loadavg'][0]:.2f}):")
    print(f"  Detector.detect p50 {d['detect_ms'][0]:.3f} p99 {d['detect_ms'][1]:.3f} ms; "
          f"MediaPipe process() p50 {d['mediapipe_process_ms'][0]:.3f} "
          f"p99 {d['mediapipe_process_ms'][1]:.3f} ms; bare invoke p50 "
          f"{d['bare_invoke_ms'][0]:.3f} p99 {d['bare_invoke_ms'][1]:.3f} ms")
    print(f"  ours / MediaPipe  p50 {d['detect_over_mediapipe'][0]:.2f} (target <= 0.8)  "
          f"p99 {d['detect_over_mediapipe'][1]:.2f} (target <= 0.9)")
    print(f"  detect / bare invoke  p50 {d['detect_over_bare_invoke'][0]:.2f} (target <= 1.1)  "
          f"p99 {d['detect_over_bare_invoke'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
