"""A viewer that connects gets the newest frame first, never one drawn before nobody watched
(the overlay stream once opened on a frame seconds old: seq 857, then 991). Real HTTP client,
real server, frames published by hand, so which seq is the newest is known exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.serve import ServeConfig, Server
from tests.integration.serve_rig import BUDGET_NS, TIMEOUT_S, MjpegReader, Publisher, load_clip

pytestmark = pytest.mark.usefixtures("models_ready")


def first_seq(server: Server) -> int:
    reader = MjpegReader(server)
    try:
        [(seq, _img, _data)] = reader.take(1)
    finally:
        reader.close()
    assert server.app.wait_viewers(lambda app: app.hub.watchers == 0, TIMEOUT_S)
    return seq


def test_a_new_viewer_gets_the_newest_frame_not_the_last_one_drawn(samples_dir: Path) -> None:
    clip = load_clip(samples_dir / "Megamind.avi", n=8)
    # a short client timeout: a viewer that left is noticed at its next keepalive write
    server = Server(ServeConfig(http="127.0.0.1:0", stream_fps=30.0, client_timeout_s=0.5))
    pub = Publisher(server, clip)  # not started: frames are published one by one below
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    try:
        for seq in range(5):
            pub.publish_one(seq)
        assert first_seq(server) == 4  # the newest when it connected
        for seq in range(5, 60):  # published while nobody watches: nothing is drawn
            pub.publish_one(seq)
        assert server.hub.current is not None and server.hub.current.seq == 4
        assert first_seq(server) == 59  # not frame 4, the last one drawn
        assert first_seq(server) == 59  # nothing newer since: the frame drawn for the last
    finally:
        assert server.stop(), "the server did not stop within its timeout"
