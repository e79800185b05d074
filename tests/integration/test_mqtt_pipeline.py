"""The MQTT output on a real run: real footage through the real pipeline with the real
``person`` model, a real Mosquitto broker on loopback, and a subscriber that checks what
arrives against the run's own detections, counters and miss records."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.clock import MONOTONIC
from edge.config import ModelConfig
from edge.detector import load_detector
from edge.frame import Detections, Frame
from edge.outputs.mqtt import MqttConfig, MqttOutput
from edge.outputs.records import MissLogOutput
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.sources.base import SourceOptions
from edge.sources.registry import open_source
from edge.watchdog.misslog import MissLog
from tests.integration.mqtt_helpers import TIMEOUT_S, Broker, Subscriber, check_schema, schema
from tests.tools import slow_infer_in_process
from tests.unit.test_mqtt_events import reference

MS = 1_000_000
DEBOUNCE_MS, LEAVE_MS = 100, 150


@pytest.fixture(scope="module")
def clip(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest.avi as it is (768x576, the pedestrians small in the frame, as a street camera
    sees them), 50 frames, then 25 black ones, then the same 50 again: people appear, leave and
    appear again."""
    cap = cv2.VideoCapture(str(samples_dir / "vtest.avi"))
    frames = []
    for i in range(60):
        ok, img = cap.read()
        assert ok, "vtest.avi is shorter than expected"
        if i >= 10:
            frames.append(img)
    cap.release()
    h, w = frames[0].shape[:2]
    path = tmp_path_factory.mktemp("clip") / "people.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    for f in [*frames, *[np.zeros_like(frames[0])] * 25, *frames]:
        out.write(f)
    out.release()
    return path


class Recorder:
    """The run's own results, as the worker delivered them."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, int, np.ndarray, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, frame: Frame, dets: Detections, stale: bool) -> None:
        with self.lock:
            self.frames.append((frame.t_capture_ns, frame.seq, dets.class_ids.copy(), stale))


def run_with_mqtt(clip: Path, broker: Broker, tmp_path: Path, sub: Subscriber) -> Any:
    detector = load_detector(ModelConfig(name="person"))  # the manifest's threshold
    source = open_source(str(clip), SourceOptions(pace=False), MONOTONIC)
    # a 1 ms budget (and inference delayed past it): every frame misses, so the summaries
    # carry misses to check
    settings = Settings(
        PipelineConfig(budget_ms=1.0, policy="process-all", gc=False), DegradeConfig(policy="off")
    )
    cfg = MqttConfig(
        url=broker.url,
        device="cam-1",
        debounce_s=DEBOUNCE_MS / 1000,
        leave_s=LEAVE_MS / 1000,
        summary_interval_s=0.5,
        stop_timeout_s=5.0,
    )
    out = MqttOutput(cfg, environ={})
    rec = Recorder()
    with MissLog(tmp_path / "misses.jsonl") as log:
        pipe = Pipeline(source, detector, settings, [MissLogOutput(log)])
        pipe.subscribe(rec)
        pipe.add_output(out)
        out.start()
        assert out.wait_for(lambda o: o.connected, TIMEOUT_S)
        try:
            summary = pipe.run()
        finally:
            delivered = out.stop()
            source.close()
    assert delivered, out.metrics()
    sub.expect(lambda s: any(b'"offline"' in m.payload for m in s.on("/status")), "offline")
    return summary, rec, out


@pytest.mark.usefixtures("models_ready")
def test_events_and_summaries_match_the_runs_own_detections(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_infer_in_process(monkeypatch)  # every frame misses its 1 ms budget, on any machine
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, "edge/cam-1/#")
    try:
        summary, rec, out = run_with_mqtt(clip, broker, tmp_path, sub)
    finally:
        sub.close()
        broker.stop()
    assert summary.processed == len(rec.frames) == 125
    m = out.metrics()
    assert m["inputs_dropped"] == 0 and m["dropped"] == 0 and m["queued"] == 0
    assert out.published == out.produced  # every message made was acknowledged or written

    # events: exactly what the debounce rule gives on the run's own detections
    inferred = [(t, seq, ids) for t, seq, ids, stale in rec.frames if not stale]
    frames = [(t, [int(c) for c in ids]) for t, _, ids in inferred]
    expected = reference(frames, DEBOUNCE_MS * MS, LEAVE_MS * MS)
    seqs = [seq for _, seq, _ in inferred]
    events = [e for e in sub.json_on("/events") if e["type"] in ("appeared", "left")]
    got = [(e["type"], e["class_id"], e["frame"], e.get("count", 0)) for e in events]
    assert got == [(k, c, seqs[i], n) for k, c, i, n, _, _ in expected]
    kinds = [k for k, *_ in got]
    assert kinds.count("appeared") >= 2 and kinds.count("left") >= 1  # in, out in the dark, in
    counts_at = {seq: Counter(int(c) for c in ids) for _, seq, ids in inferred}
    for e in events:  # and each one against that frame's detections directly
        n = counts_at[e["frame"]][e["class_id"]]
        assert n == e["count"] if e["type"] == "appeared" else n == 0
    assert [e["seq"] for e in sub.json_on("/events")] == list(
        range(1, len(sub.json_on("/events")) + 1)
    )

    # the summaries: interval figures add up to the run's totals
    stats = sub.json_on("/stats")
    assert [s["seq"] for s in stats] == list(range(1, len(stats) + 1)) and len(stats) >= 2
    assert [s["final"] for s in stats] == [False] * (len(stats) - 1) + [True]
    person = sum(int((ids == 0).sum()) for _, _, ids in inferred)
    # the street's pedestrians, several at once (vtest.avi shows 2-6 at a time)
    assert max(int((ids == 0).sum()) for _, _, ids in inferred) >= 3
    assert sum(s["classes"].get("person", {}).get("detections", 0) for s in stats) == person
    assert sum(s["misses"]["total"] for s in stats) == summary.missed == 125
    by_cause: Counter[str] = Counter()
    for s in stats:
        by_cause.update(s["misses"]["by_cause"])
    assert dict(by_cause) == dict(summary.missed_by_cause)
    final = stats[-1]
    assert final["frames"]["processed"] == summary.processed
    assert final["missed_by_cause"] == dict(summary.missed_by_cause)
    assert final["mode"] == "normal" and final["every"] == 1
    assert 0 < final["latency_ms"]["p50"] <= final["latency_ms"]["p99"]
    assert sum(s["fps"] * s["interval_s"] for s in stats) == pytest.approx(125, abs=1.5)

    # retained state: presence follows the last event; status online, then a clean offline
    presence = sub.json_on("/presence/person")
    assert presence[-1]["present"] == (kinds[-1] == "appeared")
    status = sub.json_on("/status")
    assert status[0]["state"] == "online" and status[0]["connects"] == 1
    assert status[0]["model"] == "person" and status[0]["source"] == str(clip)
    assert status[-1] == {**status[-1], "state": "offline", "clean": True}

    # every message follows its schema in docs/schemas/
    for msg in sub.messages:
        kind = msg.topic.split("/")[2]
        check_schema(msg.json, schema(kind if kind != "events" else "event"))
