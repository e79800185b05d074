"""``/stream.mjpg`` and ``/snapshot.jpg`` read by a real HTTP client: every part is a JPEG, the
box is drawn where the detection says, frames are shared and newest-first, slow viewers are
cut off without touching the publisher, and the client limit holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.frame import Detections
from edge.overlay import PALETTE, STALE
from edge.serve import ServeConfig, Server
from tests.integration.serve_rig import (
    BUDGET_NS,
    TIMEOUT_S,
    MjpegReader,
    Publisher,
    Sample,
    get,
    load_clip,
)

pytestmark = pytest.mark.usefixtures("models_ready")


@pytest.fixture(scope="module")
def clip(samples_dir: Path) -> list[Sample]:
    return load_clip(samples_dir / "Megamind.avi")


@pytest.fixture()
def live(clip: list[Sample]) -> Iterator[tuple[Server, Publisher]]:
    server = Server(ServeConfig(http="127.0.0.1:0", jpeg_quality=95, stream_fps=30.0))
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    pub.start()
    try:
        yield server, pub
    finally:
        pub.close()
        assert server.stop(), "the server did not stop within its timeout"


def edge_pixels(img: np.ndarray, box: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The pixels of the box's left and right edges, over the middle half of its height."""
    x1, y1, x2, y2 = (np.asarray(box) * scale).round().astype(int).tolist()
    h, w = img.shape[:2]
    ys = slice(max(0, y1 + (y2 - y1) // 4), min(h, y2 - (y2 - y1) // 4))
    cols = [c for c in (x1, x2) if 0 <= c < w]
    return np.concatenate([img[ys, c] for c in cols]).astype(np.int32)


def near(pixels: np.ndarray, bgr: tuple[int, int, int], tol: int = 60) -> float:
    """Fraction of ``pixels`` within ``tol`` of ``bgr`` on every channel."""
    return float(np.mean(np.all(np.abs(pixels - np.array(bgr)) <= tol, axis=1)))


def biggest(det: Detections) -> int:
    areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
    return int(np.argmax(areas))


def test_every_part_is_a_jpeg_with_the_box_where_the_detection_is(
    live: tuple[Server, Publisher],
) -> None:
    server, pub = live
    reader = MjpegReader(server)
    try:
        parts = reader.take(5)
    finally:
        reader.close()
    seqs = [seq for seq, _, _ in parts]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5  # newest each time, never repeated
    checked = 0
    for seq, img, _ in parts:
        sample = pub.frames[seq]
        assert img.shape == sample.image.shape
        if not len(sample.detections):
            continue
        box = sample.detections.boxes[biggest(sample.detections)]
        drawn, raw = edge_pixels(img, box), edge_pixels(sample.image, box)
        # the box's edges are in the class colour in the stream, and were not in the frame
        assert near(drawn, PALETTE[0]) > 0.8, (seq, box)
        assert near(raw, PALETTE[0]) < 0.2
        checked += 1
    assert checked >= 3


def test_width_scales_the_stream_and_the_box_with_it(live: tuple[Server, Publisher]) -> None:
    server, pub = live
    reader = MjpegReader(server, "?width=384&fps=5")
    try:
        parts = reader.take(2)
    finally:
        reader.close()
    for seq, img, _ in parts:
        sample = pub.frames[seq]
        h, w = sample.image.shape[:2]
        assert img.shape[:2] == (round(h * 384 / w), 384)
        if len(sample.detections):
            box = sample.detections.boxes[biggest(sample.detections)]
            s = 384 / w
            # a 2 px line scaled by ~0.5 is one blended pixel: look within a pixel of the edge
            shifted = [box + np.array([dx / s, 0, dx / s, 0]) for dx in (-1, 0, 1)]
            best = max(near(edge_pixels(img, b, s), PALETTE[0], tol=80) for b in shifted)
            assert best > 0.5


def test_viewers_of_one_width_share_one_encoding(live: tuple[Server, Publisher]) -> None:
    server, pub = live
    a, b = MjpegReader(server), MjpegReader(server)
    try:
        got_a = {seq: data for seq, _, data in a.take(6)}
        got_b = {seq: data for seq, _, data in b.take(6)}
    finally:
        a.close()
        b.close()
    common = set(got_a) & set(got_b)
    assert common, "two viewers at the same rate saw no frame in common"
    for seq in common:
        assert got_a[seq] == got_b[seq]  # the same bytes: encoded once, shared
    # drawn at most once per produced frame, whoever watched
    assert server.hub.rendered <= pub.count


def test_stale_and_missed_frames_are_marked(clip: list[Sample]) -> None:
    server = Server(ServeConfig(http="127.0.0.1:0", jpeg_quality=95))
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    try:
        seq = next(i for i, s in enumerate(clip) if len(s.detections))
        pub.publish_one(seq, stale=False, missed=False)
        pub.publish_one(seq + len(clip), stale=True, missed=True)  # same image, reused boxes
        status, headers, body = get(server, "/snapshot.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert int(headers["x-frame-seq"]) == seq + len(clip)
        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        det = clip[seq].detections
        box = det.boxes[biggest(det)]
        assert near(edge_pixels(img, box), STALE, tol=70) > 0.5  # grey, not the class colour
        assert near(edge_pixels(img, box), PALETTE[0]) < 0.2
        border = img[img.shape[0] // 4 : img.shape[0] * 3 // 4, 0]
        assert near(border.astype(np.int32), (0, 0, 255)) > 0.9  # the missed frame's red border
    finally:
        server.stop()


def test_a_stalled_viewer_is_cut_off_and_costs_the_others_nothing(clip: list[Sample]) -> None:
    cfg = ServeConfig(http="127.0.0.1:0", client_timeout_s=0.5, stream_fps=30.0)
    server = Server(cfg)
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    pub.start()
    stalled = socket.socket()
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert server.address is not None
        stalled.connect(server.address)
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        healthy = MjpegReader(server)
        before = pub.count
        assert server.app.wait_viewers(lambda app: app.dropped["slow"] >= 1, TIMEOUT_S)
        assert len(healthy.take(5)) == 5  # the other viewer still gets frames
        healthy.close()
        assert pub.count > before  # and the publisher never waited for anyone
    finally:
        stalled.close()
        pub.close()
        server.stop()


def test_the_client_limit_answers_503_and_frees_slots(clip: list[Sample]) -> None:
    server = Server(ServeConfig(http="127.0.0.1:0", max_clients=2))
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    pub.start()
    try:
        first, second = MjpegReader(server), MjpegReader(server)
        assert len(first.take(1)) == len(second.take(1)) == 1
        third = MjpegReader(server)
        assert third.status == 503 and third.resp.getheader("Retry-After") == "5"
        third.close()
        first.close()
        assert server.app.wait_viewers(lambda app: app.hub.watchers == 1, TIMEOUT_S)
        fourth = MjpegReader(server)
        assert fourth.status == 200 and len(fourth.take(1)) == 1
        fourth.close()
        second.close()
    finally:
        pub.close()
        server.stop()


def test_nothing_is_drawn_while_nobody_watches(clip: list[Sample]) -> None:
    server = Server(ServeConfig(http="127.0.0.1:0"))
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    try:
        for seq in range(10):
            pub.publish_one(seq)
        assert server.hub.rendered == 0 and server.hub.current is None
    finally:
        server.stop()


def test_a_viewer_rate_cap_takes_the_newest_and_draws_only_what_it_takes(
    live: tuple[Server, Publisher],
) -> None:
    server, pub = live
    assert pub.wait_count(10)  # past start-up: the publisher runs at its pace
    reader = MjpegReader(server, "?fps=5")
    try:
        seqs = [seq for seq, _, _ in reader.take(4)]
    finally:
        reader.close()
    # 30 frames a second published, 5 a second taken: the newest each time, never a queue of
    # every frame (a starved publisher catches up in bursts, so no single gap is asserted)
    assert seqs == sorted(set(seqs)) and seqs[-1] - seqs[0] >= 2 * (len(seqs) - 1), seqs
    # and drawing follows the viewer's demand, not the publisher's rate (nor stream_fps = 30)
    assert server.hub.rendered <= len(seqs) + 1 < pub.count // 3
