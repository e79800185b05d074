"""What the worker shares with the deadline watchdog: the frame in flight, its deadline, its
stage, and the frames it has finished.

The worker touches this on every stage of every frame, so the per-stage call is one attribute
store (:meth:`InFlight.enter` replaces a tuple, which is atomic under the GIL: the watchdog
sees the old stage or the new one, never half of each). Only the two per-frame calls,
:meth:`begin` and :meth:`finish`, take the lock, and they notify the watchdog so it can set
its next wake-up to the new deadline or account for the finished frame.

Finished frames queue up (:class:`Done`) rather than overwrite each other: when the machine
is loaded the watchdog may wake only after the worker has finished several frames, and each
of them must still be accounted for exactly once.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from enum import Enum

from edge.frame import Frame


class Outcome(str, Enum):
    """How a frame left the worker (the worker writes it, the watchdog reads it). A ``str``
    enum so that it compares and hashes as its value. Per frame, use the module-level
    aliases below (``OK``...): an attribute of an enum class costs ~20 times a global."""

    OK = "ok"  # through every stage with fresh detections
    SHED = "shed"  # degraded: no inference, the last detections reused (marked stale)
    SKIPPED = "skipped"  # already past its deadline when picked up (policy skip-stale)
    ERROR = "error"  # the frame could not be decoded (corrupt JPEG); counted, skipped
    GAP = "gap"  # no frame came for a while: stands for the missing frame (worker.GAP_PERIODS)
    GAP_END = "gap-end"  # frames flow again after a gap


OK, SHED, SKIPPED, ERROR = Outcome.OK, Outcome.SHED, Outcome.SKIPPED, Outcome.ERROR
GAP, GAP_END = Outcome.GAP, Outcome.GAP_END
#: the outcomes of a gap report: opened, and closed when frames come back
GAP_OUTCOMES: tuple[Outcome, ...] = (GAP, GAP_END)


@dataclass(frozen=True, slots=True)
class Done:
    """A frame the worker is finished with."""

    frame: Frame
    deadline_ns: int
    end_ns: int
    outcome: Outcome
    every: int = 1  # the degradation mode it ran under (inference on every k-th frame)
    degraded_to: int | None = None  # the mode this frame's miss switched to, if it did

    @property
    def late(self) -> bool:
        return self.end_ns > self.deadline_ns


@dataclass(frozen=True, slots=True)
class Current:
    """The frame in flight as the watchdog sees it."""

    frame: Frame
    deadline_ns: int
    stage: str
    stage_start_ns: int


class InFlight:
    """The worker writes, the watchdog reads; one Condition wakes the watchdog."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._frame: Frame | None = None
        self._deadline_ns = 0
        self._stage: tuple[str, int] = ("", 0)
        self._done: deque[Done] = deque()
        self._gen = 0  # bumped on every change the watchdog must see; no lost wake-ups

    # -- the worker's side ----------------------------------------------------------------
    def begin(self, frame: Frame, deadline_ns: int, stage: str, t_ns: int) -> None:
        """A frame enters the stages; ``stage`` is the first one, started at ``t_ns``."""
        with self.cond:
            self._stage = (stage, t_ns)
            self._frame, self._deadline_ns = frame, deadline_ns
            self._gen += 1
            self.cond.notify_all()

    def enter(self, stage: str, t_ns: int) -> None:
        """The frame in flight moves to ``stage`` at ``t_ns``; no lock, one store."""
        self._stage = (stage, t_ns)

    def finish(self, done: Done) -> None:
        """The worker is done with a frame (in flight or skipped before it began)."""
        with self.cond:
            if self._frame is done.frame:
                self._frame = None
            self._done.append(done)
            self._gen += 1
            self.cond.notify_all()

    # -- the watchdog's side --------------------------------------------------------------
    def take(self) -> tuple[int, list[Done], Current | None]:
        """A change counter, the frames finished since the last call (in order), and the
        frame now in flight.

        Taken together under the lock, so a frame is either finished or in flight, never both
        and never neither. Pass the counter to :meth:`wait`.
        """
        with self.cond:
            done = list(self._done)
            self._done.clear()
            frame = self._frame
            if frame is None:
                return self._gen, done, None
            stage, start = self._stage
            return self._gen, done, Current(frame, self._deadline_ns, stage, start)

    def peek(self) -> Current | None:
        """The frame in flight, without taking the finished ones (for logs at shutdown)."""
        with self.cond:
            if self._frame is None:
                return None
            stage, start = self._stage
            return Current(self._frame, self._deadline_ns, stage, start)

    def wait(self, gen: int, timeout_s: float | None) -> bool:
        """Block until something changed since :meth:`take` returned ``gen`` (a frame began or
        finished, or :meth:`poke`), or the timeout; True when something changed."""
        with self.cond:
            return self.cond.wait_for(lambda: self._gen != gen, timeout_s)

    def poke(self) -> int:
        """Wake the watchdog (stop requested, or a test's fake clock moved); the generation it
        made: a :meth:`take` that returns this or later saw everything finished before."""
        with self.cond:
            self._gen += 1
            self.cond.notify_all()
            return self._gen
