"""Who may hold a connection, for how long, under which name: the listener's defences.

An idle or slow client must not be able to take the server (and with it ``/healthz``) away
from everyone else, a web page on a rebinding domain must not read the camera, and a token
must not be guessable at thousands of tries a second. The rules:

* **Caps.** At most ``max_clients + 64`` connections in all and ``max_connections_per_client``
  from one client address (an IPv6 client's whole /64). A connection that is still waiting
  for a request head (new, or idle between keep-alive requests) is the cheapest to lose: when
  a cap is reached, the oldest such connection (from that address, for its cap) is closed to
  make room, so a flood of silent sockets only ever displaces itself. Streams and responses
  in flight are never displaced.
* **Deadlines.** A request head must be complete ``header_timeout_s`` after its first byte
  (408 otherwise), and a new connection must send that byte within ``header_timeout_s``: a
  byte every few seconds no longer holds a slot.
* **Reserved slots.** When every connection is busy, a newcomer gets one of
  :data:`HEALTH_RESERVE` reserved slots, where only ``/healthz`` is answered (the rest: 503
  with ``Retry-After``); past those, 503 at once. Refusals are logged once per
  :data:`REFUSED_LOG_INTERVAL_NS` with their count, never once per connection.
* **Host names** (DNS rebinding): a request whose ``Host`` is a name this server was not told
  about is 403. See :class:`HostNames`.
* **Token guessing.** Past :data:`FREE_FAILURES` wrong tokens, an address waits (429 with
  ``Retry-After``, doubling up to :data:`MAX_LOCKOUT_NS`) before it may try again.

The server (:class:`edge.serve.server.Server`) opens a :class:`Conn` per accepted socket
and puts it in :data:`edge.serve.http.CONNECTION`; :func:`edge.serve.http.read_request` asks
it for its deadlines and checks each request head with it, so the endpoints need not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import math
import socket
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edge.clock import MONOTONIC, Clock
from edge.serve.config import Bind, ServeConfig
from edge.serve.http import (
    HttpError,
    Request,
    error_response,
    json_response,
    read_request,
)

log = logging.getLogger(__name__)

#: connections beyond the caps that may still ask for ``/healthz``
HEALTH_RESERVE = 8
#: the "refusing connections" warning at most this often (with the count since the last one)
REFUSED_LOG_INTERVAL_NS = 60_000_000_000
#: wrong tokens an address may send before it has to wait
FREE_FAILURES = 5
FIRST_LOCKOUT_NS = 1_000_000_000
MAX_LOCKOUT_NS = 60_000_000_000
#: an address's failures are forgotten after this long without one
FORGET_FAILURES_NS = 600_000_000_000
#: addresses whose failures are remembered at most (the oldest are forgotten first)
MAX_TRACKED = 4096
#: how long a refused connection is drained before it is closed
LINGER_S = 0.5


def client_key(peer: Any) -> str:
    """The address a cap or a lockout applies to: an IPv4 address, or an IPv6 client's /64
    (one host has a whole /64 to pick from); an IPv4-mapped IPv6 address as IPv4."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(str(host).partition("%")[0])
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class HostNames:
    """The ``Host`` header values a request may carry.

    A DNS-rebinding page is served from the attacker's *name*, which the browser puts in
    ``Host``; an IP address in ``Host`` means the URL had one, and then the browser's same-
    origin rule already keeps other sites out. So accepted are: any IP address literal (the
    bound one, or a LAN or NAT address the device is reached at), ``localhost`` and
    ``*.localhost``, this machine's host name and ``NAME.local`` (mDNS, as a Pi is usually
    reached), and ``serve.allowed_hosts``: exact names, ``.example.com`` for a domain and its
    subdomains, or ``*`` for any. A request without ``Host`` (HTTP/1.0) is accepted."""

    def __init__(self, allowed: Iterable[str], hostname: str | None = None) -> None:
        own = (hostname if hostname is not None else socket.gethostname()).lower().rstrip(".")
        names = {n.lower().rstrip(".") for n in allowed}
        self.any = "*" in names
        self.suffixes = tuple(n for n in names if n.startswith("."))
        self.exact = {n for n in names if not n.startswith(".")} | {"localhost"}
        if own:
            self.exact |= {own, own.partition(".")[0] + ".local"}

    def allows(self, host_header: str | None) -> bool:
        if host_header is None or self.any:
            return True
        name = host_name(host_header)
        if name is None:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            pass
        if name in self.exact or name.endswith(".localhost"):
            return True
        return any(name.endswith(s) or name == s[1:] for s in self.suffixes)


def host_name(value: str) -> str | None:
    """``Host`` without its port, lower-cased, without a trailing dot; None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, sep, port = value.rpartition(":")
    if not sep:
        name = port
    elif not port.isdigit():
        return None
    name = name.rstrip(".")
    return name or None


@dataclass(eq=False)
class Conn:
    """One accepted connection, as the guard sees it."""

    guard: Guard
    key: str
    close: Callable[[], None]  # aborts the socket
    task: asyncio.Task[Any] | None = None
    waiting: bool = True  # for a request head: the connection may be displaced
    first: bool = True  # no request yet: the head's deadline runs from the connection's start
    displaced: bool = False

    # -- what edge.serve.http.read_request asks --------------------------------------------
    def deadlines(self, idle_s: float) -> tuple[float, float]:
        """The head's first byte within ``header_timeout_s`` of a new connection (``idle_s``
        between keep-alive requests), and its end within ``header_timeout_s`` of that byte."""
        head_s = self.guard.cfg.header_timeout_s
        return (head_s if self.first else idle_s), head_s

    def reading(self, waiting: bool) -> None:
        self.waiting = waiting
        if not waiting:
            self.first = False

    def check(self, req: Request) -> None:
        """Raise the HttpError a request head gets before it reaches an endpoint."""
        self.guard.check(self.key, req)


@dataclass
class _Failures:
    count: int = 0
    last_ns: int = 0
    locked_until_ns: int = 0


@dataclass
class Guard:
    """The caps, the reserve, the refusal log, the host names and the token lockouts."""

    cfg: ServeConfig
    clock: Clock = MONOTONIC
    hostname: str | None = None
    conns: dict[Conn, None] = field(default_factory=dict)  # ordered: oldest first
    per_key: Counter[str] = field(default_factory=Counter)
    reserve_in_use: int = 0
    refused: int = 0
    displaced: int = 0
    locked_out: int = 0
    _refused_unlogged: int = 0
    _busy: str = ""  # why the last newcomer was refused
    _refused_logged_ns: int | None = None
    _failures: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.max_total = self.cfg.max_clients + 64
        self.max_per_key = self.cfg.max_connections_per_client
        self.hosts = HostNames(self.cfg.allowed_hosts, self.hostname)
        self._token = self.cfg.token.encode() if self.cfg.token else None

    # -- admission --------------------------------------------------------------------------
    def open(self, peer: Any, close: Callable[[], None]) -> tuple[Conn | None, Conn | None]:
        """(the new connection or None when refused, the one displaced to make room)."""
        key = client_key(peer)
        victim = None
        if self.per_key[key] >= self.max_per_key:
            victim = self._oldest_waiting(key)
            if victim is None:
                self._busy = f"{key} holds its {self.max_per_key} connections"
                return None, None
            self._displace(victim)
        if len(self.conns) >= self.max_total:
            extra = self._oldest_waiting(None)
            if extra is None:
                self._busy = f"all {self.max_total} connections are taken"
                return None, victim
            self._displace(extra)
            victim = victim or extra
        conn = Conn(self, key, close)
        self.conns[conn] = None
        self.per_key[key] += 1
        return conn, victim

    def release(self, conn: Conn) -> None:
        """Stop counting ``conn`` (once: a displaced one was released when displaced)."""
        if conn not in self.conns:
            return
        del self.conns[conn]
        self.per_key[conn.key] -= 1
        if self.per_key[conn.key] <= 0:
            del self.per_key[conn.key]

    def _oldest_waiting(self, key: str | None) -> Conn | None:
        for c in self.conns:  # oldest first; bounded by max_total
            if c.waiting and (key is None or c.key == key):
                return c
        return None

    def _displace(self, conn: Conn) -> None:
        self.release(conn)
        conn.displaced = True
        self.displaced += 1
        conn.close()

    async def refuse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        health: Callable[[], tuple[bool, str]],
    ) -> None:
        """A newcomer when every connection is busy: ``/healthz`` from a reserved slot, else
        503 with ``Retry-After``; past the reserve, 503 without reading the request."""
        self._note_refused()
        busy = HttpError(503, "too many connections", [("Retry-After", "5")])
        if self.reserve_in_use >= HEALTH_RESERVE:
            writer.write(error_response(busy).encode(keep_alive=False))
            await _linger(reader, writer)
            return
        self.reserve_in_use += 1
        try:
            try:
                req = await read_request(reader, self.cfg.header_timeout_s)
            except HttpError as e:
                writer.write(error_response(e).encode(keep_alive=False))
            else:
                if req is not None and req.path == "/healthz":
                    ok, reason = health()
                    resp = json_response(200 if ok else 503, {"ok": ok, "reason": reason})
                    writer.write(resp.encode(keep_alive=False, head_only=req.method == "HEAD"))
                elif req is not None:
                    writer.write(error_response(busy).encode(keep_alive=False))
            await _linger(reader, writer)
        finally:
            self.reserve_in_use -= 1

    def _note_refused(self) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        now = self.clock.now_ns()
        last = self._refused_logged_ns
        if last is not None and now - last < REFUSED_LOG_INTERVAL_NS:
            return
        log.warning(
            "refusing HTTP connections: %d refused%s; last because %s, every one busy "
            "(streams or responses in flight); the caps are serve.max_clients + 64 in all "
            "and serve.max_connections_per_client per client address",
            self._refused_unlogged,
            "" if last is None else f" in the last {(now - last) / 1e9:.0f} s",
            self._busy,
        )
        self._refused_logged_ns, self._refused_unlogged = now, 0

    # -- request heads ----------------------------------------------------------------------
    def check(self, key: str, req: Request) -> None:
        if req.path == "/healthz":  # like the token: a probe may use any name and none
            return
        host = req.headers.get("host")
        if not self.hosts.allows(host):
            raise HttpError(
                403,
                f"Host {str(host)[:100]!r} is not a name of this server; if it is, add it to "
                "serve.allowed_hosts (--http-allow-host)",
            )
        if self._token is not None:
            self._check_token(key, req)

    def _check_token(self, key: str, req: Request) -> None:
        """Count wrong tokens per address and make it wait past :data:`FREE_FAILURES`. The
        endpoint itself still answers 401 for a wrong or missing token."""
        now = self.clock.now_ns()
        f = self._failures.get(key)
        if f is not None and now - f.last_ns > FORGET_FAILURES_NS:
            del self._failures[key]
            f = None
        if f is not None and now < f.locked_until_ns:
            self.locked_out += 1
            wait_s = math.ceil((f.locked_until_ns - now) / 1e9)
            raise HttpError(
                429,
                f"too many wrong tokens from this address: try again in {wait_s} s",
                [("Retry-After", str(wait_s))],
            )
        given = presented_token(req)
        if given is None or self._token is None:
            return
        if hmac.compare_digest(given.encode("utf-8", "replace"), self._token):
            self._failures.pop(key, None)
            return
        if f is None:
            f = self._failures[key] = _Failures()
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
        self._failures.move_to_end(key)
        f.count += 1
        f.last_ns = now
        if f.count >= FREE_FAILURES:
            lock = FIRST_LOCKOUT_NS << min(f.count - FREE_FAILURES, 16)
            f.locked_until_ns = now + min(lock, MAX_LOCKOUT_NS)

    def stats(self) -> dict[str, int]:
        return {
            "open": len(self.conns),
            "refused": self.refused,
            "displaced": self.displaced,
            "token_lockouts": self.locked_out,
        }


def presented_token(req: Request) -> str | None:
    """The token a request carries: ``Authorization: Bearer T``, else ``?token=T``."""
    scheme, _, cred = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and cred.strip():
        return cred.strip()
    return req.query.get("token")


def exposure_warning(bind: Bind, token: str | None) -> str | None:
    """The start-up warning for a listener other machines can reach without a token."""
    if token:
        return None
    try:
        ip = ipaddress.ip_address(bind.host)
        local = ip.is_loopback
    except ValueError:
        local = bind.host.lower() == "localhost"
    if local:
        return None
    return (
        f"serving on {bind.host}:{bind.port} without a token: anyone who can reach this "
        "address can watch the camera; set serve.token (--http-token), or bind 127.0.0.1"
    )


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and take what the client already sent, briefly, before the close: closing
    with unread input sends a reset, which can destroy the 503 in flight."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), LINGER_S)
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(reader.read(65536), LINGER_S)
