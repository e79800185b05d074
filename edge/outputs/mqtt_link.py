"""The connection to the broker: paho's client, its network thread, and what its callbacks
report (connected or not, how often, acknowledgements, the last error).

paho runs the socket on its own thread (``loop_start``), connects in the background
(``connect_async``: a broker that is down at start is simply retried), and reconnects with
exponential backoff (``reconnect_delay_set``). Its callbacks here only update a few fields
under the output's Condition and wake whoever waits on it; nothing in them blocks.

paho-mqtt is optional: :func:`load_paho` imports it when a link is built, and says how to
install it when it is missing.
"""

from __future__ import annotations

import logging
import ssl
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from edge.errors import ConfigError, EdgeError
from edge.outputs.mqtt_config import Broker, MqttConfig
from edge.outputs.outbox import REJECTED, Handle, Message

if TYPE_CHECKING:
    from paho.mqtt.client import Client

log = logging.getLogger(__name__)


class _QuietClosedSocket(logging.Filter):
    """paho 2.2 logs an ERROR ("Client is not connected") when its loop runs once more after
    a disconnect, clean ones included; the link reports connection state itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(_QuietClosedSocket())

INSTALL_HINT = "pip install 'edge-vision[mqtt]'"


class MqttMissing(EdgeError, ImportError):
    """paho-mqtt (>= 2) is not installed, and an MQTT output was asked for."""


def load_paho() -> ModuleType:
    """``paho.mqtt.client``, or :class:`MqttMissing` saying how to install it."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MqttMissing(
            f"the MQTT output needs paho-mqtt, which is not installed: {INSTALL_HINT}"
        ) from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise MqttMissing(
            f"the MQTT output needs paho-mqtt >= 2, found an older one: {INSTALL_HINT}"
        )
    return mqtt


class MqttLink:
    """One client connection. Fields are written by paho's thread under ``cond``; ``changes``
    grows on every callback, so a waiter can tell that something happened."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        client_id: str,
        will: Message,
        password: str | None,
        cond: threading.Condition,
    ) -> None:
        self.cfg, self.broker, self.cond = cfg, cfg.broker, cond
        self.connected = False
        self.connects = 0  # successful connections so far
        self.epoch = 0  # grows at every disconnect: which connection a message went out on
        self.published = 0  # acknowledged (QoS 1, 2) or written (QoS 0)
        self.changes = 0
        self.last_error = ""
        self.closing = False
        self._mqtt = load_paho()
        self.client = self._make_client(client_id, will, password)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def _make_client(self, client_id: str, will: Message, password: str | None) -> Client:
        mqtt, cfg = self._mqtt, self.cfg
        c: Client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        c.enable_logger(_paho_log)  # paho never logs the password
        if cfg.user:
            c.username_pw_set(cfg.user, password)
        if self.broker.tls:
            c.tls_set_context(tls_context(cfg))
        c.will_set(will.topic, will.payload, will.qos, retain=will.retain)
        c.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        c.max_inflight_messages_set(cfg.inflight)
        c.max_queued_messages_set(cfg.inflight)  # the rest waits in the output's Outbox
        c.connect_timeout = cfg.connect_timeout_s
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_connect_fail, c.on_publish = self._on_connect_fail, self._on_publish
        return c

    def start(self) -> None:
        """Connect in the background; never blocks (name resolution included)."""
        self.client.connect_async(self.broker.host, self.broker.port, self.cfg.keepalive_s)
        self.client.loop_start()

    def publish(self, msg: Message) -> Handle | None:
        """Hand ``msg`` to paho: a handle, None to keep it for later, or REJECTED."""
        info = self.client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        rc, codes = info.rc, self._mqtt.MQTTErrorCode
        if rc == codes.MQTT_ERR_SUCCESS or (rc == codes.MQTT_ERR_NO_CONN and msg.qos > 0):
            return info  # written, or held by paho and resent on the next connection
        if rc in (codes.MQTT_ERR_NO_CONN, codes.MQTT_ERR_QUEUE_SIZE):
            return None  # QoS 0 with no connection, or paho's window is full
        log.warning("MQTT: publishing to %s failed: %s", msg.topic, self._mqtt.error_string(rc))
        return REJECTED

    def disconnect(self) -> None:
        """A clean DISCONNECT (the broker then keeps the will to itself)."""
        self.closing = True
        self.client.disconnect()

    def end(self, timeout_s: float) -> bool:
        """Stop paho's thread within ``timeout_s``; False if it had to be left behind.

        ``loop_stop`` joins that thread without a timeout, and it may be inside a connect
        attempt or a backoff sleep; so it is called from a helper joined with a timeout (the
        threads are daemons: one left behind cannot hold the process)."""
        self.closing = True
        ender = threading.Thread(target=self.client.loop_stop, name="mqtt-stop", daemon=True)
        ender.start()
        ender.join(timeout_s)
        if ender.is_alive():  # a daemon: it cannot hold the process, nor send anything now
            log.debug("MQTT: the network thread did not end within %.1f s; left", timeout_s)
        return not ender.is_alive()

    # -- paho's callbacks (its network thread) -------------------------------------------
    def _changed(self) -> None:
        """(Lock held.)"""
        self.changes += 1
        self.cond.notify_all()

    def _on_connect(self, _c: Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self.cond:
            if reason.is_failure:
                self._failed(f"{self.broker} refused the connection: {reason}")
                return
            self.connected, self.last_error = True, ""
            self.connects += 1
            self._changed()
        if self.connects == 1:
            log.info("MQTT: connected to %s", self.broker)
        else:
            log.info("MQTT: reconnected to %s (reconnect %d)", self.broker, self.reconnects)

    def _on_disconnect(self, _c: Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self.cond:
            was, self.connected = self.connected, False
            self.epoch += 1
            self._changed()
        if was and not self.closing:
            log.warning("MQTT: lost %s (%s); reconnecting with backoff", self.broker, reason)

    def _on_connect_fail(self, _c: Client, _u: Any) -> None:
        with self.cond:
            self._failed(f"cannot connect to {self.broker}")

    def _failed(self, error: str) -> None:
        """(Lock held.) A failed attempt: a warning when the error is news, else quiet."""
        if error != self.last_error:
            log.warning("MQTT: %s; retrying every %d .. %d s", error, *self._backoff)
        self.last_error = error
        self._changed()

    @property
    def _backoff(self) -> tuple[int, int]:
        return self.cfg.reconnect_min_s, self.cfg.reconnect_max_s

    def _on_publish(self, _c: Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        with self.cond:
            self.published += 1
            self._changed()


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker against ``tls_ca`` (or the system's CAs) and its host name; present
    a client certificate when one is configured. Bad files are config errors naming the key."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.tls_ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"mqtt.tls_ca = {cfg.tls_ca!r} cannot be used: {e}") from None
    if cfg.tls_cert is not None:
        try:
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"mqtt.tls_cert / mqtt.tls_key ({cfg.tls_cert!r}, {cfg.tls_key!r}) cannot be "
                f"used: {e}; expected a PEM certificate and its private key"
            ) from None
    return ctx


__all__ = ["INSTALL_HINT", "Broker", "MqttLink", "MqttMissing", "load_paho", "tls_context"]
