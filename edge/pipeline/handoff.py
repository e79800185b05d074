"""The one-slot handoff between the capture thread and the worker: the latest frame wins.

A camera delivers frames at its own rate whether or not inference keeps up. If the capture
thread waited for the worker, the driver's own buffers would fill and the frames the worker
finally saw would be old; if frames queued up, every frame would be late. So the capture
thread only ever *replaces* the frame in the slot (``put`` never blocks), and each frame it
overwrites before the worker took it is counted as dropped: the drop count is the measure of
how far inference is behind the camera (Frigate counts the same thing).

``lossless=True`` is the offline variant for the ``process-all`` policy: ``put`` waits, with a
timeout, until the worker has taken the previous frame, so a video file is processed frame by
frame and nothing is dropped. The capture thread also waits (:meth:`wait_wanted`) until the
worker is free *before* it reads the next frame, so no frame is stamped and then left waiting
by a queue that only the offline mode creates. Meant for files: with a live camera it only moves
the dropping into the source's own reader (which counts it there).

End of stream is explicit: :meth:`close` makes :meth:`get` return :data:`END` once the last
frame has been taken, so the worker never has to guess from a timeout.

:class:`PullSlot` is the other handoff, for sources that already keep only their newest frame
(a paced file skips the frames its reader missed; an OpenCV live source's own reader thread
keeps only the newest; see :func:`reads_newest_only`): there the
worker reads the source itself and the capture thread is not started. A frame then reaches the
worker without a thread wake-up in between: with the capture thread, the frame's arrival wakes
the capture thread, whose ``notify`` wakes the worker (a second futex wake-up, ~70-170 us on a
shared VM), and the worker, once awake, waits for the GIL until the capture thread reaches its
next decode (a third hand-over). Measured on the face model at 60 fps (docs/TUNING.md), that
hop was most of the ``wait`` stage.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Final, Literal, Protocol

from edge.frame import Frame


class _End(enum.Enum):
    END = "end of stream"


#: what :meth:`LatestSlot.get` returns once the slot is closed and empty
END: Final = _End.END
#: its type (the end of the handoff; a source signals its own end with
#: :class:`edge.sources.base.EndOfStream`, an exception)
End = Literal[_End.END]


class LatestSlot:
    """A one-frame mailbox; ``put`` overwrites (and counts the drop), ``get`` blocks with a
    timeout on a Condition."""

    def __init__(self, *, lossless: bool = False) -> None:
        self.lossless = lossless
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self._put = 0
        self._dropped = 0
        self._taken = 0
        self._getters = 0  # threads blocked in get()

    def put(self, frame: Frame, timeout_s: float = 0.25) -> Frame | None:
        """Offer a frame; returns the frame it overwrote (now dropped), if any.

        In lossless mode the call waits up to ``timeout_s`` for the slot to empty and returns
        ``frame`` itself when it could not be placed, so the caller can retry (and check its
        stop event in between) without ever losing it.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("put on a closed LatestSlot")
            if self.lossless and self._frame is not None:
                if not self._cond.wait_for(lambda: self._frame is None, timeout_s):
                    return frame
            old, self._frame = self._frame, frame
            self._put += 1
            if old is not None:
                self._dropped += 1
            self._cond.notify_all()
            return old

    def get(self, timeout_s: float) -> Frame | End | None:
        """The newest frame; :data:`END` when closed and empty; None when ``timeout_s`` ran out."""
        with self._cond:
            self._getters += 1
            self._cond.notify_all()  # a capture thread in wait_wanted: the worker is free
            try:
                ready = self._cond.wait_for(
                    lambda: self._frame is not None or self._closed, timeout_s
                )
            finally:
                self._getters -= 1
            if not ready:
                return None
            frame, self._frame = self._frame, None
            if frame is None:
                return END
            self._taken += 1
            self._cond.notify_all()  # a lossless put may be waiting for the slot
            return frame

    def wait_wanted(self, timeout_s: float) -> bool:
        """Block until the slot is empty and the worker is waiting in :meth:`get` (it has
        finished its frame); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._frame is None and self._getters > 0, timeout_s)

    def close(self) -> None:
        """No more frames: the worker gets the frame still in the slot, then :data:`END`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def pending(self) -> bool:
        """True when a frame is waiting (the worker has no slack to spend)."""
        return self._frame is not None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """Frames overwritten before the worker took them."""
        with self._cond:
            return self._dropped

    @property
    def offered(self) -> int:
        """Frames put into the slot."""
        with self._cond:
            return self._put

    @property
    def taken(self) -> int:
        """Frames the worker took."""
        with self._cond:
            return self._taken


class Handoff(Protocol):
    """What the worker needs from a handoff."""

    def get(self, timeout_s: float) -> Frame | End | None: ...

    def pending(self) -> bool: ...


def reads_newest_only(source: object) -> bool:
    """Whether ``source`` hands out only its newest frame by itself (``newest_only``): a late
    reader never gets a queue of old frames, so the worker may read it directly."""
    return bool(getattr(source, "newest_only", False))


class PullSlot:
    """The worker reads the source itself: ``get`` is ``pull(timeout_s)``, which blocks until
    the next frame is due (the capture's bookkeeping included, see
    :meth:`edge.pipeline.capture.Capture.pull`). Nothing waits in a slot, so nothing is
    ``pending``; frames the source skipped are counted by the source."""

    lossless = False

    def __init__(self, pull: Callable[[float], Frame | End | None]) -> None:
        self._pull = pull
        self._taken = 0

    def get(self, timeout_s: float) -> Frame | End | None:
        item = self._pull(timeout_s)
        if item is not None and item is not END:
            self._taken += 1
        return item

    def pending(self) -> bool:
        return False

    @property
    def taken(self) -> int:
        return self._taken
