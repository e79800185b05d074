"""A small HTTP/1.1 for asyncio streams: read one request head, write one response.

Only what the viewer needs: ``GET`` and ``HEAD`` without a body, keep-alive, and fixed-length
or streamed responses. Anything else is refused early with the status that says why (400,
405, 413, 431, 505), so nothing a client sends can make the server buffer more than one
bounded request head.

The connection's guard (:mod:`edge.serve.guard`), when the server set one in
:data:`CONNECTION`, gives the deadlines for reading a head and checks each head it reads
(host name, token lockout) before the request goes anywhere.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

#: the most a request head may take (request line + headers)
MAX_HEAD_BYTES = 16 * 1024
MAX_QUERY_FIELDS = 16

#: headers every response carries: nothing is cached, nothing is sniffed, nothing framed
BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


class HttpError(Exception):
    """A request the server refuses; ``message`` goes to the client as JSON."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, tuple(headers)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased
    version: str

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


class Gate(Protocol):
    """What :func:`read_request` asks of the connection it reads (``edge.serve.guard.Conn``)."""

    displaced: bool

    def deadlines(self, idle_s: float) -> tuple[float, float]:
        """(seconds to wait for the head's first byte, seconds from it to the head's end)."""
        ...

    def reading(self, waiting: bool) -> None:
        """Whether the connection is waiting for a request head (and so may be displaced)."""
        ...

    def check(self, req: Request) -> None:
        """Raise :class:`HttpError` for a head that must not reach the endpoints."""
        ...


#: the current connection's gate, set by the server for each connection's task
CONNECTION: ContextVar[Gate | None] = ContextVar("edge_serve_connection", default=None)


async def read_request(
    reader: asyncio.StreamReader, timeout_s: float, *, gate: Gate | None = None
) -> Request | None:
    """The next request head, or None when the client closed (or idled ``timeout_s``)
    before sending a byte of it. Raises :class:`HttpError` for a bad or oversized head, one
    not complete within the gate's head deadline (408), or one the gate refuses."""
    gate = gate if gate is not None else CONNECTION.get()
    if gate is None:
        return await _read_head(reader, timeout_s, None)
    gate.reading(True)
    try:
        req = await _read_head(reader, *gate.deadlines(timeout_s))
    except HttpError:
        if gate.displaced:  # closed to make room: nobody to answer
            return None
        raise
    finally:
        gate.reading(False)
    if req is None or gate.displaced:
        return None
    gate.check(req)
    return req


async def _read_head(
    reader: asyncio.StreamReader, idle_s: float, head_s: float | None
) -> Request | None:
    """A head whose first byte comes within ``idle_s`` and whose end within ``head_s`` of it
    (``head_s`` None: the whole head within ``idle_s``)."""
    first = b""
    try:
        if head_s is not None:
            first = await asyncio.wait_for(reader.readexactly(1), idle_s)
        rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), head_s or idle_s)
    except asyncio.IncompleteReadError as e:
        if not (first + e.partial).strip():
            return None
        raise HttpError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes") from None
    except asyncio.TimeoutError:
        if first and head_s is not None:
            raise HttpError(408, f"request head not complete within {head_s:g} s") from None
        return None
    except ConnectionError:
        return None
    return parse_head(first + rest)


def parse_head(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "request head is not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"HTTP version {version[:16]!r} not supported: use HTTP/1.1")
    headers = _headers(lines[1:])
    if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
        raise HttpError(413, "request bodies are not accepted: every endpoint is GET")
    if method not in ("GET", "HEAD"):
        raise HttpError(405, f"method {method[:16]} not allowed", [("Allow", "GET, HEAD")])
    if not target.startswith("/"):
        raise HttpError(400, "request target must be a path starting with /")
    url = urlsplit(target)
    return Request(method, unquote(url.path), _query(url.query), headers, version)


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    return headers


def _query(qs: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(qs, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise HttpError(400, f"more than {MAX_QUERY_FIELDS} query parameters") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise HttpError(400, f"query parameter {key!r} given twice; give it once")
        out[key] = value
    return out


def head_bytes(status: int, headers: Iterable[tuple[str, str]], *, keep_alive: bool) -> bytes:
    """Status line and headers, blank line included."""
    reason = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in (*BASE_HEADERS, *headers)]
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, keep_alive: bool, head_only: bool = False) -> bytes:
        hdrs = (
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *self.headers,
        )
        return head_bytes(self.status, hdrs, keep_alive=keep_alive) + (
            b"" if head_only else self.body
        )


def json_response(status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(status, body, "application/json", tuple(headers))


def error_response(err: HttpError) -> Response:
    return json_response(err.status, {"error": err.message, "status": err.status}, err.headers)
