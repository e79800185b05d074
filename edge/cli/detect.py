"""``edge detect IMAGE... --model NAME|PATH``: detections for still images, a table per image
on stdout, or one JSON line per image with ``--json``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import ModelConfig
from edge.detector import Detector, load_detector
from edge.errors import EdgeError, ImageError
from edge.frame import Detections, Image
from edge.overlay import draw
from edge.preprocess import to_bgr8


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="face", help="manifest name or path to a .tflite (face)")
    p.add_argument("--decoder", help="output family: mediapipe, ssd, yolo (detected if omitted)")
    p.add_argument("--labels", help="labels file, one name per line")
    p.add_argument("--threshold", type=float, help="score threshold (the model's default)")
    p.add_argument(
        "--delegate",
        default="cpu",
        help="cpu, edgetpu, armnn, vx, gpu, a .so, or a fallback chain like edgetpu,cpu",
    )
    p.add_argument(
        "--delegate-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for the delegate (repeatable)",
    )
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (1)")
    p.add_argument("--models-dir", help="where fetched models live (models/)")


def model_config(args: argparse.Namespace) -> ModelConfig:
    opts: dict[str, str] = {}
    for kv in args.delegate_option:
        k, sep, v = kv.partition("=")
        if not sep:
            from edge.errors import ConfigError

            raise ConfigError(f"--delegate-option {kv!r}: expected KEY=VALUE")
        opts[k] = v
    return ModelConfig(
        name=args.model,
        decoder=args.decoder,
        labels=args.labels,
        threshold=args.threshold,
        delegate=args.delegate,
        delegate_options=opts,
        threads=args.threads,
        dir=args.models_dir,
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in images",
        description="Run a model on still images and print, per image, its size and a table of"
        " what was found (label, score, box); with --json, one JSON line per image instead.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument("--out", help="write annotated copies into this directory")
    p.set_defaults(func=run)


def read_image(path: str) -> Image:
    """Any image OpenCV can read, as BGR uint8; one clear ImageError otherwise."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot be read: {e.strerror}") from None
    if not data:
        raise ImageError(f"{path}: the file is empty")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker); re-copy the file")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: not an image OpenCV can decode (or truncated)")
    return to_bgr8(img)


def detect_one(det: Detector, path: str) -> tuple[dict[str, Any], Image, Detections]:
    t0 = time.perf_counter_ns()
    img = read_image(path)
    times: dict[str, int] = {"decode": time.perf_counter_ns() - t0}
    d = det.detect(img, times)
    rec = {
        "source": path,
        "width": int(img.shape[1]),
        "height": int(img.shape[0]),
        "detections": d.to_dicts(),
        "timings_ms": {k: round(v / 1e6, 3) for k, v in times.items()},
    }
    return rec, img, d


def print_table(rec: dict[str, Any]) -> None:
    out = sys.stdout
    t = rec["timings_ms"]
    out.write(
        f"{rec['source']}  {rec['width']}x{rec['height']}  {len(rec['detections'])} found  "
        f"(infer {t['infer']:.1f} ms)\n"
    )
    for d in rec["detections"]:
        box = ", ".join(f"{v:.0f}" for v in d["box"])
        out.write(f"  {d['label']:<10} {d['score']:.2f}  [{box}]\n")


def run(args: argparse.Namespace) -> int:
    det = load_detector(model_config(args))
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in args.images:
        try:
            rec, img, d = detect_one(det, path)
        except EdgeError as e:
            if len(args.images) == 1:
                raise
            print(f"edge detect: error: {e}", file=sys.stderr)  # noqa: T201
            failed += 1
            continue
        if args.json:
            sys.stdout.write(json.dumps(rec) + "\n")
        else:
            print_table(rec)
        if out_dir:
            dst = out_dir / (Path(path).stem + ".jpg")
            cv2.imwrite(str(dst), draw(img.copy(), d))
        sys.stdout.flush()
    return 1 if failed else 0
