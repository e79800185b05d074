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

--model takes any manifest model, or several comma-separated (person,person-int8): their rounds
alternate and the bare invokes are compared to the first's. MediaPipe's own pipeline is run for
face and face-full only. --source VIDEO uses that clip's frames at their own size (default:
Megamind.avi resized to 640x480).

Then, for face and face-full, on the same frames decoded beforehand (full size),
``Detector.detect`` (preprocess + invoke + postprocess) against MediaPipe's own
``FaceDetection.process()`` and against our bare invoke, alternating in rounds: p50 and p99
ratios (targets: p50 <= 0.8x and p99 <= 0.9x MediaPipe; detect <= 1.1x the bare invoke at p50).
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


def make_frames(n: int, dest: Path, source: str | None = None) -> list[bytes]:
    cap = cv2.VideoCapture(source or str(sample_path("Megamind.avi")))
    if not cap.isOpened():
        raise SystemExit(f"--source {source}: cannot open it as a video")
    blobs = []
    while len(blobs) < n:
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        if source is None:
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


MEDIAPIPE_MODELS = ("face", "face-full")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="face",
                    help="manifest model(s), comma-separated (default face)")
    ap.add_argument("--source", help="a video file (default: Megamind.avi at 640x480)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="interpreter threads")
    ap.add_argument("--cv-threads", type=int, default=1,
                    help="OpenCV threads (cv2.setNumThreads), 1 as the pipeline runs it")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cv2.setNumThreads(a.cv_threads)
    names = [n for n in a.model.split(",") if n]
    dets = {n: load_detector(ModelConfig(name=n, threads=a.threads)) for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        blobs = make_frames(a.frames, Path(tmp), a.source)
        h, w = cv2.imdecode(np.frombuffer(blobs[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
        acc: dict[str, dict[str, list[float]]] = {n: {} for n in names}
        inv: dict[str, list[float]] = {n: [] for n in names}
        mp: dict[str, list[float]] = {n: [] for n in names}
        images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs]
        dec: dict[str, dict[str, list[float]]] = {n: {} for n in names if n in MEDIAPIPE_MODELS}
        for n, det in dets.items():
            ours(det, blobs[:20])  # warm-up
            if n in dec:
                detect_decoded(det, images[:20])
        for _ in range(a.rounds):
            for n, det in dets.items():
                for k, v in ours(det, blobs).items():
                    acc[n].setdefault(k, []).extend(v)
                inv[n] += bare(det, len(blobs))
                if n in MEDIAPIPE_MODELS:
                    mp[n] += mediapipe(Path(tmp), n)[5:]  # its first frames warm it up
                    d = dec[n]
                    d.setdefault("detect", []).extend(detect_decoded(det, images))
                    d.setdefault("mp", []).extend(mediapipe_decoded(Path(tmp), n)[5:])
                    d.setdefault("bare", []).extend(bare(det, len(blobs)))
    results = [summarise(n, acc[n], inv[n], mp[n], len(blobs), a) for n in names]
    for r in results:
        if r["model"] in dec:
            r["decoded"] = decoded_summary(dec[r["model"]])
    first = results[0]["bare_invoke_ms"][0]
    for r in results:
        r["bare_invoke_over_first"] = r["bare_invoke_ms"][0] / first
    if a.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
        return 0
    for r in results:
        report(r, f"{w}x{h}", a)
    if len(results) > 1:
        for r in results[1:]:
            print(f"bare invoke {r['model']} / {names[0]}: {r['bare_invoke_over_first']:.2f}")
    return 0


def summarise(name: str, acc: dict[str, list[float]], inv: list[float], mp: list[float],
              frames: int, a: argparse.Namespace) -> dict:
    parts = zip(acc["total"], acc["decode"], acc["infer"], strict=True)
    overhead = [t - d - i for t, d, i in parts]
    total_less_decode = [t - d for t, d in zip(acc["total"], acc["decode"], strict=True)]
    res = {
        "model": name, "frames": frames, "rounds": a.rounds, "threads": a.threads,
        "cv_threads": a.cv_threads, "source": a.source or "Megamind.avi 640x480",
        "bare_invoke_ms": pct(inv), **{f"{k}_ms": pct(v) for k, v in acc.items()},
        "overhead_excl_decode_ms": pct(overhead),
    }
    res["overhead_vs_bare_invoke_ms"] = pct(total_less_decode)[0] - res["bare_invoke_ms"][0]
    res["ratio_total_over_invoke"] = res["total_ms"][0] / res["bare_invoke_ms"][0]
    if mp:
        res["mediapipe_ms"] = pct(mp)
        res["ratio_ours_over_mediapipe"] = res["total_ms"][0] / res["mediapipe_ms"][0]
    return res


def decoded_summary(d: dict[str, list[float]]) -> dict:
    det, mp, inv = pct(d["detect"]), pct(d["mp"]), pct(d["bare"])
    return {
        "detect_ms": det, "mediapipe_process_ms": mp, "bare_invoke_ms": inv,
        "detect_over_mediapipe": [det[i] / mp[i] for i in (0, 1)],
        "detect_over_bare_invoke": [det[i] / inv[i] for i in (0, 1)],
        "loadavg": os.getloadavg(),
    }


def report(res: dict, size: str, a: argparse.Namespace) -> None:
    print(f"model {res['model']}, {res['frames']} frames {size} JPEG x {a.rounds} rounds, "
          f"{a.threads} interpreter thread(s), {a.cv_threads} OpenCV thread(s)")
    print(f"{'stage':<28}{'median ms':>10}{'p99 ms':>10}")
    for k in ("bare_invoke_ms", "decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms",
              "total_ms", "overhead_excl_decode_ms", "mediapipe_ms"):
        if k in res:
            print(f"{k[:-3]:<28}{res[k][0]:>10.3f}{res[k][1]:>10.3f}")
    print(f"ratio end-to-end / bare invoke   {res['ratio_total_over_invoke']:.2f}")
    if "mediapipe_ms" in res:
        print(f"ratio ours / MediaPipe           {res['ratio_ours_over_mediapipe']:.2f}  "
              "(target <= 0.75)")
    print(f"non-model overhead (excl decode) {res['overhead_excl_decode_ms'][0]:.3f} ms  "
          "(target <= 0.25; preprocess + postprocess, per frame)")
    print(f"  ... counting infer - bare      {res['overhead_vs_bare_invoke_ms']:.3f} ms  "
          "(median(total - decode) - median(bare invoke))")
    if "decoded" in res:
        d = res["decoded"]
        print(f"same decoded {size} frames (load average {d['loadavg'][0]:.2f}):")
        print(f"  Detector.detect p50 {d['detect_ms'][0]:.3f} p99 {d['detect_ms'][1]:.3f} ms; "
              f"MediaPipe process() p50 {d['mediapipe_process_ms'][0]:.3f} "
              f"p99 {d['mediapipe_process_ms'][1]:.3f} ms; bare invoke p50 "
              f"{d['bare_invoke_ms'][0]:.3f} p99 {d['bare_invoke_ms'][1]:.3f} ms")
        print(f"  ours / MediaPipe  p50 {d['detect_over_mediapipe'][0]:.2f} (target <= 0.8)  "
              f"p99 {d['detect_over_mediapipe'][1]:.2f} (target <= 0.9)")
        print(f"  detect / bare invoke  p50 {d['detect_over_bare_invoke'][0]:.2f} "
              f"(target <= 1.1)  p99 {d['detect_over_bare_invoke'][1]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
