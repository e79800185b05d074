"""A real Mosquitto broker on loopback, a real paho subscriber, and a small JSON-schema check,
for the MQTT output's tests.

The broker is Debian's ``mosquitto`` (``apt-get install -y mosquitto``), started from a
config written per test, listening on 127.0.0.1 only; it is ready when it logs "running"
(read from its stderr by a thread: no polling of the port). Every wait has a timeout and
fails the test when it runs out.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

MOSQUITTO = "/usr/sbin/mosquitto"
TIMEOUT_S = 10.0  # a bound on every wait: reaching it is a failure, never a pacing device
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def need_mosquitto() -> None:
    if not Path(MOSQUITTO).exists() or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto is missing: apt-get install -y mosquitto (scripts/test does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


class Broker:
    """``mosquitto -c CONF`` on 127.0.0.1:``port``; :meth:`stop` and :meth:`start` again for
    an outage (same port, same config, same persistence file)."""

    def __init__(
        self,
        workdir: Path,
        *,
        passwords: Mapping[str, str] | None = None,
        persistence: bool = False,
        tls: Tls | None = None,
        port: int | None = None,
    ) -> None:
        need_mosquitto()
        self.port = port or free_port()
        self.dir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",  # as root, stay root: the files are root's
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"persistence {'true' if persistence else 'false'}",
        ]
        if persistence:
            lines += [f"persistence_location {workdir}/", "autosave_interval 0"]
        if passwords:
            pw = workdir / "passwords"
            for i, (user, password) in enumerate(passwords.items()):
                args = ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(pw)]
                subprocess.run([*args, user, password], check=True, timeout=TIMEOUT_S)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> Broker:
        ready = threading.Event()
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(TIMEOUT_S):
            self.stop()
            pytest.fail(f"mosquitto did not start: {self.log[-5:]}")
        return self

    def _read(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line.rstrip())
            if " running" in line:
                ready.set()
        ready.set()  # exited: start() then finds it dead in the log

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(TIMEOUT_S)
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client that records every message on ``topics``; :meth:`wait_for` blocks on
    a Condition set from paho's callbacks."""

    def __init__(
        self,
        port: int,
        topics: str | list[str],
        *,
        client_id: str = "",
        persistent: bool = False,
        auth: tuple[str, str] | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self.cond = threading.Condition()
        self.subscribed = 0
        self.topics = [topics] if isinstance(topics, str) else topics
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1" if tls_ca is None else "localhost", port, 30)
        self.client.loop_start()
        self.expect(lambda s: s.subscribed > 0, "subscribed")

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        with self.cond:
            self.subscribed += 1
            self.cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(Received(msg.topic, msg.payload, msg.retain, msg.qos))
            self.cond.notify_all()

    def expect(self, predicate: Callable[[Subscriber], bool], what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self), TIMEOUT_S):
                got = [(m.topic, m.payload[:120]) for m in self.messages[-8:]]
                pytest.fail(f"subscriber: timed out waiting for {what}; last messages: {got}")

    def on(self, suffix: str) -> list[Received]:
        with self.cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def json_on(self, suffix: str) -> list[Any]:
        return [m.json for m in self.on(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"mqtt-{name}.schema.json").read_text())
    return data


def check_schema(
    value: Any, sch: Mapping[str, Any], root: Mapping[str, Any] | None = None, where: str = "$"
) -> None:
    """The subset of JSON Schema the docs use: $ref, oneOf, type (incl. lists), enum, const,
    required, properties, additionalProperties, items, minimum. Fails the test on a mismatch."""
    root = root if root is not None else sch
    if "$ref" in sch:
        name = sch["$ref"].rsplit("/", 1)[-1]
        check_schema(value, root["$defs"][name], root, where)
        return
    if "oneOf" in sch:
        ok = 0
        for option in sch["oneOf"]:
            try:
                check_schema(value, option, root, where)
                ok += 1
            except pytest.fail.Exception:
                pass
        assert ok == 1, f"{where}: {value!r} matches {ok} of the oneOf options, expected 1"
        return
    _check_type(value, sch, where)
    if "enum" in sch:
        assert value in sch["enum"], f"{where}: {value!r} not in {sch['enum']}"
    if "const" in sch:
        assert value == sch["const"], f"{where}: {value!r} != {sch['const']!r}"
    if "minimum" in sch and isinstance(value, (int, float)):
        assert value >= sch["minimum"], f"{where}: {value} < {sch['minimum']}"
    if isinstance(value, dict):
        _check_object(value, sch, root, where)
    if isinstance(value, list) and "items" in sch:
        for i, v in enumerate(value):
            check_schema(v, sch["items"], root, f"{where}[{i}]")


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _check_type(value: Any, sch: Mapping[str, Any], where: str) -> None:
    if "type" not in sch:
        return
    kinds = sch["type"] if isinstance(sch["type"], list) else [sch["type"]]
    for k in kinds:
        if k == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return
        if k == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if k in _TYPES and isinstance(value, _TYPES[k]):
            return
    pytest.fail(f"{where}: {value!r} is not of type {kinds}")


def _check_object(
    value: dict[str, Any], sch: Mapping[str, Any], root: Mapping[str, Any], where: str
) -> None:
    for key in sch.get("required", []):
        if key not in value:
            pytest.fail(f"{where}: required key {key!r} missing in {sorted(value)}")
    props = sch.get("properties", {})
    extra = sch.get("additionalProperties", True)
    for key, v in value.items():
        if key in props:
            check_schema(v, props[key], root, f"{where}.{key}")
        elif extra is False:
            pytest.fail(f"{where}: unexpected key {key!r}")
        elif isinstance(extra, dict):
            check_schema(v, extra, root, f"{where}.{key}")


def make_tls(workdir: Path) -> Tls:
    """A throwaway CA and a server certificate for ``localhost``, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: apt-get install -y openssl")
    ca_key, ca, key, csr, cert = (
        workdir / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem")
    )
    ext = workdir / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost\n")
    run = [
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=edge-test-ca"],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
    ]  # fmt: skip
    for cmd in run:
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=TIMEOUT_S)
    return Tls(ca, cert, key)
