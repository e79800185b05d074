"""``[mqtt]``: where and how a device reports to an MQTT broker, validated at load.

Nothing here touches the network, the filesystem or the environment: the password's file or
variable is read by :func:`resolve_password`, given the environment by the caller, when the
output is built. The password itself is kept out of ``repr`` (and so out of any log line that
prints the config); a password inside the URL is refused, because a URL ends up in ``ps``,
shell history and unit files.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edge.errors import ConfigError
from edge.validate import check_range

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
#: characters MQTT gives a meaning in topic filters; none may appear in a topic level we build
_TOPIC_SPECIAL = frozenset("+#/\0")


@dataclass(frozen=True)
class Broker:
    """A parsed ``mqtt://`` or ``mqtts://`` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_url(url: str, key: str = "mqtt.url") -> Broker:
    """``mqtt://[USER@]HOST[:PORT]`` (1883) or ``mqtts://...`` (8883, TLS)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ConfigError(
            f"{key} = {url!r} is not a URL ({e}): expected mqtt://HOST:PORT"
        ) from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"{key} = {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS), "
            f"got scheme {parts.scheme!r}"
        )
    if parts.password is not None:
        raise ConfigError(
            f"{key}: a password in the URL would show in `ps`, shell history and unit files; "
            "put it in mqtt.password_file or name a variable in mqtt.password_env"
        )
    if not parts.hostname:
        raise ConfigError(f"{key} = {url!r}: no host; expected mqtt://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{key} = {url!r}: expected no path or query after HOST:PORT")
    if port == 0:
        raise ConfigError(f"{key} = {url!r}: port 0 is not a broker port; expected 1 .. 65535")
    user = unquote(parts.username) if parts.username else None
    return Broker(parts.hostname, port or SCHEMES[parts.scheme], parts.scheme == "mqtts", user)


def check_topic_level(key: str, value: str) -> None:
    if not value or _TOPIC_SPECIAL & set(value) or len(value) > 128:
        raise ConfigError(
            f"{key} = {value!r}: expected 1 .. 128 characters without / + # (one topic level)"
        )


def check_prefix(key: str, value: str) -> None:
    for level in value.split("/"):
        if not level or {"+", "#", "\0"} & set(level):
            raise ConfigError(
                f"{key} = {value!r}: expected topic levels separated by single /, without "
                "wildcards or a leading or trailing /, e.g. edge or site1/edge"
            )


def topic_level(text: str) -> str:
    """``text`` made safe as one topic level (class labels, host names): specials become _."""
    out = "".join("_" if c in _TOPIC_SPECIAL or c.isspace() else c for c in text.strip())
    return out[:128] or "_"


@dataclass(frozen=True)
class Topics:
    """The topic layout under ``PREFIX/DEVICE`` (docs/MQTT_SCHEMA.md)."""

    base: str  # PREFIX/DEVICE

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    def presence(self, label: str) -> str:
        return f"{self.base}/presence/{topic_level(label)}"


def default_device() -> str:
    """The host name, as one topic level."""
    return topic_level(socket.gethostname())


@dataclass(frozen=True)
class MqttConfig:
    """``[mqtt]``: events, summaries and status to a broker (docs/MQTT_SCHEMA.md).

    url                 ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``; None: no MQTT
                        (``--mqtt URL``); a user name may be given as ``mqtt://USER@HOST``
    prefix              topics are ``PREFIX/DEVICE/{status,events,stats,presence/CLASS}``
    device              this device's topic level; the host name when unset
    client_id           the MQTT client id; ``edge-DEVICE`` when unset (two clients with one
                        id knock each other off the broker)
    summary_interval_s  a ``stats`` message this often, and one at shutdown
    debounce_s          a class must be in every frame this long before ``appeared``
    leave_s             ... and in none this long before ``left``; debounce_s when unset
    stall_s             health turns bad when no frame has completed for this long
    qos_events, qos_stats, qos_status
                        QoS of events and presence, of stats, of status (and the last will)
    queue_size          messages kept while the broker is away or slow; the oldest are
                        dropped (and counted) beyond it
    inflight            messages handed to the client library but not yet acknowledged
    keepalive_s         MQTT keep-alive; the broker declares the device gone (and sends the
                        last will) after 1.5x this without a packet
    reconnect_min_s, reconnect_max_s
                        backoff between reconnect attempts (doubling from min to max)
    connect_timeout_s   one connection attempt's bound
    stop_timeout_s      at shutdown, how long to wait for the final messages to be delivered
    tls_ca              CA file for ``mqtts``; the system's CAs when unset
    tls_cert, tls_key   client certificate and key, for brokers that ask for one
    username            the user name (or in the URL)
    password, password_file, password_env
                        at most one: the password itself (avoid: config files get copied),
                        a file holding it (first line), or the name of an environment variable
    """

    url: str | None = None
    prefix: str = "edge"
    device: str | None = None
    client_id: str | None = None
    summary_interval_s: float = 10.0
    debounce_s: float = 1.0
    leave_s: float | None = None
    stall_s: float = 5.0
    qos_events: int = 1
    qos_stats: int = 0
    qos_status: int = 1
    queue_size: int = 1000
    inflight: int = 100
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    connect_timeout_s: float = 5.0
    stop_timeout_s: float = 1.0
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None

    def __post_init__(self) -> None:
        broker = parse_url(self.url) if self.url is not None else None
        check_prefix("mqtt.prefix", self.prefix)
        if self.device is not None:
            check_topic_level("mqtt.device", self.device)
        if self.client_id is not None and not 1 <= len(self.client_id) <= 128:
            raise ConfigError("mqtt.client_id must be 1 .. 128 characters")
        self._check_numbers()
        self._check_tls(broker)
        self._check_credentials(broker)

    def _check_numbers(self) -> None:
        check_range("mqtt.summary_interval_s", self.summary_interval_s, 0.5, 86_400.0)
        check_range("mqtt.debounce_s", self.debounce_s, 0.0, 3600.0)
        if self.leave_s is not None:
            check_range("mqtt.leave_s", self.leave_s, 0.0, 3600.0)
        check_range("mqtt.stall_s", self.stall_s, 0.1, 3600.0)
        for key in ("qos_events", "qos_stats", "qos_status"):
            check_range(f"mqtt.{key}", getattr(self, key), 0, 2)
        check_range("mqtt.queue_size", self.queue_size, 1, 1_000_000)
        check_range("mqtt.inflight", self.inflight, 1, 65_535)
        check_range("mqtt.keepalive_s", self.keepalive_s, 5, 65_535)
        check_range("mqtt.reconnect_min_s", self.reconnect_min_s, 1, 3600)
        check_range("mqtt.reconnect_max_s", self.reconnect_max_s, self.reconnect_min_s, 3600)
        check_range("mqtt.connect_timeout_s", self.connect_timeout_s, 0.1, 600.0)
        check_range("mqtt.stop_timeout_s", self.stop_timeout_s, 0.0, 60.0)

    def _check_tls(self, broker: Broker | None) -> None:
        given = [k for k in ("tls_ca", "tls_cert", "tls_key") if getattr(self, k) is not None]
        if given and broker is not None and not broker.tls:
            raise ConfigError(
                f"mqtt.{given[0]} is set but mqtt.url is mqtt://: use mqtts://HOST[:PORT] "
                "for TLS, or remove the tls_ keys"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("mqtt.tls_cert and mqtt.tls_key must be given together")

    def _check_credentials(self, broker: Broker | None) -> None:
        sources = [k for k in ("password", "password_file", "password_env") if getattr(self, k)]
        if len(sources) > 1:
            raise ConfigError(
                f"mqtt: {' and '.join(sources)} are all set; give the password one way only"
            )
        if broker is not None and broker.username and self.username:
            raise ConfigError("mqtt: a user name in both mqtt.url and mqtt.username; keep one")
        if sources and not (self.username or (broker is not None and broker.username)):
            raise ConfigError(
                f"mqtt.{sources[0]} is set without a user name: set mqtt.username "
                "(or mqtt://USER@HOST)"
            )

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @property
    def broker(self) -> Broker:
        if self.url is None:
            raise ConfigError("mqtt.url is not set: pass --mqtt mqtt://HOST:PORT")
        return parse_url(self.url)

    @property
    def user(self) -> str | None:
        return self.username or (self.broker.username if self.url else None)

    @property
    def leave(self) -> float:
        return self.debounce_s if self.leave_s is None else self.leave_s


def resolve_password(cfg: MqttConfig, environ: Mapping[str, str]) -> str | None:
    """The password from wherever the config says; ``ConfigError`` naming the key if absent."""
    if cfg.password:
        return cfg.password
    if cfg.password_env:
        value = environ.get(cfg.password_env)
        if not value:
            raise ConfigError(
                f"mqtt.password_env = {cfg.password_env!r}, but ${cfg.password_env} is not set "
                "or empty in the environment: set it (systemd: Environment= or "
                "EnvironmentFile= in the unit)"
            )
        return value
    if cfg.password_file:
        p = Path(cfg.password_file)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ConfigError(
                f"mqtt.password_file = {str(p)!r} cannot be read ({reason}): expected a file "
                "holding the password on its first line, readable by the service user"
            ) from None
        first = text.splitlines()[0] if text else ""
        if not first:
            raise ConfigError(f"mqtt.password_file = {str(p)!r} is empty: expected the password")
        return first
    return None
