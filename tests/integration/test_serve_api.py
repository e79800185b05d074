"""The JSON API, ``/healthz`` and ``/metrics`` over real HTTP; the token, the bind address,
and the 404 / 400 / 405 / 413 cases."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.errors import ConfigError
from edge.frame import Detections, Frame
from edge.metrics import latency_buckets
from edge.serve import ServeConfig, Server
from edge.testing import FakeClock
from edge.watchdog.record import MissRecord
from tests.integration.serve_rig import BUDGET_NS, MjpegReader, Publisher, Sample, get, get_json

TOKEN = "s3cret-token-123"


@pytest.fixture(scope="module")
def clip(samples_dir: Path, models_ready: None) -> list[Sample]:
    from tests.integration.serve_rig import load_clip

    return load_clip(samples_dir / "Megamind.avi", n=6)


@pytest.fixture()
def served(clip: list[Sample]) -> Iterator[tuple[Server, Publisher]]:
    server = Server(ServeConfig(http="127.0.0.1:0", misses_kept=5))
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    try:
        yield server, pub
    finally:
        server.stop()


def miss(frame: int, cause: str = "infer") -> MissRecord:
    return MissRecord.create(
        frame=frame, source="Megamind.avi", budget_ms=33.0, latency_ms=40.0,
        stages_ns={"infer": 30_000_000}, cause=cause, action="completed-late", consecutive=1,
    )  # fmt: skip


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_agree_with_api_stats(served: tuple[Server, Publisher]) -> None:
    server, pub = served
    for seq in range(12):
        pub.publish_one(seq)
    pub.counters.miss("infer", 2)
    pub.counters.miss("queue")
    pub.counters.inc("skipped_stale")
    pub.counters.inc("dropped", 3)
    status, headers, body = get(server, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    values = metric_values(body.decode())
    stats = get_json(server, "/api/stats")
    frames = stats["frames"]
    for name in ("captured", "processed", "dropped", "skipped_stale"):
        assert values[(f"edge_frames_{name}_total", ())] == frames[name], name
    missed = {
        dict(k[1])["cause"]: v for k, v in values.items() if k[0] == "edge_frames_missed_total"
    }
    assert sum(missed.values()) == frames["missed"] == 3
    assert missed["infer"] == stats["missed_by_cause"]["infer"] == 2 and missed["queue"] == 1
    # the histogram: every published frame once per stage, buckets at fractions of the budget
    total = (("stage", "total"),)
    assert values[("edge_frame_latency_seconds_count", total)] == 12
    buckets = [dict(k[1]) for k in values if k[0] == "edge_frame_latency_seconds_bucket"]
    les = sorted(float(b["le"]) for b in buckets if b["stage"] == "total")
    assert les[:-1] == list(latency_buckets(BUDGET_NS / 1e9)) and les[-1] == float("inf")
    assert 0.033 in les
    infer_sum = sum(s.stages_ns["infer"] for s in (pub.frames[i] for i in range(12))) / 1e9
    assert values[("edge_frame_latency_seconds_sum", (("stage", "infer"),))] == pytest.approx(
        infer_sum
    )
    info = (("delegate", "cpu"), ("model", "face"), ("source", "Megamind.avi"))
    assert values[("edge_info", info)] == 1
    assert values[("edge_mode", ())] == 0 and values[("edge_degrade_every", ())] == 1
    assert values[("edge_frame_budget_seconds", ())] == pytest.approx(0.033)


def test_stats_shape(served: tuple[Server, Publisher]) -> None:
    server, pub = served
    for seq in range(3):
        pub.publish_one(seq)
    stats = get_json(server, "/api/stats")
    assert {"source", "model", "delegate", "budget_ms", "uptime_s", "mode", "every", "fps",
            "frames", "missed_by_cause", "miss_rate", "latency_ms", "temperature_c",
            "stream"} <= set(stats)  # fmt: skip
    assert stats["frames"]["processed"] == 3 and stats["mode"] == "normal"
    assert stats["latency_ms"]["infer"]["count"] == 3
    assert stats["latency_ms"]["total"]["p50"] > stats["latency_ms"]["infer"]["p50"]
    assert stats["stream"]["published"] == 3 and stats["stream"]["clients"] == 0


def test_latest_misses_newest_first_and_bounded(served: tuple[Server, Publisher]) -> None:
    server, _ = served
    for i in range(8):
        server.on_miss(miss(100 + i, "infer" if i % 2 else "decode"))
    body = get_json(server, "/api/misses?limit=3")
    assert [m["frame"] for m in body["misses"]] == [107, 106, 105]
    assert body["misses"][0]["cause"] == "infer" and body["misses"][1]["cause"] == "decode"
    assert body["kept"] == 5  # misses_kept
    assert len(get_json(server, "/api/misses")["misses"]) == 5
    assert len(get_json(server, "/api/misses?limit=1000")["misses"]) == 5


@pytest.mark.parametrize(
    "path",
    ["/api/misses?limit=0", "/api/misses?limit=-1", "/api/misses?limit=abc",
     "/api/misses?limit=1001", "/api/misses?limit=99999999999", "/stream.mjpg?fps=-1",
     "/stream.mjpg?fps=nan", "/stream.mjpg?fps=inf", "/stream.mjpg?fps=1e9",
     "/stream.mjpg?fps=0", "/stream.mjpg?fps=x", "/stream.mjpg?width=0",
     "/stream.mjpg?width=99999", "/stream.mjpg?width=12.5", "/snapshot.jpg?width=-5",
     "/api/misses?limit=1&limit=2"],
)  # fmt: skip
def test_bad_parameters_are_400(served: tuple[Server, Publisher], path: str) -> None:
    server, _ = served
    status, headers, body = get(server, path)
    assert status == 400, (path, status)
    assert headers["content-type"] == "application/json" and b"error" in body


@pytest.mark.parametrize(
    "path",
    ["/nope", "/static/", "/static", "/static/../server.py", "/static/%2e%2e/server.py",
     "/%2e%2e/edge/serve/server.py", "/../../etc/passwd", "/stream.mjpg/x", "/api",
     "/api/stats/", "/edge/serve/static/app.js", "/static/missing.js", "/static/index.html"],
)  # fmt: skip
def test_unknown_paths_are_404(served: tuple[Server, Publisher], path: str) -> None:
    server, _ = served
    assert get(server, path)[0] == 404, path


def test_page_and_its_files(served: tuple[Server, Publisher]) -> None:
    server, _ = served
    status, headers, body = get(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert (
        b'src="static/app.js"' in body and "script-src 'self'" in headers["content-security-policy"]
    )
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, body = get(server, f"/static/{name}")
        assert status == 200 and headers["content-type"].startswith(ctype) and body
    status, headers, body = get(server, "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_methods_and_bodies_are_refused(served: tuple[Server, Publisher]) -> None:
    server, _ = served
    status, headers, _ = get(server, "/api/stats", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert server.address is not None
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    conn.request("GET", "/api/stats", body=b"x" * 10)
    assert conn.getresponse().status == 413
    conn.close()
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 431")


def test_keep_alive_serves_several_requests_on_one_connection(
    served: tuple[Server, Publisher],
) -> None:
    server, _ = served
    assert server.address is not None
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/api/stats")
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("Connection") == "keep-alive"
            r.read()
    finally:
        conn.close()


def test_token_guards_everything_but_healthz(clip: list[Sample]) -> None:
    clock = FakeClock()  # stands still: /healthz stays 200 after one frame, however slow we are
    server = Server(ServeConfig(http="127.0.0.1:0", token=TOKEN))
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS, clock=clock)
    server.start()
    try:
        pub.publish_one(0)
        for i, path in enumerate(("/", "/api/stats", "/api/misses", "/metrics", "/snapshot.jpg",
                                  "/static/app.js", "/stream.mjpg", "/nope")):  # fmt: skip
            status, headers, _ = get(server, path)
            assert status == 401 and "Bearer" in headers["www-authenticate"], path
            # each path's wrong tokens from an address of its own: one address that keeps
            # guessing is made to wait (429, tests/reliability/test_listener.py)
            src = f"127.0.0.{i + 2}"
            assert get(server, path + "?token=wrong-token-000", source=src)[0] == 401
            wrong = {"Authorization": "Bearer " + TOKEN[:-1]}
            assert get(server, path, wrong, source=src)[0] == 401
        assert get(server, "/healthz")[0] == 200
        assert get(server, "/api/stats?token=" + TOKEN)[0] == 200
        assert get(server, "/metrics", {"Authorization": "Bearer " + TOKEN})[0] == 200
        assert get(server, "/nope?token=" + TOKEN)[0] == 404
        reader = MjpegReader(server, "?token=" + TOKEN)
        assert reader.status == 200 and len(reader.take(1)) == 1
        reader.close()
    finally:
        server.stop()


def test_binds_loopback_by_default_and_reports_a_taken_port() -> None:
    server = Server(ServeConfig(http=":0"))
    server.start()
    try:
        assert server.address is not None and server.address[0] == "127.0.0.1"
        assert ServeConfig().bind.host == "127.0.0.1"
        taken = Server(ServeConfig(http=f"127.0.0.1:{server.address[1]}"))
        with pytest.raises(ConfigError, match="cannot serve on 127.0.0.1"):
            taken.start()
        taken.stop()
    finally:
        server.stop()


def test_healthz_follows_completed_frames() -> None:
    clock = FakeClock()
    server = Server(ServeConfig(http="127.0.0.1:0", health_budgets=5.0), clock=clock)
    assert get_status_reason(server) is None  # not started: nothing to ask
    server.attach_stats(lambda: {}, BUDGET_NS, clock=clock)
    server.start()
    try:
        status, reason = get_status_reason(server) or (0, "")
        assert status == 503 and "no frame has completed yet" in reason
        det = Detections.empty()
        server.publish(Frame(0, clock.now_ns(), image=np.zeros((8, 8, 3), np.uint8)), det)
        assert get_status_reason(server) == (200, "last frame completed 0 ms ago")
        clock.advance(5 * BUDGET_NS)  # exactly at the limit: still healthy
        assert (get_status_reason(server) or (0, ""))[0] == 200
        clock.advance(1_000_000)
        status, reason = get_status_reason(server) or (0, "")
        assert (
            status == 503 and "no frame completed for 166 ms (limit 165 ms: 5 x 33.0 ms)" in reason
        )
        server.publish(Frame(1, clock.now_ns(), image=np.zeros((8, 8, 3), np.uint8)), det)
        assert (get_status_reason(server) or (0, ""))[0] == 200
    finally:
        server.stop()


def get_status_reason(server: Server) -> tuple[int, str] | None:
    import json

    if server.address is None:
        return None
    status, _, body = get(server, "/healthz")
    return status, json.loads(body)["reason"]
