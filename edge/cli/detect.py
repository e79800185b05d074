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

from edge.config import ModelConfig
from edge.detector import Detector, load_detector
from edge.errors import EdgeError, ImageError
from edge.frame import Detections, Image
from edge.imagefile import decode_bounded, image_size, read_image_file, scaled
from edge.overlay import draw
from edge.preprocess import to_bgr8
from edge.sources.base import SourceOptions


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
    return read_image_scaled(path)[0]


def read_image_scaled(path: str) -> tuple[Image, int, tuple[int, int]]:
    """(BGR uint8 image, how many times smaller it was decoded, the file's own width and
    height): a regular file of bounded size, its header's size checked before decoding
    (see :mod:`edge.imagefile`)."""
    limits = SourceOptions()  # the [source] defaults: `edge detect` reads no config
    data = read_image_file(path, limits.max_image_bytes)
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker); re-copy the file")
    img, factor = decode_bounded(data, path, limits.max_image_pixels, cv2.IMREAD_UNCHANGED)
    h, w = img.shape[:2]
    head = image_size(data) if factor > 1 else None
    return to_bgr8(img), factor, (head.width, head.height) if head else (w, h)


def detect_one(det: Detector, path: str) -> tuple[dict[str, Any], Image, Detections]:
    t0 = time.perf_counter_ns()
    img, factor, (width, height) = read_image_scaled(path)
    times: dict[str, int] = {"decode": time.perf_counter_ns() - t0}
    d = det.detect(img, times)
    shown = scaled(d, factor)  # in the file's own pixels, as if decoded at full size
    rec = {
        "source": path,
        "width": width,
        "height": height,
        "detections": shown.to_dicts(),
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
