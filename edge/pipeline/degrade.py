"""The degradation policy: shed inference after repeated misses, step back up with hysteresis.

Policy ``every-k`` (the default): after ``after_misses`` deadline misses in a row (frames that
ran inference or were skipped as stale; shed frames on time do not break the run) the worker
runs inference on every k-th frame only (k = 2, then 4, ... up to ``max_every``); the frames
in between skip decode, preprocess, inference and postprocess and reuse the last detections,
marked stale, so the video keeps its rate and the boxes lag a little instead of every frame
being late. Misses that come one at a time never make such a run, however many there are, so
it also steps down when more than ``max_miss_rate`` of the last ``rate_window`` frames held to
a deadline missed (a ring of one byte per frame, a running count: O(1) per frame).

It steps back (k halves) when the last ``recover_frames`` inferred frames all made their
deadline with a p95 capture-to-result latency under ``recover_ratio`` x budget, and the miss
rate since the last change is under half of ``max_miss_rate`` (a step up about doubles the
rate, so this is what keeps it under the maximum): the latency must show real headroom before
inference is added back, and both windows start over after every change, so the mode cannot
flap frame to frame.

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
        # the miss-rate window: 1 per missed frame, the last rate_window frames held
        self._rate_on = cfg.max_miss_rate > 0
        self._ring = bytearray(cfg.rate_window)
        self._ring_zero = bytes(cfg.rate_window)
        self._ring_i = 0
        self._held = 0  # frames in the ring since the last change (<= rate_window)
        self._missed = 0  # of which missed
        self._max_missed = cfg.max_miss_rate * cfg.rate_window

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
        if self._rate_on:
            self._count(missed)
        if missed:
            self._consecutive += 1
            self._window.clear()
            if self.every >= self.cfg.max_every:
                return None
            if self._consecutive >= self.cfg.after_misses:
                reason = f"{self._consecutive} deadline misses in a row (shed frames aside)"
                return self._change(min(self.every * 2, self.cfg.max_every), reason)
            if self._rate_on and self._held == self.cfg.rate_window:
                if self._missed > self._max_missed:
                    reason = (
                        f"{self._missed} of the last {self._held} frames missed "
                        f"(> {self.cfg.max_miss_rate:.1%})"
                    )
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
        if self._rate_on and 2 * self._missed > self.cfg.max_miss_rate * self._held:
            return None  # stepping up would about double a rate already near the maximum
        tail = p95(self._window)
        if tail >= self._headroom_ns:
            return None
        reason = (
            f"p95 latency {tail / 1e6:.1f} ms < {self.cfg.recover_ratio:g} x budget "
            f"{self.budget_ns / 1e6:.1f} ms over the last {len(self._window)} inferred frames"
        )
        return self._change(self.every // 2, reason)

    def _count(self, missed: bool) -> None:
        i = self._ring_i
        self._missed += missed - self._ring[i]
        self._ring[i] = missed
        self._ring_i = i + 1 if i + 1 < len(self._ring) else 0
        if self._held < len(self._ring):
            self._held += 1

    def _change(self, every: int, reason: str) -> ModeChange:
        change = ModeChange(self.every, every, reason)
        self.every, self._phase, self._consecutive = every, 0, 0
        self._window.clear()
        self._ring[:] = self._ring_zero  # the rate of the new mode starts from nothing
        self._ring_i = self._held = self._missed = 0
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
