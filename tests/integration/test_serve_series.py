"""``/api/series`` over real HTTP (recording only while asked for, the token, bad
parameters) and ``/api/stats``' latency figures: int counts, one window shared with the HUD."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.serve import ServeConfig, Server
from edge.serve.server import hud_lines
from tests.integration.serve_rig import BUDGET_NS, Publisher, Sample, get, get_json

TOKEN = "series-token-555"


@pytest.fixture(scope="module")
def clip(samples_dir: Path, models_ready: None) -> list[Sample]:
    from tests.integration.serve_rig import load_clip

    return load_clip(samples_dir / "Megamind.avi", n=6)


@pytest.fixture()
def served(clip: list[Sample]) -> Iterator[tuple[Server, Publisher]]:
    server = Server(ServeConfig(http="127.0.0.1:0", token=TOKEN))
    pub = Publisher(server, clip)
    stats = pub.stats()
    server.attach_stats(stats, BUDGET_NS)
    server.app.attach_series(stats.recorder())
    server.start()
    try:
        yield server, pub
    finally:
        server.stop()


def test_nothing_is_recorded_until_someone_asks(served: tuple[Server, Publisher]) -> None:
    server, pub = served
    rec = server.app.series
    assert rec is not None
    for seq in range(40):
        pub.publish_one(seq)
    get_json(server, f"/api/stats?token={TOKEN}")  # the page's other polls start nothing
    assert rec.ticks == 0 and not rec.started and server.app._series_task is None
    body = get_json(server, f"/api/series?token={TOKEN}&stages=1")
    assert body["recording"] is True and rec.started
    assert body["t"] == [] and body["stages"] == {}  # no backfill: samples carry no times
    assert body["budget_ms"] == 33.0 and body["kept_s"] == 600 and body["interval_s"] == 1
    assert server.app._series_task is not None


def test_recording_stops_when_nobody_asks_any_more(
    served: tuple[Server, Publisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = served
    monkeypatch.setattr("edge.serve.app.SERIES_LINGER_S", 0.0)  # nobody for "long" at once
    assert get_json(server, f"/api/series?token={TOKEN}")["recording"] is True
    get(server, "/healthz")  # a later turn of the loop: the tick task has looked and ended
    rec = server.app.series
    assert rec is not None and not rec.started and server.app._series_task is None


def test_the_token_and_bad_parameters(served: tuple[Server, Publisher]) -> None:
    server, _ = served
    assert get(server, "/api/series")[0] == 401
    assert get(server, "/api/series?token=nope-nope-nope")[0] == 401
    for query, what in (("since=abc", "since must be"), ("since=1.5", "since must be"),
                        ("stages=2", "stages must be 1 or 0")):  # fmt: skip
        status, _, body = get(server, f"/api/series?token={TOKEN}&{query}")
        assert status == 400 and what in json.loads(body)["error"], query
    assert get(server, f"/api/series?token={TOKEN}&since=12&stages=true")[0] == 200
    assert server.app.series is not None and server.app.series.ticks == 0


def test_no_pipeline_no_series() -> None:
    server = Server(ServeConfig(http="127.0.0.1:0"))
    server.attach_stats(lambda: {}, BUDGET_NS)
    server.start()
    try:
        body = get_json(server, "/api/series?stages=1")
        assert body["recording"] is False and body["t"] == [] and body["stages"] == {}
        assert get(server, "/api/series?since=x")[0] == 400  # still checked
    finally:
        server.stop()


def test_stats_counts_are_ints_and_the_hud_reads_the_same_window(
    served: tuple[Server, Publisher],
) -> None:
    server, pub = served
    for seq in range(30):
        pub.publish_one(seq)
    status, _, raw = get(server, f"/api/stats?token={TOKEN}")
    assert status == 200 and b'"count":30.0' not in raw and b'"count":30' in raw
    stats = json.loads(raw)
    assert all(type(s["count"]) is int for s in stats["latency_ms"].values())
    assert stats["latency_window"] == {"frames": 30, "size": 4096}
    total = stats["latency_ms"]["total"]
    # the overlay's HUD line, through the server's own path, at the same moment
    hud = server._hud()
    assert hud[0].split("  ", 1)[1] == hud_lines(stats)[0].split("  ", 1)[1]  # fps moves on
    assert f"p50 {total['p50']:.1f}  p99 {total['p99']:.1f} ms" in hud[0]
