"""The viewer's server: an asyncio event loop on a thread of its own, plus one render thread.

Why asyncio and a hand-written HTTP/1.1 rather than ``http.server``: a viewer's MJPEG stream
is a response that lasts as long as the viewer watches, and ``ThreadingHTTPServer`` would
hold a thread per viewer for that long (and a stalled viewer would park its thread in a
blocking ``send``). Here each connection is a coroutine; a stalled one is a buffer that stops
draining and a timeout that closes it. Drawing and JPEG encoding, the only heavy work, run on
one render thread (OpenCV releases the GIL there), once per produced frame and shared.

To a run the server is an :class:`~edge.pipeline.output.Output`: ``pipeline.add_output(server)``
binds its stats to the run's (and to the other outputs' figures), then :meth:`Server.start`,
:meth:`Server.on_result` (O(1), from the worker), :meth:`Server.on_miss` (the watchdog's
records) and :meth:`Server.stop`. Without a pipeline, :meth:`Server.attach_stats` and
:meth:`Server.publish` feed it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from edge.clock import MONOTONIC, Clock
from edge.errors import ConfigError
from edge.frame import Detections, Frame, Image
from edge.metrics import EdgeMetrics
from edge.pipeline.output import OutputBase, RunView
from edge.serve.app import App
from edge.serve.config import Bind, ServeConfig
from edge.serve.guard import Guard, exposure_warning
from edge.serve.http import CONNECTION, MAX_HEAD_BYTES
from edge.serve.hub import FrameHub
from edge.serve.provider import PipelineStats
from edge.stats import StatsFn
from edge.watchdog.record import MissRecord

log = logging.getLogger(__name__)

#: content types of the files the page is made of (anything else in static/ is not served)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: how much nicer than the pipeline the server's threads run: when the cores are busy, the
#: scheduler gives the capture and worker threads the CPU first (Linux: per-thread nice)
NICE_INCREMENT = 10
#: how often the finished frames' stage times go into the latency histogram
FOLD_INTERVAL_S = 1.0
#: the HUD's figures may be this old (a stats snapshot costs ~2 ms: not one per drawn frame)
HUD_MAX_AGE_NS = 1_000_000_000


def load_static() -> dict[str, tuple[bytes, str]]:
    """``{name: (bytes, content type)}`` of the package's static/ files, read once."""
    out: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("edge.serve").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            out[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    if "index.html" not in out:
        raise FileNotFoundError("edge/serve/static/index.html is missing: reinstall edge-vision")
    return out


class Server(OutputBase):
    """See the module docstring. Not restartable: one ``start`` and one ``stop``.

    ``delegate`` names the run's delegate on ``/api/stats`` (the config's ``model.delegate``)."""

    #: the key of its figures among the outputs' (it has none to give: it shows the others')
    name = "http"

    def __init__(
        self, cfg: ServeConfig, *, clock: Clock = MONOTONIC, delegate: str = "cpu"
    ) -> None:
        self.cfg = cfg
        self.delegate = delegate
        self.bind: Bind = cfg.bind
        self._clock = clock
        self.hub = FrameHub(
            stream_fps=cfg.stream_fps, quality=cfg.jpeg_quality, clock=clock, hud=self._hud
        )
        self.misses: deque[MissRecord] = deque(maxlen=cfg.misses_kept)
        self.metrics: EdgeMetrics | None = None
        self._stats_fn: StatsFn | None = None
        self._period_ns = 0
        self._hud_cache: tuple[int, tuple[str, ...]] | None = None
        self.app = App(
            cfg,
            self.hub,
            stats=self.api_stats,
            health=self.health,
            metrics=self._folded_metrics,
            misses=self.misses,
            static=load_static(),
        )
        self.guard = Guard(cfg, clock)  # caps, reserve, host names, token lockouts
        self.address: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []  # referenced: the loop holds weak refs

    # -- the pipeline's side ----------------------------------------------------------------
    def attach_stats(
        self,
        stats: StatsFn,
        budget_ns: int,
        *,
        period_ns: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        """What the server reports and the budget it judges frames by; before ``start``.

        ``period_ns`` is the source's frame period when known (``/healthz`` allows the longer
        of it and the budget between frames); ``clock`` must be the pipeline's (``publish``
        compares it with capture times)."""
        if clock is not None:
            self._clock = self.hub.clock = clock
        self._stats_fn = stats
        self.hub.budget_ns = budget_ns
        self._period_ns = max(budget_ns, period_ns or 0)
        self.metrics = EdgeMetrics(budget_ns / 1e9, self.api_stats)

    def attach(self, run: RunView) -> None:
        """Report ``run``: its stats and the other outputs' figures (``/api/stats``,
        ``/metrics``, the HUD; the per-second series of them on ``/api/series``), its budget,
        frame period and clock (:class:`~edge.pipeline.output.Output`)."""
        stats = PipelineStats.of(run, delegate=self.delegate)
        self.attach_stats(
            lambda: {**stats(), **run.output_stats()},
            run.budget_ns,
            period_ns=run.period_ns,
            clock=run.clock,
        )
        self.app.attach_series(stats.recorder())  # /api/series: folded only while watched

    def publish(
        self,
        frame: Frame,
        detections: Detections,
        stale: bool = False,
        *,
        image: Image | None = None,
        missed: bool | None = None,
    ) -> None:
        """The worker's newest result: O(1), non-blocking (a reference is kept, nothing drawn).

        ``image`` is the decoded image the detections belong to, when the caller has it;
        ``missed`` None means "late if the clock is past capture + budget now"."""
        self.hub.publish(frame, detections, stale, image=image, missed=missed)

    def on_result(
        self, frame: Frame, detections: Detections, stale: bool, image: Image | None = None
    ) -> None:
        """:meth:`publish` as an output's result hook (worker thread)."""
        self.hub.publish(frame, detections, stale, image=image)

    def on_miss(self, record: MissRecord) -> None:
        """A deadline-miss record for ``/api/misses`` (thread-safe, O(1))."""
        self.misses.append(record)

    def stats(self) -> None:
        """None: the server shows figures (:meth:`api_stats`), it has none for the others."""
        return None

    # -- what the endpoints report ---------------------------------------------------------
    def api_stats(self) -> dict[str, Any]:
        """``/api/stats``: the attached stats plus the stream's own figures."""
        out: dict[str, Any] = dict(self._stats_fn()) if self._stats_fn is not None else {}
        out["stream"] = {
            "clients": self.hub.watchers,
            "max_clients": self.cfg.max_clients,
            "stream_fps": self.cfg.stream_fps,
            "published": self.hub.published,
            "rendered": self.hub.rendered,
            "dropped": dict(self.app.dropped),
        }
        out["connections"] = self.guard.stats()
        return out

    def health(self) -> tuple[bool, str]:
        """(ok, reason): ok while a frame completed within ``health_budgets`` budgets (or
        frame periods, when the source delivers less often than the budget)."""
        if self.hub.budget_ns is None:
            return False, "no pipeline attached"
        last = self.hub.last_publish_ns
        if last is None:
            return False, "starting: no frame has completed yet"
        age_ms = (self._clock.now_ns() - last) / 1e6
        unit_ms = self._period_ns / 1e6
        limit_ms = self.cfg.health_budgets * unit_ms
        if age_ms > limit_ms:
            return False, (
                f"no frame completed for {age_ms:.0f} ms (limit {limit_ms:.0f} ms: "
                f"{self.cfg.health_budgets:g} x {unit_ms:.1f} ms)"
            )
        return True, f"last frame completed {age_ms:.0f} ms ago"

    def _hud(self) -> Sequence[str]:
        """The HUD lines, from stats at most :data:`HUD_MAX_AGE_NS` old (render thread)."""
        now = self._clock.now_ns()
        cached = self._hud_cache
        if cached is not None and now - cached[0] < HUD_MAX_AGE_NS:
            return cached[1]
        lines = hud_lines(self._stats_fn() if self._stats_fn is not None else {})
        self._hud_cache = (now, lines)
        return lines

    def _folded_metrics(self) -> EdgeMetrics | None:
        self._fold()
        return self.metrics

    def _fold(self) -> None:
        metrics = self.metrics
        for stages in self.hub.drain_stages():
            if metrics is not None:
                metrics.observe_frame(stages)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.address or (self.bind.host, self.bind.port)
        return Bind(host, port).url()

    def start(self, timeout_s: float = 5.0) -> None:
        """Listen and serve on a thread; returns once listening. ConfigError when the
        address cannot be bound (in use, not an address of this machine)."""
        if self._thread is not None:
            raise RuntimeError("Server.start called twice")
        self._thread = threading.Thread(target=self._run, name="serve-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the HTTP server did not start within {timeout_s} s")
        if isinstance(self._error, OSError):
            why = self._error.strerror or str(self._error)
            raise ConfigError(
                f"cannot serve on {self.bind.host}:{self.bind.port}: {why}; "
                "pick another --http HOST:PORT (port in use?) or an address of this machine"
            ) from self._error
        if self._error is not None:
            raise self._error
        log.info("serving the live view on %s", self.url)
        warning = exposure_warning(self.bind, self.cfg.token)
        if warning is not None:
            log.warning("%s", warning)

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Close every connection and the loop; False if the thread did not end in time."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def _run(self) -> None:
        lower_priority()
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # the thread must report, never die silently
            self._error = self._error or e
            log.exception("the HTTP server failed")
        finally:
            self._ready.set()
            _finish_tasks(loop)
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        pool = ThreadPoolExecutor(1, "serve-render", initializer=lower_priority)
        self.hub.bind(asyncio.get_running_loop(), pool)
        try:
            server = await asyncio.start_server(
                self._handle, self.bind.host, self.bind.port, limit=MAX_HEAD_BYTES
            )
        except OSError as e:
            self._error = e
            pool.shutdown(wait=False)
            return
        host, port = server.sockets[0].getsockname()[:2]
        self.address = (str(host), int(port))
        self._ready.set()
        self._background = [
            asyncio.create_task(self.hub.run()),
            asyncio.create_task(self._folding()),
        ]
        try:
            await self._stop.wait()
        finally:
            server.close()
            self.app.closing = True  # connections end with an abort, not a goodbye
            # every other task: connections just accepted may not be in _conns yet
            rest = asyncio.all_tasks() - {asyncio.current_task()}
            for task in rest:
                task.cancel()
            await asyncio.wait(rest, timeout=1.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
            pool.shutdown(wait=False, cancel_futures=True)
            self._fold()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        conn, victim = self.guard.open(writer.get_extra_info("peername"), writer.transport.abort)
        try:
            if conn is None:
                await self.guard.refuse(reader, writer, self.health)
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
                return
            conn.task = task
            if victim is not None and victim.task is not None:
                # let the displaced connection leave the app's count before this one enters
                await asyncio.wait({victim.task}, timeout=1.0)
            CONNECTION.set(conn)
            await self.app.handle(reader, writer)
        except asyncio.CancelledError:
            # only stop() cancels connections; ending quietly keeps asyncio's stream callback
            # from logging the cancellation as an error (Python 3.11)
            pass
        finally:
            if conn is not None:
                self.guard.release(conn)
            self._conns.discard(task)

    async def _folding(self) -> None:
        while True:
            await asyncio.sleep(FOLD_INTERVAL_S)  # batching for the histogram, not a handshake
            self._fold()


def _finish_tasks(loop: asyncio.AbstractEventLoop, rounds: int = 3) -> None:
    """Cancel whatever is left on ``loop`` and let it unwind, as ``asyncio.run`` does: a
    connection accepted while the server was closing starts its task after ``_main`` took
    its list, and a task left pending would be torn down after the loop is closed."""
    for _ in range(rounds):
        pending = asyncio.all_tasks(loop)
        if not pending:
            return
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.wait(pending, timeout=1.0))


def lower_priority() -> None:
    """Make the calling thread :data:`NICE_INCREMENT` nicer (Linux nice is per thread; a
    no-op where threads cannot be reniced)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE_INCREMENT)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the same priority
        log.debug("cannot lower the server threads' priority", exc_info=True)


def hud_lines(stats: dict[str, Any] | Any) -> tuple[str, ...]:
    """``12.5 fps  p50 18.2  p99 24.0 ms`` (+ ``degraded: infer every 2nd``)."""
    total = stats.get("latency_ms", {}).get("total", {})
    line = f"{stats.get('fps', 0.0):.1f} fps"
    if "p50" in total:
        line += f"  p50 {total['p50']:.1f}  p99 {total['p99']:.1f} ms"
    lines = [line]
    if stats.get("mode") == "degraded":
        lines.append(f"degraded: infer every {stats.get('every')}")
    return tuple(lines)
