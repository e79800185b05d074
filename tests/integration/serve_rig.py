"""A server fed like the pipeline feeds it, without the pipeline: real frames of a sample clip
with a real model's detections, published by a paced thread, and a real HTTP client.

The clip is Megamind.avi with the ``face`` model (the ``demo`` source's pair); the person demo
(``demo:person`` with ``person``) has its own test, test_demo_person.py.

The detections are computed once per session (the model runs ~40 times); the publisher then
replays them in a loop at the clip's pace, filling the same counters and latency rings the
worker fills, so ``/api/stats`` and ``/metrics`` have a real run's shape.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.clock import MONOTONIC
from edge.config import ModelConfig
from edge.frame import Detections, Frame, Image
from edge.serve import PipelineStats, Server
from edge.stats import Counters, LatencyStats

BUDGET_NS = 33_000_000
TIMEOUT_S = 10.0  # a bound on every wait: a failure, never a pacing device


@dataclass(frozen=True)
class Sample:
    image: Image
    detections: Detections
    stages_ns: dict[str, int]


def load_clip(path: Path, n: int = 40, model: str = "face") -> list[Sample]:
    """The first ``n`` frames of ``path`` with ``model``'s detections and stage timings."""
    from edge.detector import load_detector

    det = load_detector(ModelConfig(name=model))
    cap = cv2.VideoCapture(str(path))
    out: list[Sample] = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        times: dict[str, int] = {}
        d = det.detect(img, times)
        stages = {"wait": 200_000, "decode": 0, **times, "overlay": 20_000, "publish": 10_000}
        out.append(Sample(img, d, stages))
    cap.release()
    assert len(out) == n, f"{path} has fewer than {n} frames"
    assert sum(len(s.detections) for s in out) > 0, (
        f"the {model} model found nothing in {path.name}"
    )
    return out


class Publisher:
    """Plays ``clip`` into ``server`` at ``fps`` on a thread, like the worker would."""

    def __init__(self, server: Server, clip: list[Sample], fps: float = 30.0) -> None:
        self.server, self.clip, self.period_ns = server, clip, round(1e9 / fps)
        self.source = "Megamind.avi"
        self.counters, self.latency = Counters(), LatencyStats()
        self.stop = threading.Event()
        self.frames: dict[int, Sample] = {}  # seq -> what was published
        self.published = threading.Condition()
        self.count = 0
        self._thread = threading.Thread(target=self._run, name="fake-worker", daemon=True)

    def stats(self) -> PipelineStats:
        return PipelineStats(
            self.counters,
            self.latency,
            source=self.source,
            model="face",
            delegate="cpu",
            budget_ns=BUDGET_NS,
            thermal=lambda _now: None,
        )

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self._thread.join(TIMEOUT_S)

    def publish_one(self, seq: int, *, stale: bool = False, missed: bool | None = None) -> None:
        s = self.clip[seq % len(self.clip)]
        frame = Frame(seq, MONOTONIC.now_ns(), image=s.image, source=self.source)
        self.counters.inc("captured")
        self.server.publish(frame, s.detections, stale, missed=missed)
        for stage, ns in s.stages_ns.items():
            frame.add_stage(stage, ns)
        self.counters.inc("processed")
        self.latency.add_all(frame.stages_ns)
        self.latency.add("total", sum(frame.stages_ns.values()))
        with self.published:
            self.frames[seq] = s
            self.count += 1
            self.published.notify_all()

    def wait_count(self, n: int) -> bool:
        with self.published:
            return self.published.wait_for(lambda: self.count >= n, TIMEOUT_S)

    def _run(self) -> None:
        next_ns, seq = MONOTONIC.now_ns(), 0
        while not self.stop.is_set():
            self.publish_one(seq)
            seq += 1
            next_ns += self.period_ns
            # a paced camera: schedule against next_ns; the Event makes close() immediate
            self.stop.wait(max(0.0, (next_ns - MONOTONIC.now_ns()) / 1e9))


def get(
    server: Server,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    *,
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers lower-cased, body); ``source``:
    the loopback address to connect from (127.0.0.2, ...: another client)."""
    assert server.address is not None
    where = (source, 0) if source else None
    conn = http.client.HTTPConnection(*server.address, timeout=TIMEOUT_S, source_address=where)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(server: Server, path: str, headers: dict[str, str] | None = None) -> Any:
    status, _, body = get(server, path, headers)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


class MjpegReader:
    """A real HTTP client on ``/stream.mjpg``: yields (seq, decoded image, jpeg bytes)."""

    def __init__(self, server: Server, query: str = "") -> None:
        assert server.address is not None
        self.conn = http.client.HTTPConnection(*server.address, timeout=TIMEOUT_S)
        self.conn.request("GET", "/stream.mjpg" + query)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        ctype = self.resp.getheader("Content-Type", "")
        self.boundary = ctype.partition("boundary=")[2].encode()

    def parts(self) -> Iterator[tuple[int, np.ndarray, bytes]]:
        assert self.status == 200, self.resp.read()
        fp = self.resp.fp
        assert fp is not None
        while True:
            line = fp.readline()
            if not line:
                return
            if line.strip() != b"--" + self.boundary:
                continue
            headers: dict[str, str] = {}
            while (h := fp.readline().strip()) != b"":
                k, _, v = h.decode().partition(":")
                headers[k.lower()] = v.strip()
            data = fp.read(int(headers["content-length"]))
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None, "a part of the stream is not a decodable JPEG"
            assert headers["content-type"] == "image/jpeg"
            yield int(headers["x-frame-seq"]), img, data

    def take(self, n: int) -> list[tuple[int, np.ndarray, bytes]]:
        out = []
        for part in self.parts():
            out.append(part)
            if len(out) == n:
                break
        return out

    def close(self) -> None:
        self.resp.close()  # the response holds the socket open until it is closed too
        self.conn.close()
