"""The viewer's pure parts: config and ``--http`` parsing, request parsing and parameters,
the publish side of the hub, rendering (box scaling for reduced JPEG frames), the fps meter,
the metrics' buckets, and the miss-record tee."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.frame import Detections, Frame
from edge.metrics import BUDGET_FRACTIONS, EdgeMetrics, latency_buckets
from edge.outputs.records import MissLogOutput
from edge.overlay import PALETTE
from edge.pipeline.output import Broadcast, OutputBase
from edge.serve import ServeConfig, parse_bind
from edge.serve.app import float_param, int_param
from edge.serve.http import HttpError, parse_head
from edge.serve.hub import FrameHub
from edge.serve.provider import RateMeter
from edge.serve.render import Published, render
from edge.serve.server import hud_lines
from edge.testing import FakeClock
from edge.watchdog.record import MissRecord, RunRecord

MS = 1_000_000


@pytest.mark.parametrize(
    ("spec", "host", "port"),
    [("0.0.0.0:8080", "0.0.0.0", 8080), (":8080", "127.0.0.1", 8080), ("8080", "127.0.0.1", 8080),
     ("[::1]:9000", "::1", 9000), ("localhost:0", "localhost", 0), ("pi-5.lan:80", "pi-5.lan", 80)],
)  # fmt: skip
def test_parse_bind(spec: str, host: str, port: int) -> None:
    b = parse_bind(spec)
    assert (b.host, b.port) == (host, port)


def test_bind_url_brackets_ipv6() -> None:
    assert parse_bind("[::1]:9000").url() == "http://[::1]:9000/"
    assert parse_bind("8080").url() == "http://127.0.0.1:8080/"


@pytest.mark.parametrize("spec", ["", "host:", "host:http", "1.2.3.4:70000", "[::1]", "a b:80",
                                  "host:-1", "bad/host:80"])  # fmt: skip
def test_parse_bind_rejects(spec: str) -> None:
    with pytest.raises(ConfigError, match="serve.http"):
        parse_bind(spec)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"max_clients": 0}, "serve.max_clients"), ({"stream_fps": 0.0}, "serve.stream_fps"),
     ({"jpeg_quality": 101}, "serve.jpeg_quality"), ({"token": "short"}, "serve.token"),
     ({"token": "has a space in it"}, "serve.token"), ({"client_timeout_s": 0}, "serve.client"),
     ({"http": "x:y"}, "serve.http"), ({"health_budgets": 0.5}, "serve.health_budgets")],
)  # fmt: skip
def test_serve_config_rejects(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        ServeConfig(**kwargs)  # type: ignore[arg-type]


def test_serve_config_defaults_bind_loopback() -> None:
    cfg = ServeConfig()
    assert cfg.http is None and cfg.token is None
    assert (cfg.bind.host, cfg.bind.port) == ("127.0.0.1", 8080)


def test_parse_head() -> None:
    req = parse_head(
        b"GET /api/misses?limit=5&token=a%20b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert (req.method, req.path, dict(req.query)) == (
        "GET",
        "/api/misses",
        {"limit": "5", "token": "a b"},
    )
    assert req.headers["host"] == "x" and not req.keep_alive
    assert parse_head(b"GET / HTTP/1.1\r\n\r\n").keep_alive
    assert not parse_head(b"GET / HTTP/1.0\r\n\r\n").keep_alive


@pytest.mark.parametrize(
    ("head", "status"),
    [(b"GARBAGE\r\n\r\n", 400), (b"GET / HTTP/2.0\r\n\r\n", 505), (b"PUT / HTTP/1.1\r\n\r\n", 405),
     (b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 413), (b"GET x HTTP/1.1\r\n\r\n", 400),
     (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400), (b"GET /?a=1&a=2 HTTP/1.1\r\n\r\n", 400)],
)  # fmt: skip
def test_parse_head_refuses(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as e:
        parse_head(head)
    assert e.value.status == status


def test_params() -> None:
    assert int_param({"w": "320"}, "w", 16, 7680) == 320
    assert int_param({}, "w", 16, 7680) is None
    assert float_param({"f": "2.5"}, "f", 0.1, 120) == 2.5
    assert float_param({"f": ".5"}, "f", 0.1, 120) == 0.5
    for bad in ("-1", "1e3", "nan", "inf", "0x10", " 5", "5 ", "", "200"):
        with pytest.raises(HttpError, match="f must be a number 0.1..120"):
            float_param({"f": bad}, "f", 0.1, 120)
    for bad in ("15", "7681", "3.0", "-20", "abc", "99999999999"):
        with pytest.raises(HttpError, match=r"w must be an integer 16\.\.7680"):
            int_param({"w": bad}, "w", 16, 7680)


def test_latency_buckets_resolve_the_budget() -> None:
    b = latency_buckets(0.033)
    assert len(b) == len(BUDGET_FRACTIONS) and list(b) == sorted(b)
    assert 0.033 in b and b[0] == pytest.approx(0.00165) and b[-1] == pytest.approx(0.33)
    assert sum(1 for x in b if x <= 0.033) >= 10  # the budget itself is split in ten
    with pytest.raises(ValueError):
        latency_buckets(0)


def test_histogram_total_is_the_sum_of_the_stages() -> None:
    m = EdgeMetrics(0.033, lambda: {})
    m.observe_frame({"wait": 1 * MS, "infer": 20 * MS, "publish": 1 * MS})
    text = m.exposition()[0].decode()
    assert 'edge_frame_latency_seconds_sum{stage="total"} 0.022' in text
    assert 'edge_frame_latency_seconds_bucket{le="0.0231",stage="total"} 1.0' in text
    assert 'edge_frame_latency_seconds_bucket{le="0.0198",stage="total"} 0.0' in text


def test_rate_meter_over_a_window() -> None:
    clock = FakeClock()
    meter = RateMeter(clock, window_ns=2_000_000_000)
    assert meter.rate(0) == 0.0
    for n in range(1, 11):
        clock.advance(500 * MS)
        rate = meter.rate(n * 15)  # 15 events per 0.5 s
    assert rate == pytest.approx(30.0)
    clock.advance(10_000 * MS)  # reads far apart: the rate since the last read
    assert meter.rate(150 + 60) == pytest.approx(60 / 10.0)
    seeded = RateMeter(clock, start_count=5)  # the first read has a rate already
    clock.advance(2_000 * MS)
    assert seeded.rate(65) == pytest.approx(30.0)


def test_hud_lines() -> None:
    stats = {"fps": 29.94, "latency_ms": {"total": {"p50": 12.34, "p99": 20.0}}, "mode": "normal"}
    assert hud_lines(stats) == ("29.9 fps  p50 12.3  p99 20.0 ms",)
    assert hud_lines({"fps": 10.0, "mode": "degraded", "every": 4})[1] == "degraded: infer every 4"


def frame(seq: int, t_ns: int, **kw: object) -> Frame:
    return Frame(seq, t_ns, **kw)  # type: ignore[arg-type]


def test_publish_keeps_a_reference_and_marks_stale_and_late() -> None:
    clock = FakeClock()
    hub = FrameHub(stream_fps=10, quality=80, clock=clock)
    hub.budget_ns = 33 * MS
    img = np.zeros((8, 8, 3), np.uint8)
    det = Detections.empty()
    f0 = frame(0, clock.now_ns(), image=img)
    hub.publish(f0, det)
    assert hub.latest is not None and hub.latest.frame is f0 and hub.latest.image is None
    assert hub.latest.stale_age_ms is None and not hub.latest.missed
    clock.advance(66 * MS)
    f1 = frame(1, clock.now_ns() - 34 * MS, image=img)  # captured 34 ms ago: late
    hub.publish(f1, det, stale=True, image=img)
    assert hub.latest.missed and hub.latest.image is img
    assert hub.latest.stale_age_ms == pytest.approx(32.0)  # boxes from f0, captured 32 ms earlier
    hub.publish(frame(2, clock.now_ns()), det, missed=True)
    assert hub.latest.missed and hub.published == 3 and hub.latest.version == 3
    assert hub.current is None and hub.rendered == 0  # nobody watches: nothing drawn


def test_drain_stages_waits_for_a_frame_to_finish() -> None:
    hub = FrameHub(stream_fps=10, quality=80)
    a, b = frame(0, 0), frame(1, 0)
    hub.publish(a, Detections.empty())
    assert hub.drain_stages() == []  # still in its publish stage
    a.add_stage("publish", 5)
    hub.publish(b, Detections.empty())
    assert hub.drain_stages() == [{"publish": 5}]
    b.add_stage("wait", 1)
    hub.publish(frame(2, 0), Detections.empty())  # a newer frame: b is finished
    assert hub.drain_stages() == [{"wait": 1}]


def box_det(x1: float, y1: float, x2: float, y2: float) -> Detections:
    return Detections(
        np.array([[x1, y1, x2, y2]], np.float32), np.array([0.9], np.float32),
        np.array([0], np.int32), None, ("face",),
    )  # fmt: skip


def test_render_scales_boxes_from_the_full_frame_to_a_reduced_decode() -> None:
    full = np.full((960, 1280, 3), 40, np.uint8)
    ok, jpeg = cv2.imencode(".jpg", full)
    assert ok
    reduced = cv2.resize(full, (320, 240))  # as the worker decodes it at 1/4
    det = box_det(400, 400, 800, 800)  # in full-frame pixels
    f = Frame(7, 0, jpeg=jpeg.tobytes())
    out = render(Published(1, f, det, reduced, None, False), (), 95)
    assert out is not None and out.canvas.shape == (240, 320, 3) and out.seq == 7
    col = out.canvas[130:170, 100]  # the left edge at x = 400 / 4
    assert np.all(np.abs(col.astype(int) - PALETTE[0]) <= 5)
    assert not np.any(np.all(np.abs(out.canvas[130:170, 90].astype(int) - PALETTE[0]) <= 5, 1))
    assert np.array_equal(reduced, cv2.resize(full, (320, 240)))  # drawn on a copy
    # shed frames come without the worker's image: the JPEG is decoded, at >= 640 wide
    out = render(Published(2, f, det, None, 12.0, False), (), 95)
    assert out is not None and out.canvas.shape == (480, 640, 3)
    assert np.all(np.abs(out.canvas[260:340, 200].astype(int) - (160, 160, 160)) <= 5)


def test_rendered_encodes_once_per_width_and_never_upscales() -> None:
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    out = render(
        Published(1, Frame(0, 0, image=img), Detections.empty(), None, None, False), (), 80
    )
    assert out is not None
    a = out.jpeg(80)
    assert out.jpeg(80) is a and out.cached(80) is a  # shared bytes
    assert cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_COLOR).shape == (60, 80, 3)
    assert out.jpeg(4000) is out.jpeg(None)  # wider than the frame: the native encoding


def test_render_without_an_image_gives_nothing() -> None:
    assert render(Published(1, Frame(0, 0), Detections.empty(), None, None, False), (), 80) is None
    bad = Frame(0, 0, jpeg=b"\xff\xd8garbage")
    assert render(Published(1, bad, Detections.empty(), None, None, False), (), 80) is None


class _Sink:
    def __init__(self) -> None:
        self.records: list[object] = []
        self.lost = 0

    def write(self, record: object) -> bool:
        self.records.append(record)
        return True

    def flush(self, timeout_s: float = 1.0) -> bool:
        return True


class _Viewer(OutputBase):
    def __init__(self, on_miss: Callable[[MissRecord], object]) -> None:
        self._on_miss = on_miss

    def on_miss(self, record: MissRecord) -> None:
        self._on_miss(record)


def test_miss_tee_copies_misses_and_survives_a_failing_viewer() -> None:
    sink, seen = _Sink(), []
    tee = Broadcast([MissLogOutput(sink), _Viewer(seen.append)])
    rec = MissRecord.create(frame=1, source="s", budget_ms=33, latency_ms=40, stages_ns={},
                            cause="infer", action="completed-late", consecutive=1)  # fmt: skip
    run = RunRecord(run="r", event="tick", source="s", budget_ms=33)
    tee.on_miss(rec)
    tee.on_run_record(run)
    assert seen == [rec] and sink.records == [rec, run]

    def boom(_: MissRecord) -> None:
        raise RuntimeError("viewer broke")

    # the failing viewer first: the miss log after it still gets the record
    tee = Broadcast([_Viewer(boom), MissLogOutput(sink)])
    tee.on_miss(rec)
    assert sink.records[-1] is rec and tee.records_lost == 0 and tee.flush() and tee.errors == 1


def test_health_allows_the_longer_of_budget_and_frame_period() -> None:
    from edge.serve import Server

    clock = FakeClock()
    server = Server(ServeConfig(health_budgets=3.0), clock=clock)
    assert server.health() == (False, "no pipeline attached")
    server.attach_stats(lambda: {}, 2 * MS, period_ns=40 * MS, clock=clock)  # 2 ms budget, 25 fps
    assert server.health() == (False, "starting: no frame has completed yet")
    server.publish(frame(0, clock.now_ns()), Detections.empty())
    clock.advance(120 * MS)  # 3 frame periods: still fine, though 60 budgets
    assert server.health()[0]
    clock.advance(1 * MS)
    ok, reason = server.health()
    assert not ok and reason == "no frame completed for 121 ms (limit 120 ms: 3 x 40.0 ms)"
