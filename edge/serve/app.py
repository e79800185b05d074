"""The endpoints: one coroutine per connection on the server's event loop, no thread per
client and none per frame.

Routing is an exact match on the path (so ``..``, ``%2e%2e`` or a directory name can only
404), the static files are the few read from the package at start, and parameters are
checked before anything is done with them (400 with what was expected and what was got).
With a token configured, every endpoint but ``/healthz`` wants it, compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from edge.metrics import EdgeMetrics
from edge.serve.config import ServeConfig
from edge.serve.http import (
    HttpError,
    Request,
    Response,
    error_response,
    head_bytes,
    json_response,
    read_request,
)
from edge.serve.hub import FrameHub
from edge.serve.series import SERIES_LINGER_S, TICK_OFFSET_NS, SeriesRecorder, no_series
from edge.watchdog.record import MissRecord

log = logging.getLogger(__name__)
#: how long a refused connection is drained before it is closed
LINGER_S = 0.5

BOUNDARY = "edgeframe"
#: accepted ranges of the query parameters
FPS_RANGE, WIDTH_RANGE, LIMIT_RANGE = (0.1, 120.0), (16, 7680), (1, 1000)
DEFAULT_MISSES = 20
_ASSET = re.compile(rb'(href|src)="static/([A-Za-z0-9_.-]+)"')
_INT = re.compile(r"[0-9]{1,6}")
_FLOAT = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?|\.[0-9]{1,6}")
_SINCE = re.compile(r"-?[0-9]{1,15}")  # a clock second: a device's uptime can be large
_FLAGS = {"0": False, "1": True, "false": False, "true": True}

Handler = Callable[[Request], Awaitable[Response]]


def int_param(q: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    raw = q.get(name)
    if raw is None:
        return None
    if not _INT.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise HttpError(400, f"{name} must be an integer {lo}..{hi}, got {raw[:32]!r}")
    return int(raw)


def float_param(q: Mapping[str, str], name: str, lo: float, hi: float) -> float | None:
    raw = q.get(name)
    if raw is None:
        return None
    if not _FLOAT.fullmatch(raw) or not lo <= float(raw) <= hi:
        raise HttpError(400, f"{name} must be a number {lo:g}..{hi:g}, got {raw[:32]!r}")
    return float(raw)


def since_param(q: Mapping[str, str]) -> int | None:
    raw = q.get("since")
    if raw is None:
        return None
    if not _SINCE.fullmatch(raw):
        raise HttpError(400, f"since must be a whole second (a t of /api/series), got {raw[:32]!r}")
    return int(raw)


def flag_param(q: Mapping[str, str], name: str) -> bool:
    raw = q.get(name)
    if raw is None:
        return False
    if raw.lower() not in _FLAGS:
        raise HttpError(400, f"{name} must be 1 or 0 (true or false), got {raw[:32]!r}")
    return _FLAGS[raw.lower()]


class App:
    """Routes and connections. All methods run on the loop's thread."""

    def __init__(
        self,
        cfg: ServeConfig,
        hub: FrameHub,
        *,
        stats: Callable[[], dict[str, Any]],
        health: Callable[[], tuple[bool, str]],
        metrics: Callable[[], EdgeMetrics | None],
        misses: deque[MissRecord],
        static: Mapping[str, tuple[bytes, str]],
    ) -> None:
        self.cfg, self.hub, self.stats, self.health = cfg, hub, stats, health
        self.metrics, self.misses, self.static = metrics, misses, static
        self._token = cfg.token.encode() if cfg.token else None
        self.connections = 0
        self.closing = False  # the server is stopping: close connections at once
        self.max_connections = cfg.max_clients + 64
        self.dropped: Counter[str] = Counter()  # viewers cut off, by reason
        self.viewers_changed = threading.Condition()  # notified when a viewer comes or goes
        self.series: SeriesRecorder | None = None
        self._series_task: asyncio.Task[None] | None = None
        self._series_asked = 0.0  # loop time of the last /api/series request
        self.routes: dict[str, Handler] = {
            "/": self._page,
            "/index.html": self._page,
            "/snapshot.jpg": self._snapshot,
            "/api/stats": self._stats,
            "/api/misses": self._misses,
            "/api/series": self._series,
            "/metrics": self._metrics,
        }

    # -- connections ------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.connections > self.max_connections:
                err = HttpError(503, "too many connections", [("Retry-After", "5")])
                writer.write(error_response(err).encode(keep_alive=False))
                await self._drain(writer)
                await _linger(reader, writer)
                return
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.TimeoutError):
            pass
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self.connections -= 1
            await _close(writer, abort=self.closing)

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open for another."""
        try:
            req = await read_request(reader, self.cfg.client_timeout_s)
        except HttpError as e:
            writer.write(error_response(e).encode(keep_alive=False))
            await self._drain(writer)
            return False
        if req is None:
            return False
        if req.path == "/stream.mjpg" and req.method == "GET":
            await self._guarded_stream(req, writer)
            return False
        try:
            resp = await self._route(req)
        except HttpError as e:
            resp = error_response(e)
        keep = req.keep_alive and resp.status < 400
        writer.write(resp.encode(keep_alive=keep, head_only=req.method == "HEAD"))
        await self._drain(writer)
        return keep

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(writer.drain(), self.cfg.client_timeout_s)

    async def _route(self, req: Request) -> Response:
        if req.path == "/healthz":
            return self._healthz()
        self._authorize(req)
        handler = self.routes.get(req.path)
        if handler is not None:
            return await handler(req)
        if req.path == "/stream.mjpg":  # HEAD
            return Response(200, b"", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        name = req.path.removeprefix("/static/")
        if req.path.startswith("/static/") and name in self.static and name != "index.html":
            body, ctype = self.static[name]
            return Response(200, body, ctype)
        raise HttpError(404, f"no such path: {req.path[:100]}")

    def _authorize(self, req: Request) -> None:
        if self._token is None:
            return
        given = req.query.get("token")
        auth = req.headers.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() == "bearer" and cred.strip():
            given = cred.strip()
        if given is None:
            raise HttpError(401, "a token is required: ?token=... or Authorization: Bearer",
                            [("WWW-Authenticate", 'Bearer realm="edge"')])  # fmt: skip
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self._token):
            raise HttpError(
                401, "wrong token", [("WWW-Authenticate", 'Bearer error="invalid_token"')]
            )

    # -- endpoints --------------------------------------------------------------------------
    async def _page(self, req: Request) -> Response:
        body, ctype = self.static["index.html"]
        if self._token is not None:  # the page's own files need the token too
            tok = quote(self.cfg.token or "", safe="").encode()
            body = _ASSET.sub(lambda m: b'%s="static/%s?token=%s"' % (m[1], m[2], tok), body)
        csp = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'"
        )
        return Response(200, body, ctype, (("Content-Security-Policy", csp),))

    def _healthz(self) -> Response:
        ok, reason = self.health()
        return json_response(200 if ok else 503, {"ok": ok, "reason": reason})

    async def _stats(self, req: Request) -> Response:
        return json_response(200, self.stats())

    async def _misses(self, req: Request) -> Response:
        limit = int_param(req.query, "limit", *LIMIT_RANGE) or DEFAULT_MISSES
        records = list(self.misses)[-limit:]
        records.reverse()  # newest first
        return json_response(200, {"misses": [r.as_dict() for r in records],
                                   "kept": len(self.misses)})  # fmt: skip

    def attach_series(self, recorder: SeriesRecorder) -> None:
        """What ``/api/series`` folds and serves; before the server starts."""
        self.series = recorder

    async def _series(self, req: Request) -> Response:
        since = since_param(req.query)
        stages = flag_param(req.query, "stages")
        rec = self.series
        if rec is None:
            return json_response(200, no_series(stages))
        loop = asyncio.get_running_loop()
        self._series_asked = loop.time()
        if not rec.started:
            rec.start()  # before the first answer: it says "recording"
        if self._series_task is None and not self.closing:
            self._series_task = loop.create_task(self._series_ticks())
        return json_response(200, rec.as_json(since, stages))

    async def _series_ticks(self) -> None:
        """Once a second, just after the clock's whole second, while someone asked for the
        series in the last ``SERIES_LINGER_S``; then nothing at all until the next request.
        Follows :meth:`attach_series` (a runner that attaches a new pipeline)."""
        loop = asyncio.get_running_loop()
        rec: SeriesRecorder | None = None
        try:
            while not self.closing and loop.time() - self._series_asked < SERIES_LINGER_S:
                if self.series is not rec and self.series is not None:
                    if rec is not None:
                        rec.stop()
                    rec = self.series
                    if not rec.started:
                        rec.start()
                assert rec is not None
                into = (rec.clock.now_ns() - TICK_OFFSET_NS) % 1_000_000_000
                await asyncio.sleep((1_000_000_000 - into) / 1e9)  # a timer, not a handshake
                rec.tick()
        except asyncio.CancelledError:
            pass  # the server is stopping
        except Exception:
            log.exception("the latency series failed; /api/series stops updating")
        finally:
            for r in (rec, self.series):
                if r is not None:
                    r.stop()
            self._series_task = None

    async def _metrics(self, req: Request) -> Response:
        metrics = self.metrics()
        if metrics is None:
            raise HttpError(503, "metrics start with the pipeline; no pipeline is attached yet")
        body, ctype = metrics.exposition()  # a few hundred lines of text: no thread needed
        return Response(200, body, ctype)

    async def _snapshot(self, req: Request) -> Response:
        width = int_param(req.query, "width", *WIDTH_RANGE)
        rendered = await self.hub.snapshot()
        if rendered is None:
            raise HttpError(503, "no frame yet: the pipeline has not produced one",
                            [("Retry-After", "1")])  # fmt: skip
        body = await self.hub.jpeg(rendered, width)
        return Response(200, body, "image/jpeg", (("X-Frame-Seq", str(rendered.seq)),))

    # -- the stream -------------------------------------------------------------------------
    async def _guarded_stream(self, req: Request, writer: asyncio.StreamWriter) -> None:
        try:
            self._authorize(req)
            fps = float_param(req.query, "fps", *FPS_RANGE)
            width = int_param(req.query, "width", *WIDTH_RANGE)
            if self.hub.watchers >= self.cfg.max_clients:
                raise HttpError(503, f"all {self.cfg.max_clients} stream slots are taken; "
                                "try again later or raise serve.max_clients",
                                [("Retry-After", "5")])  # fmt: skip
        except HttpError as e:
            writer.write(error_response(e).encode(keep_alive=False))
            await self._drain(writer)
            return
        period = 1.0 / min(fps or self.cfg.stream_fps, self.cfg.stream_fps)
        self.hub.watch(width)
        self._viewers_changed()
        try:
            await self._stream(writer, period, width)
        finally:
            self.hub.unwatch(width)
            self._viewers_changed()

    def _viewers_changed(self) -> None:
        with self.viewers_changed:
            self.viewers_changed.notify_all()

    def wait_viewers(self, predicate: Callable[[App], bool], timeout_s: float) -> bool:
        """Block (another thread than the loop's) until ``predicate(self)`` holds after a
        viewer came or went; for operators' tools and tests."""
        with self.viewers_changed:
            return self.viewers_changed.wait_for(lambda: predicate(self), timeout_s)

    async def _stream(self, writer: asyncio.StreamWriter, period: float, width: int | None) -> None:
        loop = asyncio.get_running_loop()
        ctype = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        writer.write(head_bytes(200, [("Content-Type", ctype)], keep_alive=False))
        timeout = self.cfg.client_timeout_s
        keepalive = min(timeout / 2, 5.0)  # resend the last frame when the pipeline is quiet
        version, next_due = 0, loop.time()
        while True:
            wait = next_due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # this viewer's own rate cap
            rendered = await self.hub.newer(version, keepalive) or self.hub.current
            if rendered is None:
                continue
            jpeg = await self.hub.jpeg(rendered, width)
            writer.write(_part(jpeg, rendered.seq))
            try:
                await asyncio.wait_for(writer.drain(), timeout)
            except asyncio.TimeoutError:
                self.dropped["slow"] += 1
                log.info("a viewer took more than %.1f s for one frame: disconnected", timeout)
                return
            version, next_due = rendered.version, max(next_due + period, loop.time())


def _part(jpeg: bytes, seq: int) -> bytes:
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
        f"X-Frame-Seq: {seq}\r\n\r\n"
    )
    return head.encode() + jpeg + b"\r\n"


async def _close(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    if writer.transport.is_closing():
        return
    if abort or writer.transport.get_write_buffer_size():  # stopping, or a client not reading
        writer.transport.abort()
        return
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        writer.transport.abort()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and take what the client already sent before closing, briefly: closing a
    socket with unread input sends a reset, which can destroy the response in flight (the
    client would see ECONNRESET instead of our 503)."""
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(reader.read(65536), LINGER_S)
