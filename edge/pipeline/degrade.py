"""The degradation policy: shed inference after repeated misses, step back up with hysteresis.

Policy ``every-k`` (the default): after ``after_misses`` deadline misses in a row (frames that
ran inference or were skipped as stale; shed frames on time do not break the run) the worker
runs inference on every k-th frame only (k = 2, then 4, ... up to ``max_every``); the frames
in between skip decode, preprocess, inference and postprocess and reuse the last detections,
marked stale, so the video keeps its rate and the boxes lag a little instead of every frame
being late. It steps back (k halves) when the last ``recover_frames`` inferred frames all made
their deadline with a p95 capture-to-result latency under ``recover_ratio`` x budget: the
latency must show real headroom before inference is added back, and the window starts over
after every change, so the mode cannot flap frame to frame.

Every change is logged with its reason and returned to the caller, which counts it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from edge.pipeline.settings import DegradeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModeChange:
    old_every: int
    new_every: int
    reason: str

    @property
    def down(self) -> bool:
        """True when this change sheds load (k grew)."""
        return self.new_every > self.old_every


def p95(values: deque[int]) -> int:
    """The 95th percentile by the nearest-rank method (no interpolation, no numpy)."""
    ordered = sorted(values)
    rank = -(-95 * len(ordered) // 100)  # ceil(0.95 n), 1-based
    return ordered[max(rank, 1) - 1]


class Degrader:
    """Decides, frame by frame, whether to run inference; used by the worker thread only."""

    def __init__(self, cfg: DegradeConfig, budget_ns: int) -> None:
        self.cfg = cfg
        self.budget_ns = budget_ns
        self.every = 1
        self.changes = 0
        self._consecutive = 0
        self._phase = 0
        self._window: deque[int] = deque(maxlen=cfg.recover_frames)
        self._headroom_ns = int(cfg.recover_ratio * budget_ns)

    @property
    def enabled(self) -> bool:
        return self.cfg.policy != "off"

    def should_infer(self) -> bool:
        """Whether the next frame gets inference (k-1 frames out of k reuse the last boxes)."""
        if self.every == 1:
            return True
        self._phase += 1
        if self._phase >= self.every:
            self._phase = 0
            return True
        return False

    def observe(self, *, missed: bool, inferred: bool, latency_ns: int) -> ModeChange | None:
        """Account for one frame held to a deadline; a :class:`ModeChange` when k changes."""
        if not self.enabled:
            return None
        if missed:
            self._consecutive += 1
            self._window.clear()
            if self._consecutive >= self.cfg.after_misses and self.every < self.cfg.max_every:
                reason = f"{self._consecutive} deadline misses in a row (shed frames aside)"
                return self._change(min(self.every * 2, self.cfg.max_every), reason)
            return None
        if not inferred:
            return None  # a shed frame on time says nothing about the model's headroom
        self._consecutive = 0
        if self.every == 1:
            return None
        self._window.append(latency_ns)
        if len(self._window) < self.cfg.recover_frames:
            return None
        tail = p95(self._window)
        if tail >= self._headroom_ns:
            return None
        reason = (
            f"p95 latency {tail / 1e6:.1f} ms < {self.cfg.recover_ratio:g} x budget "
            f"{self.budget_ns / 1e6:.1f} ms over the last {len(self._window)} inferred frames"
        )
        return self._change(self.every // 2, reason)

    def _change(self, every: int, reason: str) -> ModeChange:
        change = ModeChange(self.every, every, reason)
        self.every, self._phase, self._consecutive = every, 0, 0
        self._window.clear()
        self.changes += 1
        verb = "shedding load" if change.down else "stepping back up"
        log.warning(
            "degrade: %s, inference on every %s frame (was every %s): %s",
            verb,
            _nth(every),
            _nth(change.old_every),
            reason,
        )
        return change


def _nth(k: int) -> str:
    return "single" if k == 1 else f"{k}th" if k > 3 else {2: "2nd", 3: "3rd"}[k]
