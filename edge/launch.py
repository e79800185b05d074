"""Assembling one run from a config: the only module that knows every part.

:func:`run` builds the source (from the spec, or the camera :func:`~edge.sources.auto.find_camera`
finds), the detector, the :class:`~edge.pipeline.runner.Pipeline` with the thermal reader, and
the outputs the config asks for (the miss log, systemd's notifier, the HTTP viewer, MQTT),
runs it until stopped or done and returns the summary. The pipeline itself imports neither
the viewer nor the outputs: they are attached to it here, from the outside, so adding an
output means editing this module, not the pipeline package.

    summary = run(load_config(path), "vtest.avi", environ=os.environ)
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from edge.clock import MONOTONIC
from edge.config import ModelConfig
from edge.outputs.mqtt_config import MqttConfig
from edge.outputs.records import MissLogOutput
from edge.outputs.systemd import SystemdOutput
from edge.pipeline.output import Output
from edge.pipeline.runner import Pipeline, Settings, stop_on_signals
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.pipeline.summary import RunSummary
from edge.serve.config import ServeConfig
from edge.sources.base import SourceOptions
from edge.state import default_miss_log
from edge.watchdog.misslog import MissLog
from edge.watchdog.notify import Notifier
from edge.watchdog.settings import WatchdogConfig
from edge.watchdog.thermal import ThermalMonitor


class RunConfig(Protocol):
    """The sections of :class:`edge.config.Config` a run reads."""

    @property
    def model(self) -> ModelConfig: ...

    @property
    def source(self) -> SourceOptions: ...

    @property
    def pipeline(self) -> PipelineConfig: ...

    @property
    def degrade(self) -> DegradeConfig: ...

    @property
    def watchdog(self) -> WatchdogConfig: ...

    @property
    def serve(self) -> ServeConfig: ...

    @property
    def mqtt(self) -> MqttConfig: ...


def warm_up(detector: Any, frame: Any | None, invokes: int = 2) -> bool:
    """Run the per-frame path before the clock starts, so that frame 0 pays for nothing:
    ``invokes`` bare invokes (a first invoke allocates and, with a delegate, compiles), then
    twice on ``frame`` (the source's own first frame, at its size and kind: JPEG bytes or an
    image) decode, preprocess (its plan and buffers for that size), invoke, postprocess and
    the overlay's drawing. True when the frame path was warmed (``frame`` given)."""
    for _ in range(invokes):
        detector.bare_invoke_ns()
    if frame is None:
        return False
    from edge.errors import ImageError
    from edge.overlay import draw

    for _ in range(2):
        try:
            image, reduction = detector.decode(frame)
        except ImageError:  # a bad first frame: the worker will count it; warm what we can
            return False
        transform = detector.preprocess(image)
        detector.infer()
        dets = detector.postprocess(transform, reduction)
        draw(image.copy(), dets)
    return True


def apply_opencv_threads(n: int) -> None:
    """Size OpenCV's thread pool for the image ops (process-wide; 0 keeps OpenCV's default)."""
    if n > 0:
        import cv2

        cv2.setNumThreads(n)


def invoke_floor(detector: Any, n: int, budget_ms: float | None = None) -> dict[str, float]:
    """``n`` bare ``invoke`` calls on the current input, back to back: {p50, p99, min, max,
    count} in ms, and with ``budget_ms`` ``over_budget``: how many of them alone took longer
    than the frame budget (what no pipeline can make up for)."""
    samples = np.array([detector.bare_invoke_ns() for _ in range(n)], np.float64) / 1e6
    p50, p99 = np.percentile(samples, [50, 99])
    out = {
        "p50": round(float(p50), 3),
        "p99": round(float(p99), 3),
        "min": round(float(samples.min()), 3),
        "max": round(float(samples.max()), 3),
        "count": float(n),
    }
    if budget_ms is not None:
        out["over_budget"] = float(np.count_nonzero(samples > budget_ms))
    return out


def run(
    cfg: RunConfig,
    spec: str,
    *,
    environ: Mapping[str, str],
    floor_invokes: int = 0,
    warmup_invokes: int = 2,
) -> RunSummary:
    """Load the model, open ``spec``, run until stopped or done; the summary.

    ``environ`` is the process environment (``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC``,
    ``$STATE_DIRECTORY``); ``floor_invokes`` > 0 measures the bare-invoke floor after the run
    (``edge bench``). Before the clock starts (and so before READY=1, which follows the first
    frame), the whole per-frame path is warmed on the source's first frame (:func:`warm_up`,
    ``warmup_invokes`` bare invokes first): a file source lends it without giving it away
    (``peek``); a live camera has no first frame to lend before it runs, and warms the invoke
    only (its first frame plans the preprocess for the camera's size).
    """
    from edge.detector import load_detector  # the runtime loads here, not at import
    from edge.outputs.mqtt import MqttOutput
    from edge.serve.server import Server

    # whatever can refuse its config comes first: one error line before the model loads
    from edge.sources.auto import AUTO, find_camera
    from edge.sources.registry import open_source, parse_spec

    if spec != AUTO:
        parse_spec(spec)
    apply_opencv_threads(cfg.pipeline.opencv_threads)
    outputs: list[Output] = []  # the viewer first: it shows the others' figures
    if cfg.serve.http:
        outputs.append(Server(cfg.serve, delegate=cfg.model.delegate))
    if cfg.mqtt.enabled:
        outputs.append(MqttOutput(cfg.mqtt, environ=environ))
    detector = load_detector(cfg.model)
    if spec == AUTO:  # probed only now: a model or delegate that cannot load is said first
        spec = find_camera()
    path = cfg.watchdog.miss_log or str(default_miss_log(environ))
    notifier = Notifier.from_env(environ)
    source = open_source(spec, cfg.source, MONOTONIC)
    try:
        warm_up(detector, source.peek(), warmup_invokes)
    except Exception:
        source.close()
        raise
    settings = Settings(cfg.pipeline, cfg.degrade, cfg.watchdog)
    try:
        with MissLog(path, cfg.watchdog.max_bytes, cfg.watchdog.backups) as sink:
            records = [MissLogOutput(sink, path), SystemdOutput(notifier)]
            pipeline = Pipeline(source, detector, settings, records, thermal=ThermalMonitor().read)
            for o in outputs:
                pipeline.add_output(o)
            with contextlib.ExitStack() as running:
                for o in outputs:  # stopped in reverse order, whatever happens
                    o.start()
                    running.callback(o.stop)
                with stop_on_signals(pipeline):
                    summary = pipeline.run()
    finally:
        source.close()
        notifier.close()
    if floor_invokes > 0:
        summary = summary.with_floor(invoke_floor(detector, floor_invokes, summary.budget_ms))
    return summary


__all__ = ["RunConfig", "apply_opencv_threads", "invoke_floor", "run", "warm_up"]
