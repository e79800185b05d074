"""The MQTT output against a real Mosquitto on loopback when things go wrong: the broker
stopped and restarted mid-run, down at start, the process killed (last will), a clean stop,
health changes, user name and password, TLS. Results are fed through the output's own hook,
as the worker calls it; every wait is on a Condition set from paho's callbacks."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.frame import Detections, Frame
from edge.outputs.mqtt import INBOX_SIZE, MqttConfig, MqttOutput
from tests.integration.mqtt_helpers import (
    TIMEOUT_S,
    Broker,
    Subscriber,
    check_schema,
    free_port,
    make_tls,
    schema,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_000_000_000
LABELS = ("person", "car")


def frame(seq: int, people: int) -> tuple[Frame, Detections, bool]:
    d = Detections(
        np.zeros((people, 4), np.float32),
        np.full(people, 0.8, np.float32),
        np.zeros(people, np.int32),
        None,
        LABELS,
    )
    return Frame(seq, T0 + seq * 100_000_000), d, False


def feed(out: MqttOutput, seqs: range) -> None:
    """A person in even frames, none in odd ones: with no debounce, one event per frame."""
    for s in seqs:
        out.on_result(*frame(s, 1 - s % 2))


def config(url: str, device: str, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = {
        "debounce_s": 0.0,
        "summary_interval_s": 3600.0,
        "stall_s": 3600.0,
        "reconnect_min_s": 1,
        "reconnect_max_s": 1,
        "stop_timeout_s": 5.0,
    }
    return MqttConfig(url=url, device=device, **{**base, **kw})


def expect(out: MqttOutput, predicate: Any, what: str) -> None:
    if not out.wait_for(predicate, TIMEOUT_S):
        pytest.fail(f"timed out waiting for {what}: {out.metrics()}")


def event_seqs(sub: Subscriber) -> list[int]:
    return [e["seq"] for e in sub.json_on("/events")]


def test_broker_restart_mid_run(tmp_path: Path) -> None:
    broker = Broker(tmp_path, persistence=True).start()
    # a persistent session: the broker keeps what arrives for it while it reconnects
    watcher = Subscriber(broker.port, "edge/cam-2/#", client_id="watcher", persistent=True)
    out = MqttOutput(config(broker.url, "cam-2", queue_size=20))
    try:
        out.start()
        expect(out, lambda o: o.connected, "the first connection")
        feed(out, range(5))  # events 1..5 while the broker is up
        watcher.expect(lambda s: event_seqs(s)[-1:] == [5], "events 1..5")
        expect(out, lambda o: o.published == o.produced, "every message acknowledged")

        broker.stop()
        expect(out, lambda o: not o.connected, "the output to notice the outage")
        made = out.produced
        feed(out, range(5, 35))  # 30 events, each with its presence update: 60 messages
        expect(out, lambda o: o.produced == made + 60, "60 messages made during the outage")
        m = out.metrics()
        assert m["queued"] == 20 and m["dropped_by_reason"]["queue_full"] == 40
        assert out.inputs_dropped == 0 and not out.connected

        broker.start()
        expect(out, lambda o: o.connected and o.queued == 0 and o.reconnects == 1, "reconnect")
        # 20 of the outage's 60 messages were kept, the newest; the reconnect then queued the
        # status (first) and the presence of both classes (last), and the 3 oldest made room:
        # events 28..35 arrive. QoS 1 is at least once (a restarted broker may deliver a
        # message twice): seq tells duplicates apart
        watcher.expect(lambda s: event_seqs(s)[-1:] == [35], "the queued events")
        assert list(dict.fromkeys(event_seqs(watcher))) == [*range(1, 6), *range(28, 36)]
        assert out.metrics()["dropped_by_reason"]["queue_full"] == 43
        expect(out, lambda o: o.published == o.produced - 43, "every kept message delivered")

        fresh = Subscriber(broker.port, "edge/cam-2/+")
        fresh.expect(lambda s: len(s.on("/status")) == 1, "the retained status")
        (status,) = fresh.on("/status")
        assert status.retain and status.json["state"] == "online"
        assert status.json["connects"] == 2  # republished after the restart, not the old one
        # (Mosquitto sends its clients' wills when it shuts down: offline came in between)
        states = [(m["state"], m.get("clean")) for m in watcher.json_on("/status")]
        assert ("offline", False) in states and states[-1] == ("online", None)
        fresh.close()
    finally:
        out.stop()
        watcher.close()
        broker.stop()


def test_broker_down_at_start_and_a_full_inbox(tmp_path: Path) -> None:
    port = free_port()
    out = MqttOutput(config(f"mqtt://127.0.0.1:{port}", "cam-4", queue_size=5000))
    feed(out, range(INBOX_SIZE + 76))  # not started: nobody drains the inbox
    assert out.inputs_dropped == 76  # counted, never waited for
    out.start()  # returns at once: connecting is paho's thread's business
    expect(out, lambda o: "cannot connect" in o.metrics()["last_error"], "a failed attempt")
    expect(out, lambda o: o.produced >= 2 * INBOX_SIZE, "the inbox turned into messages")
    assert not out.connected and out.queued == out.produced
    broker = Broker(tmp_path, port=port).start()
    try:
        expect(out, lambda o: o.connected and o.published == o.produced, "all delivered")
        assert out.reconnects == 0 and out.dropped == 0
        sub = Subscriber(broker.port, "edge/cam-4/presence/+")
        sub.expect(lambda s: len(s.on("/person")) == 1 and len(s.on("/car")) == 1, "presence")
        # the last frame (1023) had no one: the retained state says so; car never came
        assert sub.on("/person")[0].retain and sub.json_on("/person")[0]["present"] is False
        assert sub.json_on("/car")[0] == {**sub.json_on("/car")[0], "present": False, "count": 0}
        sub.close()
    finally:
        out.stop()
        broker.stop()


def test_stop_while_the_broker_is_down_is_bounded_and_counts_what_is_lost() -> None:
    out = MqttOutput(config(f"mqtt://127.0.0.1:{free_port()}", "cam-5", stop_timeout_s=30.0))
    out.start()
    feed(out, range(3))
    expect(out, lambda o: o.produced >= 7, "messages made")
    assert out.stop() is False  # not connected: nothing to wait for, however long allowed
    m = out.metrics()
    assert m["dropped_by_reason"]["shutdown"] == out.produced > 0 and m["queued"] == 0


LIVE = """
import sys
from edge.outputs.mqtt import MqttConfig, MqttOutput
out = MqttOutput(MqttConfig(url=sys.argv[1], device="cam-3", keepalive_s=5))
out.start()
sys.stdin.read()  # until killed
"""


def test_last_will_when_the_process_dies(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, "edge/cam-3/status")
    proc = subprocess.Popen([sys.executable, "-c", LIVE, broker.url], cwd=ROOT,
                            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        sub.expect(lambda s: any(m["state"] == "online" for m in s.json_on("/status")), "online")
        proc.kill()  # no DISCONNECT: the broker must send the will
        proc.wait(TIMEOUT_S)
        sub.expect(lambda s: s.json_on("/status")[-1]["state"] == "offline", "the last will")
        will = sub.json_on("/status")[-1]
        assert will == {"state": "offline", "device": "cam-3", "clean": False, "schema": 1}
        fresh = Subscriber(broker.port, "edge/cam-3/status")
        fresh.expect(lambda s: len(s.messages) == 1, "the retained will")
        assert fresh.messages[0].retain and fresh.messages[0].json == will
        check_schema(will, schema("status"))
        fresh.close()
    finally:
        proc.kill()
        sub.close()
        broker.stop()


def test_health_changes_and_a_clean_stop(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, ["edge/cam-6/status", "edge/cam-6/events"])
    out = MqttOutput(config(broker.url, "cam-6"))
    try:
        out.start()
        sub.expect(lambda s: len(s.on("/status")) == 1, "online")
        out.on_health(False, "camera unplugged")
        out.on_health(False, "camera unplugged")  # no change: no message
        out.on_health(True)
        sub.expect(lambda s: len(s.json_on("/events")) == 2, "two health events")
        h1, h2 = sub.json_on("/events")
        assert (h1["type"], h1["ok"], h1["reason"]) == ("health", False, "camera unplugged")
        assert (h2["type"], h2["ok"], h2["reason"], h2["seq"]) == ("health", True, "", 2)
        sub.expect(lambda s: len(s.on("/status")) == 3, "status republished on each change")
        assert [m["health"]["ok"] for m in sub.json_on("/status")] == [True, False, True]
        assert out.stop() is True
        sub.expect(lambda s: s.json_on("/status")[-1]["state"] == "offline", "offline")
        assert sub.json_on("/status")[-1]["clean"] is True
        fresh = Subscriber(broker.port, "edge/cam-6/status")  # the will did not replace it
        fresh.expect(lambda s: len(s.messages) == 1, "the retained status")
        assert fresh.messages[0].json["clean"] is True
        for m in sub.messages:
            check_schema(m.json, schema("status" if m.topic.endswith("status") else "event"))
        fresh.close()
    finally:
        out.stop()
        sub.close()
        broker.stop()


PASSWORD = "s3cret-Pa55"


def test_user_and_password_and_the_password_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge.outputs")  # paho's own debug lines included
    broker = Broker(tmp_path, passwords={"cam": PASSWORD}).start()
    pw = tmp_path / "mqtt-password"
    pw.write_text(PASSWORD + "\n")
    good = MqttOutput(config(broker.url, "cam-7", username="cam", password_file=str(pw)))
    bad_cfg = config(broker.url, "cam-8", username="cam", password_env="EDGE_MQTT_PW")
    bad = MqttOutput(bad_cfg, environ={"EDGE_MQTT_PW": "wrong-" + PASSWORD})
    sub = Subscriber(broker.port, "edge/+/status", auth=("cam", PASSWORD))
    try:
        good.start()
        bad.start()
        sub.expect(lambda s: len(s.on("cam-7/status")) == 1, "cam-7 online")
        expect(bad, lambda o: "refused" in o.metrics()["last_error"], "the refusal")
        assert "Not authorized" in bad.metrics()["last_error"] and not bad.connected
        assert good.connected and sub.on("cam-8/status") == []
        good.stop()
        bad.stop()
        seen = [caplog.text, repr(good), repr(bad), repr(bad_cfg), str(bad.metrics())]
        seen += [repr(good.cfg), str(sub.messages)]
        assert not [s for s in seen if PASSWORD in s]
        assert "refused" in caplog.text and "Sending CONNECT" in caplog.text
    finally:
        good.stop()
        bad.stop()
        sub.close()
        broker.stop()


def test_tls_verifies_the_broker(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    broker = Broker(tmp_path, tls=tls).start()
    url = f"mqtts://localhost:{broker.port}"
    out = MqttOutput(config(url, "cam-9", tls_ca=str(tls.ca)))
    untrusted = MqttOutput(config(url, "cam-10"))  # the system's CAs do not know ours
    sub = Subscriber(broker.port, "edge/+/status", tls_ca=tls.ca)
    try:
        out.start()
        untrusted.start()
        sub.expect(lambda s: len(s.on("cam-9/status")) == 1, "cam-9 online over TLS")
        expect(untrusted, lambda o: "cannot connect" in o.metrics()["last_error"], "a refusal")
        assert out.connected and not untrusted.connected
        assert sub.json_on("cam-9/status")[0]["state"] == "online"
    finally:
        out.stop()
        untrusted.stop()
        sub.close()
        broker.stop()
