"""The capture thread: read the source, put each frame into the handoff, never wait for the
worker.

``source.read(timeout_s)`` blocks for at most ``timeout_s``, so the loop notices the stop
event within that time even when the camera delivers nothing. The thread ends on
:class:`~edge.sources.base.EndOfStream`, on stop, after ``max_frames`` frames, or when the
source fails for good (:class:`~edge.errors.SourceError`, kept in ``error`` for the runner to
re-raise); in every case it closes the handoff, so the worker gets the end-of-stream sentinel
instead of waiting on a timeout. Frames the source had to throw away
(:class:`~edge.sources.base.CorruptFrame`) are counted in ``corrupt_frames`` and skipped, with
one log line per kind (``CorruptFrame.kind``) per second at most (:mod:`edge.ratelog`;
a source opened by the registry is supervised, and the supervisor has counted and logged them
already: these are the ones a bare source raises).

With a source that keeps only its newest frame the runner starts no capture thread: the worker
calls :meth:`Capture.pull` itself, which does one read with the same bookkeeping (see
:class:`~edge.pipeline.handoff.PullSlot`).
"""

from __future__ import annotations

import logging
import threading

from edge.clock import MONOTONIC, Clock
from edge.errors import SourceError
from edge.frame import Frame
from edge.pipeline.handoff import END, End, LatestSlot
from edge.ratelog import RateLimitedLog
from edge.sources.base import CorruptFrame, EndOfStream, Source
from edge.stats import Counters

log = logging.getLogger(__name__)


class Capture:
    """The capture thread's body; :meth:`run` is the thread target."""

    def __init__(
        self,
        source: Source,
        slot: LatestSlot,
        counters: Counters,
        stop: threading.Event,
        *,
        max_frames: int | None = None,
        read_timeout_s: float = 0.25,
        clock: Clock = MONOTONIC,
    ) -> None:
        self.source, self.slot, self.counters, self.stop = source, slot, counters, stop
        self.max_frames = max_frames
        self.read_timeout_s = read_timeout_s
        self.captured = 0
        self._overwritten = 0  # the source's own count of frames passed over, last seen
        self.ended = False  # the source reached its end (not stopped, not failed)
        self.error: BaseException | None = None
        self._corrupt_log = RateLimitedLog(log, clock)

    def run(self) -> None:
        try:
            while not self.stop.is_set() and not self._limit_reached():
                if self.slot.lossless and not self.slot.wait_wanted(self.read_timeout_s):
                    continue  # process-all: read the next frame when the worker wants it
                frame = self._read()
                if frame is not None:
                    self._offer(frame)
        except EndOfStream:
            self._ended()
        except BaseException as e:
            self._failed(e)
        finally:
            self.slot.close()

    def pull(self, timeout_s: float) -> Frame | End | None:
        """One read on the caller's thread (the worker's, with no capture thread): the frame,
        None when none came within ``timeout_s`` (or it was corrupt), :data:`END` once the
        source ended or failed (kept in ``error``), ``max_frames`` were read, or stop was set."""
        if self.ended or self.error is not None or self.stop.is_set() or self._limit_reached():
            return END
        try:
            frame = self._read(timeout_s)
        except EndOfStream:
            self._ended()
            return END
        except BaseException as e:
            self._failed(e)
            return END
        if frame is not None:
            self.captured += 1
            self.counters.inc("captured")
            self._count_overwritten()
        return frame

    def _count_overwritten(self) -> None:
        """With no handoff to overwrite frames, the frames dropped are those the source passed
        over itself (``overwritten``, where it counts them): added to ``dropped``."""
        n = getattr(self.source, "overwritten", None)
        if isinstance(n, int) and n > self._overwritten:
            self.counters.inc("dropped", n - self._overwritten)
            self._overwritten = n

    def _ended(self) -> None:
        self.ended = True
        log.info("%s: end of stream after %d frames", self.source.name, self.captured)

    def _failed(self, e: BaseException) -> None:
        self.error = e
        if isinstance(e, SourceError):
            log.error("%s: %s", self.source.name, e)
        else:
            log.error("capture from %s failed: %s", self.source.name, e, exc_info=True)

    def _limit_reached(self) -> bool:
        return self.max_frames is not None and self.captured >= self.max_frames

    def _read(self, timeout_s: float | None = None) -> Frame | None:
        try:
            return self.source.read(self.read_timeout_s if timeout_s is None else timeout_s)
        except CorruptFrame as e:
            self.counters.inc("corrupt_frames", e.count)
            more = self._corrupt_log.due(e, e.count)
            if more is not None:
                n = self.counters.get("corrupt_frames")
                log.warning(
                    "%s: corrupt frame skipped (%d so far): %s%s", self.source.name, n, e, more
                )
            return None

    def _offer(self, frame: Frame) -> None:
        self.captured += 1
        self.counters.inc("captured")
        if not self.slot.lossless:
            if self.slot.put(frame) is not None:
                self.counters.inc("dropped")
            return
        # process-all: wait for the worker, in slices, so a stop request is still seen
        while self.slot.put(frame, self.read_timeout_s) is frame:
            if self.stop.is_set():
                return
