"""The newest result in, shared JPEGs out: where the worker and the viewers meet.

The worker's side, :meth:`FrameHub.publish`, is O(1) and never blocks: it stores a reference
to the result (no copy, no drawing, no encoding) and leaves the frame's stage table for the
metrics. It does not even wake anyone: waking the loop means a syscall, and a woken thread
that takes the GIL just as the worker wants it back costs the worker up to a GIL switch
interval (5 ms), which is what showed in the worker's p99 when it did.

Instead, the loop's side samples: while a viewer waits for a frame, it looks at the newest
result ``stream_fps`` times a second (which is the cap on drawing anyway), and when it is
newer than the last one drawn, draws and encodes it on one render thread and wakes the
viewers. Older results are simply never drawn. Each viewer takes the newest rendered frame
when it is ready for one; a viewer is never queued frames, so a slow one gets fewer frames,
and a stalled one is cut off by its write timeout (see :mod:`edge.serve.app`).

A viewer that connects after nobody watched for a while gets the newest result first: the
last frame drawn is as old as the last viewer (nothing is drawn while nobody watches), so it
is handed out only while the render loop is keeping it current (drawn within the last rate
cap, or it is the newest result); otherwise the viewer waits for the newest result to be drawn.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from edge.clock import MONOTONIC, Clock
from edge.frame import Detections, Frame, Image
from edge.serve.render import Published, Rendered, render

log = logging.getLogger(__name__)

#: stage tables kept for the metrics between two drains (about 2 minutes at 30 fps)
STAGES_KEPT = 4096


class FrameHub:
    """See the module docstring. ``publish`` is the worker's; everything else the loop's."""

    def __init__(
        self,
        *,
        stream_fps: float,
        quality: int,
        clock: Clock = MONOTONIC,
        hud: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.period_s = 1.0 / stream_fps
        self.quality, self.clock, self.hud = quality, clock, hud
        self.budget_ns: int | None = None  # a frame later than this at publish is marked missed
        # written by the worker only
        self.latest: Published | None = None
        self.last_publish_ns: int | None = None
        self.published = 0
        self._fresh_capture_ns: int | None = None
        self.stages: deque[dict[str, int]] = deque(maxlen=STAGES_KEPT)
        # written by the loop only
        self.watchers = 0
        self.current: Rendered | None = None
        self.rendered = 0
        self.widths: Counter[int | None] = Counter()
        self.waiting = 0  # viewers waiting for a newer frame than they have
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._last_render_s = float("-inf")

    # -- the worker's side ------------------------------------------------------------------
    def publish(
        self,
        frame: Frame,
        detections: Detections,
        stale: bool = False,
        *,
        image: Image | None = None,
        missed: bool | None = None,
    ) -> None:
        """Keep a reference to the newest result; O(1), never blocks, never draws."""
        now = self.clock.now_ns()
        if not stale:
            self._fresh_capture_ns = frame.t_capture_ns
        fresh = self._fresh_capture_ns
        age = None if not stale else (frame.t_capture_ns - (fresh or frame.t_capture_ns)) / 1e6
        if missed is None:
            budget = self.budget_ns
            missed = budget is not None and now > frame.t_capture_ns + budget
        self.published += 1
        self.latest = Published(self.published, frame, detections, image, age, missed)
        self.last_publish_ns = now
        self.stages.append(frame.stages_ns)  # filled in place as the frame finishes

    # -- the loop's side --------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor) -> None:
        """Called on the loop's thread before serving."""
        self._loop, self._pool = loop, pool
        self._kick, self._changed = asyncio.Event(), asyncio.Event()

    async def run(self) -> None:
        """The render task: the newest result, at most ``stream_fps`` a second, while a
        viewer waits for one; idle (no timer) while nobody does."""
        assert self._kick is not None and self._loop is not None
        loop = self._loop
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self.waiting:
                t0 = loop.time()
                await self._render_latest()
                # the sampling period is the rate cap: the worker is never asked to signal
                await asyncio.sleep(max(0.0, t0 + self.period_s - loop.time()))

    async def _render_latest(self) -> Rendered | None:
        assert self._loop is not None
        pub = self.latest
        cur = self.current
        if pub is None or (cur is not None and cur.version == pub.version):
            return cur
        self._last_render_s = self._loop.time()
        widths = tuple(self.widths)
        rendered = await self._loop.run_in_executor(self._pool, self._render, pub, widths)
        if rendered is not None and (
            self.current is None or rendered.version > self.current.version
        ):
            self.current = rendered
            self.rendered += 1
            self._notify()
        return self.current

    def _render(self, pub: Published, widths: tuple[int | None, ...]) -> Rendered | None:
        """On the render thread: draw once, encode for the widths being watched."""
        try:
            rendered = render(pub, self.hud(), self.quality)
            if rendered is not None:
                for width in widths:
                    rendered.jpeg(width)
            return rendered
        except Exception:
            log.exception("drawing frame %d for the viewers failed", pub.frame.seq)
            return None

    def _notify(self) -> None:
        assert self._changed is not None
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def watch(self, width: int | None) -> None:
        self.watchers += 1
        self.widths[width] += 1

    def unwatch(self, width: int | None) -> None:
        self.watchers -= 1
        self.widths[width] -= 1
        if self.widths[width] <= 0:
            del self.widths[width]

    async def newer(self, version: int, timeout_s: float) -> Rendered | None:
        """The newest rendered frame once it is newer than ``version`` and current (see the
        module docstring: never a frame drawn before an idle spell); None on timeout."""
        assert self._changed is not None and self._kick is not None and self._loop is not None
        cur, pub = self.current, self.latest
        want = version + 1
        if cur is not None and cur.version > version:
            fresh = self._loop.time() - self._last_render_s < self.period_s
            if fresh or pub is None or cur.version >= pub.version:
                return cur
            want = pub.version  # drawn before an idle spell: wait for the newest result
        self.waiting += 1
        self._kick.set()
        try:
            while self.current is None or self.current.version < want:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            self.waiting -= 1
        return self.current

    async def jpeg(self, rendered: Rendered, width: int | None) -> bytes:
        """``rendered`` at ``width``: shared bytes when already encoded, else encoded once."""
        hit = rendered.cached(width)
        if hit is not None:
            return hit
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pool, rendered.jpeg, width)

    async def snapshot(self) -> Rendered | None:
        """The newest frame drawn, rendering it now unless a render is younger than the rate
        cap allows (then the last one: a tight loop on /snapshot.jpg costs one cap's worth)."""
        assert self._loop is not None
        if self._loop.time() - self._last_render_s < self.period_s and self.current is not None:
            return self.current
        return await self._render_latest()

    def drain_stages(self) -> list[dict[str, int]]:
        """The stage tables of frames that have finished: those with their ``publish`` stage
        in, and any with a newer frame behind them (the worker finishes one before the next)."""
        out: list[dict[str, int]] = []
        stages = self.stages
        while stages and (len(stages) > 1 or "publish" in stages[0]):
            out.append(stages.popleft())
        return out
