"""``edge run``: the real-time pipeline, until stopped, ``--frames N`` or the end of a file.

Every flag has a config key (``--config FILE``, TOML) and flags override the file:

==================  ======================  ==================================================
flag                key                     meaning
==================  ======================  ==================================================
--source SPEC       source.spec             camera, stream, file, folder, ``demo``, ``auto``
--model NAME|PATH   model.name              a manifest name or a .tflite
--delegate D        model.delegate          cpu, edgetpu, ... or a fallback chain
--threads N         model.threads           interpreter threads
--fps F             source.fps              camera rate to ask for / pace of a file
--no-pace           source.pace = false     read files as fast as possible
--loop              source.loop = true      start files and folders again at the end
--budget-ms B       pipeline.budget_ms      frame deadline after capture (1000 / fps)
--frames N          pipeline.frames         stop after N captured frames
--policy P          pipeline.policy         skip-stale (default) or process-all (offline)
--miss-log PATH     watchdog.miss_log       the JSON-lines miss log (``-``: stdout)
--http HOST:PORT    serve.http              the live page, MJPEG stream, JSON API, /metrics
--http-token T      serve.token             a token every endpoint but /healthz requires
--http-allow-host   serve.allowed_hosts     NAME: a Host name the server answers to (repeatable)
--mqtt URL          mqtt.url                detection events and summaries to a broker
==================  ======================  ==================================================

SIGTERM and SIGINT stop the run within about a second; the exit summary goes to stdout (human,
or one JSON object with ``--json``) and the exit code is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from edge.config import Config
from edge.pipeline.settings import STALE_POLICIES
from edge.pipeline.summary import RunSummary

#: the source when neither ``--source`` nor ``source.spec`` says: ``auto`` is the first camera
#: found (picamera2, then /dev/video0), else the built-in ``demo`` clip
DEFAULT_SOURCE = "auto"


def add_run_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The flags ``edge run`` and ``edge bench`` share; None means "the config's value"."""
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    p.add_argument(
        "--source",
        required=required,
        metavar="SPEC",
        help="0, /dev/videoN, picamera2[:N], gst:PIPELINE, rtsp://..., a video file, "
        "an image folder, demo, or auto (a camera if found, else demo; default)",
    )
    p.add_argument("--model", required=required, metavar="NAME|PATH",
                   help="manifest name or .tflite path")  # fmt: skip
    p.add_argument("--delegate", metavar="D", help="cpu, edgetpu, ..., or a chain like edgetpu,cpu")
    p.add_argument("--threads", type=int, metavar="N", help="interpreter threads")
    p.add_argument("--fps", type=float, metavar="F", help="camera rate / file pace")
    p.add_argument("--no-pace", action="store_true", help="read files as fast as possible")
    p.add_argument("--loop", action="store_true", help="start files and folders again at the end")
    p.add_argument("--budget-ms", type=float, metavar="B", help="frame deadline (1000/fps)")
    p.add_argument("--frames", type=int, metavar="N", help="stop after N captured frames")
    p.add_argument("--policy", choices=STALE_POLICIES, help="late frames: skip-stale (default) "
                   "or process-all (offline)")  # fmt: skip
    p.add_argument("--miss-log", metavar="PATH", help="miss log file (- for stdout)")
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the live page, stream and /metrics "
        "(127.0.0.1:8080 for this machine only; 0.0.0.0:8080 for the LAN)",
    )
    p.add_argument(
        "--http-token",
        metavar="TOKEN",
        help="require this token on every endpoint "
        "but /healthz (header Authorization: Bearer TOKEN, or ?token=TOKEN)",
    )
    p.add_argument(
        "--http-allow-host",
        action="append",
        metavar="NAME",
        help="a Host name to answer to besides IP addresses, localhost and this machine's "
        "name (cam.example.com, .example.com for a domain, * for any); repeatable",
    )
    p.add_argument(
        "--mqtt",
        metavar="URL",
        help="mqtt://HOST[:PORT] or mqtts://...: events, summaries and status to a broker",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the real-time pipeline",
        description="Capture, detect and hold every frame to its deadline; log the misses.",
    )
    add_run_args(p)
    p.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``{"section.key": value}`` for the flags given (None: not given, keep the file's)."""
    return {
        "model.name": args.model,
        "model.delegate": args.delegate,
        "model.threads": args.threads,
        "source.fps": args.fps,
        "source.pace": False if args.no_pace else None,
        "source.loop": True if getattr(args, "loop", False) else None,
        "pipeline.budget_ms": args.budget_ms,
        "pipeline.frames": args.frames,
        "pipeline.policy": args.policy,
        "watchdog.miss_log": args.miss_log,
        "serve.http": getattr(args, "http", None),
        "serve.token": getattr(args, "http_token", None),
        "serve.allowed_hosts": _tuple(getattr(args, "http_allow_host", None)),
        "mqtt.url": getattr(args, "mqtt", None),
    }


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def load_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    return Config.load(args.config).merged({**overrides(args), **(extra or {})})


def source_spec(args: argparse.Namespace, cfg: Config) -> str:
    spec = str(args.source or cfg.source.spec or DEFAULT_SOURCE)
    return find_camera() if spec == "auto" else spec


def find_camera() -> str:
    """``auto``: a libcamera camera through picamera2, else a V4L2 device that delivers a frame,
    else the built-in ``demo`` source (said in the log, so nobody wonders where the video is)."""
    import importlib.util
    import logging
    from pathlib import Path

    log = logging.getLogger(__name__)
    if importlib.util.find_spec("picamera2") is not None:
        try:
            from picamera2 import Picamera2

            if Picamera2.global_camera_info():
                log.info("source auto: using the camera module (picamera2)")
                return "picamera2"
        except Exception as e:  # noqa: BLE001 - any libcamera trouble means "no camera here"
            log.info("source auto: picamera2 present but unusable (%s)", e)
    for dev in sorted(Path("/dev").glob("video[0-9]*")):
        import cv2

        cap = cv2.VideoCapture(str(dev), cv2.CAP_V4L2)
        try:
            if cap.isOpened() and cap.read()[0]:
                log.info("source auto: using %s", dev)
                return str(dev)
        finally:
            cap.release()
    log.warning("source auto: no camera found; using the built-in demo clip (--source demo)")
    return "demo"


def print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), allow_nan=False) + "\n")
    else:
        sys.stdout.write(summary.format() + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    from edge.pipeline.runner import run as run_pipeline

    cfg = load_config(args)
    summary = run_pipeline(cfg, source_spec(args, cfg), environ=os.environ)
    print_summary(summary, args.json)
    return 0
