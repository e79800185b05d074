"""Reference runs of MediaPipe's own face detector, for parity tests and the benchmark.

Runs in its own venv (.venv-ref: mediapipe==0.10.14 needs numpy<2 and protobuf<5, which the
main venv does not have). Reads a JSON request on stdin, prints a JSON answer on stdout.

Request: {"model": "face"|"face-full", "images": [PATH...], "threshold": 0.5}
  -> {"results": [{"source", "width", "height", "detections": [{"score", "box", "keypoints"}]}]}
Request: {"model": ..., "bench_jpegs": DIR, "repeat": N}   (every *.jpg in DIR, in name order)
  -> {"per_frame_ms": [...]}  decode (cv2.imdecode + BGR->RGB) + FaceDetection.process()
Request: {"model": ..., "bench_decoded": DIR, "repeat": N}
  -> {"per_frame_ms": [...]}  FaceDetection.process() alone, on frames decoded beforehand
"""

import json
import sys
import time
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np


def detector(model: str, threshold: float):
    sel = {"face": 0, "face-full": 1}[model]
    return mp.solutions.face_detection.FaceDetection(
        model_selection=sel, min_detection_confidence=threshold
    )


def to_record(path, rgb, result):
    h, w = rgb.shape[:2]
    dets = []
    for d in result.detections or []:
        bb = d.location_data.relative_bounding_box
        dets.append({
            "score": float(d.score[0]),
            "box": [bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h],
            "keypoints": [[k.x * w, k.y * h] for k in d.location_data.relative_keypoints],
        })
    return {"source": path, "width": w, "height": h, "detections": dets}


def main():
    req = json.load(sys.stdin)
    fd = detector(req.get("model", "face"), float(req.get("threshold", 0.5)))
    if "images" in req:
        out = []
        for p in req["images"]:
            bgr = cv2.imread(p, cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            out.append(to_record(p, rgb, fd.process(rgb)))
        json.dump({"results": out}, sys.stdout)
        return
    if "bench_decoded" in req:
        rgbs = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                for p in sorted(Path(req["bench_decoded"]).glob("*.jpg"))]
        times = []
        for _ in range(int(req.get("repeat", 1))):
            for rgb in rgbs:
                t0 = time.perf_counter_ns()
                fd.process(rgb)
                times.append((time.perf_counter_ns() - t0) / 1e6)
        json.dump({"per_frame_ms": times}, sys.stdout)
        return
    blobs = [np.frombuffer(p.read_bytes(), np.uint8)
             for p in sorted(Path(req["bench_jpegs"]).glob("*.jpg"))]
    times = []
    for _ in range(int(req.get("repeat", 1))):
        for b in blobs:
            t0 = time.perf_counter_ns()
            rgb = cv2.cvtColor(cv2.imdecode(b, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            fd.process(rgb)
            times.append((time.perf_counter_ns() - t0) / 1e6)
    json.dump({"per_frame_ms": times}, sys.stdout)


if __name__ == "__main__":
    main()
