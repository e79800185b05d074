"""The pipeline's config sections: ``[pipeline]`` and ``[degrade]`` (``[watchdog]`` is
:mod:`edge.watchdog.settings`).

Frozen, validated at construction (so a bad value in a TOML file or on the command line is a
:class:`~edge.errors.ConfigError` naming the key and the accepted range). Nothing here reads
the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import ConfigError
from edge.validate import check_choice, check_range

#: what the worker does with a frame already past its deadline when it picks it up
#: (``skip-stale``: drop it and count a miss with cause ``queue``; ``process-all``: process it
#: anyway, and the capture thread waits for the worker instead of overwriting frames: for
#: offline runs on files, where every frame matters and nothing is live)
STALE_POLICIES: tuple[str, ...] = ("skip-stale", "process-all")

#: how the pipeline sheds load after repeated misses (``every-k``: run inference on every k-th
#: frame and reuse the last boxes, marked stale, in between; ``off``: never shed)
DEGRADE_POLICIES: tuple[str, ...] = ("every-k", "off")


@dataclass(frozen=True)
class PipelineConfig:
    """``[pipeline]``: the frame deadline and what to do with late frames.

    budget_ms  the frame deadline after capture; ``1000 / fps`` when unset, where fps is the
               source's (a paced file's own rate, a camera's negotiated rate, or ``--fps``)
    policy     one of :data:`STALE_POLICIES`
    frames     stop after this many captured frames (None: until stopped or end of stream)
    gc         GC discipline: freeze start-up objects, defer gen-2 collection into the slack
               between frames (see :mod:`edge.pipeline.gcslack`)
    opencv_threads
               OpenCV's own thread pool for the image ops (warp, resize, colour): 1 runs them
               on the calling thread; 0 leaves OpenCV's default (one per core). The default is 1:
               on 2 cores the pool's workers, spinning after each small warp, took the core the
               interpreter needed (misses x4 on vtest.avi with the person model, docs/TUNING.md)
    """

    budget_ms: float | None = None
    policy: str = "skip-stale"
    frames: int | None = None
    gc: bool = True
    opencv_threads: int = 1

    def __post_init__(self) -> None:
        if self.budget_ms is not None:
            check_range("pipeline.budget_ms", self.budget_ms, 0.1, 60_000.0)
        check_choice("pipeline.policy", self.policy, STALE_POLICIES)
        if self.frames is not None:
            check_range("pipeline.frames", self.frames, 1, None)
        check_range("pipeline.opencv_threads", self.opencv_threads, 0, 256)


@dataclass(frozen=True)
class DegradeConfig:
    """``[degrade]``: shed load after repeated misses, step back up with hysteresis.

    policy          one of :data:`DEGRADE_POLICIES`
    after_misses    consecutive misses that halve the inference rate (k doubles)
    max_every       the largest k (inference on every k-th frame at most)
    recover_ratio   step back up (k halves) when the p95 capture-to-result latency of the last
                    ``recover_frames`` inferred frames is below this fraction of the budget
                    and none of them missed
    recover_frames  how many inferred frames that must hold before each step up
    max_miss_rate   also step down when more than this fraction of the last ``rate_window``
                    frames missed, in a row or not (isolated misses never make a run of
                    ``after_misses``); and step up only while the rate since the last change
                    is under half of it (one step up about doubles it). 0: misses in a row only
    rate_window     frames held to a deadline that the miss rate is taken over (10 s at 30 fps)
    """

    policy: str = "every-k"
    after_misses: int = 3
    max_every: int = 8
    recover_ratio: float = 0.8
    recover_frames: int = 30
    max_miss_rate: float = 0.01
    rate_window: int = 300

    def __post_init__(self) -> None:
        check_choice("degrade.policy", self.policy, DEGRADE_POLICIES)
        check_range("degrade.after_misses", self.after_misses, 1, 10_000)
        check_range("degrade.max_every", self.max_every, 1, 1024)
        check_range("degrade.recover_ratio", self.recover_ratio, 0.01, 1.0)
        check_range("degrade.recover_frames", self.recover_frames, 1, 100_000)
        check_range("degrade.max_miss_rate", self.max_miss_rate, 0.0, 1.0)
        check_range("degrade.rate_window", self.rate_window, 10, 1_000_000)


def budget_ns(cfg: PipelineConfig, source_fps: float | None) -> int:
    """The frame budget in ns: ``budget_ms``, else one frame period of the source."""
    if cfg.budget_ms is not None:
        return round(cfg.budget_ms * 1e6)
    if source_fps is None or source_fps <= 0:
        raise ConfigError(
            "cannot derive the frame budget: the source reports no frame rate; "
            "pass --budget-ms B or --fps F"
        )
    return round(1e9 / source_fps)
