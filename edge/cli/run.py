"""``edge run``: the real-time pipeline, until stopped, ``--frames N`` or the end of a file.

Every flag has a config key (``--config FILE``, TOML) and flags override the file:

==================  ======================  ==================================================
flag                key                     meaning
==================  ======================  ==================================================
--source SPEC       source.spec             camera, stream, file, folder, ``demo``,
                                            ``demo:person``, ``auto`` (the default)
--model NAME|PATH   model.name              a manifest name or a .tflite (``face``)
--delegate D        model.delegate          cpu, edgetpu, ... or a fallback chain
--delegate-option   model.delegate_options  KEY=VALUE for the first non-CPU delegate
--threads N         model.threads           interpreter threads
--fps F             source.fps              camera rate to ask for / pace of a file
--no-pace           source.pace = false     read files as fast as possible (and process-all)
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
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from edge.config import Config, ModelConfig
from edge.errors import ConfigError
from edge.pipeline.settings import STALE_POLICIES
from edge.pipeline.summary import RunSummary
from edge.sources.auto import AUTO
from edge.state import default_miss_log, ensure_state_dir, state_dir

log = logging.getLogger(__name__)

#: the source when neither ``--source`` nor ``source.spec`` says: ``auto`` is the first camera
#: found (picamera2, then /dev/video0), else the built-in ``demo`` clip (edge.sources.auto)
DEFAULT_SOURCE = AUTO


def add_run_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The flags ``edge run`` and ``edge bench`` share; None means "the config's value"."""
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    p.add_argument(
        "--source",
        required=required,
        metavar="SPEC",
        help="0, /dev/videoN, picamera2[:N], gst:PIPELINE, rtsp://..., a video file, an image "
        "folder, demo (a clip with faces), demo:person (pedestrians)"
        + ("" if required else ", or auto (a camera if found, else demo; the default)"),
    )
    p.add_argument(
        "--model",
        required=required,
        metavar="NAME|PATH",
        help="a manifest name (`edge models list`) or a .tflite path"
        + ("" if required else f" (default: {ModelConfig().name})"),
    )
    p.add_argument("--delegate", metavar="D", help="cpu, edgetpu, ..., or a chain like edgetpu,cpu")
    p.add_argument(
        "--delegate-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the first non-CPU delegate, e.g. device=usb:0 (repeatable)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="interpreter threads")
    p.add_argument("--fps", type=float, metavar="F", help="camera rate / file pace")
    p.add_argument(
        "--no-pace",
        action="store_true",
        help="read files as fast as possible; every frame is processed (--policy process-all) "
        "unless --policy says otherwise",
    )
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
        description="Capture, detect and hold every frame to its deadline; log the misses. "
        f"Without flags: the first camera found (else the demo clip), model {ModelConfig().name}, "
        "miss log in the state directory ($STATE_DIRECTORY under systemd, else "
        "$XDG_STATE_HOME/edge-vision or ~/.local/state/edge-vision).",
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
        # a file read as fast as it can be has nothing live to keep up with: every frame
        "pipeline.policy": args.policy or ("process-all" if args.no_pace else None),
        "watchdog.miss_log": args.miss_log,
        "serve.http": getattr(args, "http", None),
        "serve.token": getattr(args, "http_token", None),
        "serve.allowed_hosts": _tuple(getattr(args, "http_allow_host", None)),
        "mqtt.url": getattr(args, "mqtt", None),
    }


def delegate_options(pairs: list[str]) -> dict[str, str]:
    """``--delegate-option KEY=VALUE`` flags as a mapping; one clear error for a bad one."""
    opts: dict[str, str] = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"--delegate-option {kv!r}: expected KEY=VALUE, e.g. device=usb:0")
        opts[k.strip()] = v
    return opts


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def load_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    cfg = Config.load(args.config)
    flags = {**overrides(args), **(extra or {})}
    opts = delegate_options(getattr(args, "delegate_option", None) or [])
    if opts:  # the flags add to (and override) the file's [model.delegate_options]
        flags["model.delegate_options"] = {**cfg.model.delegate_options, **opts}
    return cfg.merged(flags)


def check_before_sources(cfg: Config) -> None:
    """Refuse what can be refused before a camera is probed or a source opened: an unknown or
    unfetched model, a model file that is not TFLite (a mistyped ``--model`` should not first
    say "no camera found")."""
    from edge.models import resolve
    from edge.runtime.delegates import parse_chain
    from edge.runtime.interpreter import check_model_file

    _, path = resolve(cfg.model.name, cfg.model.dir)
    check_model_file(path)
    parse_chain(cfg.model.delegate)


def announce_state(cfg: Config, environ: Mapping[str, str]) -> None:
    """Say at start where this run writes (the miss log, in the state directory by default)."""
    if cfg.watchdog.miss_log:
        where = cfg.watchdog.miss_log
        log.info("miss log: %s", "stdout" if where == "-" else where)
        return
    try:
        d = ensure_state_dir(environ)
    except OSError as e:  # the run goes on: the miss log counts what it cannot write as lost
        log.warning(
            "state directory %s cannot be created (%s): misses will be counted as lost; "
            "set XDG_STATE_HOME or --miss-log PATH to a writable place",
            state_dir(environ),
            e.strerror or e,
        )
        return
    log.info("state directory: %s (miss log %s)", d, default_miss_log(environ))


def source_spec(args: argparse.Namespace, cfg: Config) -> str:
    """The spec to run; ``auto`` is resolved by the runner once the model has loaded, so a
    model or delegate that cannot load is said before any camera is probed."""
    return str(args.source or cfg.source.spec or DEFAULT_SOURCE)


def print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), allow_nan=False) + "\n")
    else:
        sys.stdout.write(summary.format() + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    from edge.launch import run as run_pipeline

    cfg = load_config(args)
    check_before_sources(cfg)
    announce_state(cfg, os.environ)
    summary = run_pipeline(cfg, source_spec(args, cfg), environ=os.environ)
    print_summary(summary, args.json)
    return 0
