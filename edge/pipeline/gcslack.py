"""GC discipline: garbage collection happens in the slack between frames, not inside one.

CPython's cyclic collector runs when allocations cross a threshold, wherever the program is
at that moment. The young generations are cheap (they hold only a few hundred recent objects),
but a full (generation 2) collection walks every tracked object in the process: with numpy,
OpenCV and a LiteRT interpreter loaded that is hundreds of thousands of objects and can take
30 ms on a Pi, a whole frame budget, at a moment nobody chose.

So, for the length of a run:

1. after start-up (model loaded, source open) everything allocated so far is collected once
   and then *frozen* (``gc.freeze()``): moved to a permanent generation no collection walks.
   These objects live for the whole run anyway; scanning them 30 times a minute buys nothing.
2. automatic generation-2 collection is switched off by raising its threshold out of reach
   (``gc.set_threshold(t0, t1, huge)``); generations 0 and 1 stay automatic, their pauses
   are bounded by the 700-allocation threshold and measured in microseconds.
3. after each frame the worker calls :meth:`GcDiscipline.after_frame` with the time the next
   frame is expected. When a generation-2 collection is due (as often as the automatic one
   would have run) and the remaining slack exceeds twice the last one's duration, it runs
   ``gc.collect(2)`` there, where it cannot make a frame late.
4. a worker that never has slack (overloaded, every frame late) would let cyclic garbage pile
   up; once a collection is ``force_after`` times overdue (that many automatic gen-2
   intervals without a slot) it runs anyway and is counted as forced, since one late frame is
   better than running out of memory.

On exit the thresholds are restored and the frozen objects unfrozen. On Python 3.14+ the
collector is incremental (no long gen-2 pauses, and ``threshold2`` is ignored), so only the
freeze is applied there.
"""

from __future__ import annotations

import gc
import logging
import sys
from dataclasses import dataclass

from edge.clock import Clock

log = logging.getLogger(__name__)

#: an out-of-reach threshold2: gen-2 counts gen-1 collections, it never gets near this
_NEVER = 1 << 30
_INCREMENTAL = sys.version_info >= (3, 14)


@dataclass
class GcStats:
    collections: int = 0  # gen-2 collections run in the slack
    forced: int = 0  # gen-2 collections run without slack (after force_after refusals)
    last_ns: int = 0  # duration of the last one


class GcDiscipline:
    """Freeze at start-up, defer gen-2 collection to the slack after a frame."""

    def __init__(self, clock: Clock, *, enabled: bool = True, force_after: int = 20) -> None:
        self.clock = clock
        self.enabled = enabled
        self.force_after = force_after
        self.stats = GcStats()
        self._saved: tuple[int, int, int] | None = None
        self._due = 10
        self._estimate_ns = 0

    @property
    def active(self) -> bool:
        return self._saved is not None

    def start(self) -> None:
        """Collect and freeze what start-up allocated; take gen-2 collection in hand."""
        if not self.enabled or self._saved is not None:
            return
        gc.collect()
        gc.freeze()
        self._saved = gc.get_threshold()
        t0, t1, t2 = self._saved
        self._due = max(t2, 1)
        if not _INCREMENTAL:
            gc.set_threshold(t0, t1, _NEVER)
        self._estimate_ns = self._collect()  # post-freeze cost: the estimate for the slack
        log.debug(
            "gc: %d objects frozen; gen-2 collection deferred to frame slack (%.2f ms each)",
            gc.get_freeze_count(),
            self._estimate_ns / 1e6,
        )

    def stop(self) -> None:
        """Give the collector back its thresholds and the frozen objects."""
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        gc.unfreeze()
        self._saved = None

    def due(self) -> bool:
        """True when the automatic collector would have run a gen-2 collection by now."""
        return self._saved is not None and not _INCREMENTAL and gc.get_count()[2] >= self._due

    def after_frame(self, next_frame_ns: int | None) -> bool:
        """Collect generation 2 if it is due and fits before ``next_frame_ns``.

        ``next_frame_ns`` is when the next frame is expected (None: a frame is already
        waiting, no slack). Returns True when a collection ran.
        """
        if not self.due():
            return False
        now = self.clock.now_ns()
        fits = next_frame_ns is not None and next_frame_ns - now >= 2 * self._estimate_ns
        overdue = gc.get_count()[2] >= self._due * self.force_after
        if not fits and not overdue:
            return False
        self._estimate_ns = self._collect()
        if fits:
            self.stats.collections += 1
        else:
            self.stats.forced += 1
            log.debug("gc: no slack for %d frames, collected anyway", self.force_after)
        return True

    def _collect(self) -> int:
        t0 = self.clock.now_ns()
        gc.collect(2)
        dt = self.clock.now_ns() - t0
        self.stats.last_ns = dt
        return dt
