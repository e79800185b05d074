"""``[serve]``: the HTTP viewer's settings, and the ``HOST:PORT`` parser behind ``--http``.

Frozen and validated at construction, like every config section: a bad value in a TOML file
or on the command line is a :class:`~edge.errors.ConfigError` naming the key and what is
accepted. Nothing here reads the environment.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from edge.errors import ConfigError
from edge.validate import check_range

#: the address the server binds when ``--http`` names only a port: the device itself, so a
#: viewer on the LAN is an explicit choice (``--http 0.0.0.0:8080``)
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def parse_bind(value: str, key: str = "serve.http") -> Bind:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); port 0 picks a
    free one (tests)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"{key} = {value!r}: expected [IPV6]:PORT, e.g. [::1]:8080")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = "", text
    host = host or DEFAULT_HOST
    if not (port.isascii() and port.isdigit()) or len(port) > 5:
        raise ConfigError(
            f"{key} = {value!r}: expected HOST:PORT with a numeric port, e.g. 127.0.0.1:8080 "
            "or 0.0.0.0:8080 to let the LAN in"
        )
    check_range(f"{key} port", int(port), 0, 65535)
    if not _host_ok(host):
        raise ConfigError(
            f"{key} = {value!r}: {host!r} is neither an IP address nor a host name; "
            "use 127.0.0.1 (this device only), 0.0.0.0 (every interface) or an address of it"
        )
    return Bind(host, int(port))


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.split(".")
        return all(label and label.replace("-", "").isalnum() for label in labels)


@dataclass(frozen=True)
class ServeConfig:
    """``[serve]``: the live page, the MJPEG stream, the JSON API and ``/metrics``.

    http              ``HOST:PORT`` to serve on; None: no server (``--http``)
    token             when set, every endpoint but ``/healthz`` wants it, as
                      ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (``--http-token``)
    max_clients       concurrent ``/stream.mjpg`` viewers; one more gets 503
    stream_fps        the most overlay frames drawn and encoded per second, whoever watches;
                      a viewer's ``?fps=`` can only lower its own rate
    client_timeout_s  a viewer that has not taken a whole frame (or a request) in this long is
                      disconnected; also the keep-alive idle limit
    header_timeout_s  a request head must be complete this long after its first byte (408),
                      and a new connection must send that byte within it
    max_connections_per_client
                      connections one client address (IPv6: its /64) may hold; past it, its
                      oldest connection still waiting for a request is closed, or 503
    allowed_hosts     ``Host`` names accepted besides IP addresses, ``localhost`` and this
                      machine's name (DNS rebinding): ``cam.example.com``, ``.example.com``
                      (the domain and its subdomains), ``*`` (any) (``--http-allow-host``)
    jpeg_quality      1 .. 100
    health_budgets    ``/healthz`` is 503 once no frame has completed for this many budgets
    misses_kept       the latest miss records kept for ``/api/misses``
    """

    http: str | None = None
    token: str | None = None
    max_clients: int = 8
    stream_fps: float = 15.0
    client_timeout_s: float = 10.0
    header_timeout_s: float = 5.0
    max_connections_per_client: int = 16
    allowed_hosts: tuple[str, ...] = ()
    jpeg_quality: int = 80
    health_budgets: float = 5.0
    misses_kept: int = 200

    def __post_init__(self) -> None:
        if self.http is not None:
            parse_bind(self.http)
        if self.token is not None and (
            len(self.token) < 8
            or not self.token.isprintable()
            or any(c.isspace() for c in self.token)
        ):
            raise ConfigError(
                "serve.token must be at least 8 printable characters without spaces; "
                "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe())'"
            )
        check_range("serve.max_clients", self.max_clients, 1, 1000)
        check_range("serve.stream_fps", self.stream_fps, 0.1, 120.0)
        check_range("serve.client_timeout_s", self.client_timeout_s, 0.1, 3600.0)
        check_range("serve.header_timeout_s", self.header_timeout_s, 0.1, 600.0)
        check_range("serve.max_connections_per_client", self.max_connections_per_client, 1, 1064)
        for name in self.allowed_hosts:
            if not (name == "*" or _host_ok(name.removeprefix("."))):
                raise ConfigError(
                    f"serve.allowed_hosts: {name!r} is not a host name; give names such as "
                    "cam.example.com, .example.com (a domain and its subdomains) or *"
                )
        check_range("serve.jpeg_quality", self.jpeg_quality, 1, 100)
        check_range("serve.health_budgets", self.health_budgets, 1.0, 10_000.0)
        check_range("serve.misses_kept", self.misses_kept, 1, 100_000)

    @property
    def bind(self) -> Bind:
        return parse_bind(self.http or f"{DEFAULT_HOST}:8080")
