"""The picamera2 adapter, run against edge.testing.picamera2 injected as ``picamera2``.

The fake follows picamera2's real API (jobs, reference-counted requests, strided buffers,
SensorTimestamp); these tests go through open_source("picamera2...") exactly as a Pi would.
Its sensor runs in real time, so frame rates here are high and counts small.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from edge.clock import MONOTONIC
from edge.errors import ConfigError, SourceError
from edge.sources import CameraFrame, SourceOptions, SupervisedSource, open_source
from edge.sources.picamera2 import BUFFER_COUNT
from edge.testing import picamera2 as fake

FAST = SourceOptions(fps=100.0, width=650, height=480, lores_width=300, lores_height=224)
TIMEOUT_S = 5.0


@pytest.fixture(autouse=True)
def picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake.reset()
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    yield
    for cam in list(fake.state.open.values()):
        cam.close()


def _read(src: SupervisedSource) -> CameraFrame:
    frame = src.read(TIMEOUT_S)
    assert isinstance(frame, CameraFrame)
    return frame


def test_frames_carry_main_lores_and_the_sensor_timestamp() -> None:
    src = open_source("picamera2", FAST, MONOTONIC)
    try:
        frames = [_read(src) for _ in range(3 * BUFFER_COUNT)]  # more than there are buffers
        assert fake.state.outstanding() == 0  # every request was released
    finally:
        src.close()
    last = frames[-1]
    assert last.image is not None and last.image.shape == (480, 650, 3)  # row padding cropped
    assert last.lores is not None and last.lores.shape == (224, 300, 3)
    assert [f.seq for f in frames] == list(range(len(frames)))
    # t_capture is the request's SensorTimestamp (start of exposure), not arrival time
    assert last.t_capture_ns == fake.state.delivered[-1]
    assert all(b.t_capture_ns > a.t_capture_ns for a, b in zip(frames, frames[1:], strict=False))
    # the lores stream, converted from strided YUV420, shows the same picture as main, in
    # the same channel order (a B/R swap or a stride error would differ by far more)
    import cv2

    small = cv2.resize(last.image, (300, 224), interpolation=cv2.INTER_AREA)
    diff = np.abs(small.astype(np.int16) - last.lores.astype(np.int16))
    assert float(diff.mean()) < 4.0
    assert float(last.image.std()) > 10.0  # real footage, not a blank buffer
    assert fake.state.open == {}  # closed


def test_without_lores_frames_have_none() -> None:
    src = open_source("picamera2", SourceOptions(fps=100.0), MONOTONIC)
    try:
        frame = _read(src)
    finally:
        src.close()
    assert frame.lores is None and frame.image is not None
    assert frame.image.shape == (480, 640, 3)
    assert src.fps == 100.0


def test_timeouts_reuse_one_job() -> None:
    fake.state.stalled.set()
    src = open_source("picamera2", FAST, MONOTONIC)
    try:
        cam = next(iter(fake.state.open.values()))
        for _ in range(20):
            assert src.read(0) is None
        assert len(cam._job_list) == 1  # not one abandoned job per timeout
        fake.state.stalled.clear()
        assert _read(src) is not None
        assert fake.state.outstanding() == 0
    finally:
        src.close()


def test_a_stalled_camera_is_reopened(caplog: pytest.LogCaptureFixture) -> None:
    # 2 s: a loaded machine's scheduling hiccup is not taken for a stall (one reconnect, exactly)
    opts = SourceOptions(fps=100.0, stall_timeout_s=2.0, reconnect_min_s=0.05, reconnect_max_s=0.2)
    src = open_source("picamera2:0", opts, MONOTONIC)
    try:
        before = _read(src)
        first_cam = next(iter(fake.state.open.values()))
        fake.state.stalled.set()  # the cable comes loose
        deadline = MONOTONIC.now_ns() + int(TIMEOUT_S * 1e9)
        while src.connected and MONOTONIC.now_ns() < deadline:
            src.read(0.1)
        assert not src.connected
        assert not first_cam.is_open  # the old camera was closed before reopening
        fake.state.stalled.clear()
        after = None
        while after is None and MONOTONIC.now_ns() < deadline:
            after = src.read(0.1)
        assert after is not None and after.seq > before.seq
        assert src.reconnects == 1 and src.read_errors == 1
        assert len(fake.state.open) == 1
    finally:
        src.close()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "no frame for" in messages and "back after" in messages


def test_close_wakes_a_blocked_read() -> None:
    fake.state.stalled.set()
    src = open_source("picamera2", SourceOptions(fps=100.0, stall_timeout_s=60.0), MONOTONIC)
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(src.read(30.0)))
    reader.start()
    src.close()
    reader.join(timeout=TIMEOUT_S)
    assert not reader.is_alive() and result == [None]
    assert fake.state.open == {}


def test_missing_and_busy_cameras_are_source_errors() -> None:
    with pytest.raises(SourceError, match=r"camera 1 not found; libcamera lists 1 \(imx708\)"):
        open_source("picamera2:1")
    src = open_source("picamera2", SourceOptions(fps=100.0))
    try:
        with pytest.raises(SourceError, match="another program"):
            open_source("picamera2")
    finally:
        src.close()
    fake.state.cameras = []
    with pytest.raises(SourceError, match="lists 0"):
        open_source("picamera2")


def test_lores_larger_than_main_is_a_config_error() -> None:
    opts = SourceOptions(width=320, height=240, lores_width=640, lores_height=480)
    with pytest.raises(ConfigError, match="must not exceed"):
        open_source("picamera2", opts)
    assert fake.state.open == {}  # the camera was closed again


def test_without_picamera2_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        open_source("picamera2")


def test_the_fake_keeps_picamera2_semantics() -> None:
    """Checks of the fake itself, so a drift from upstream behaviour shows up here."""
    cam = fake.Picamera2(0)
    try:
        config = cam.create_video_configuration(main={"size": (641, 481), "format": "RGB888"})
        assert config["main"]["size"] == (640, 480)  # aligned to even, as upstream
        # the caller's controls win over the defaults, as upstream merges them
        limits = {"FrameDurationLimits": (50000, 50000)}
        custom = cam.create_video_configuration(main={"size": (640, 480)}, controls=limits)
        assert custom["controls"]["FrameDurationLimits"] == (50000, 50000)
        with pytest.raises(ValueError, match="Bad key"):
            cam.create_video_configuration(main={"fps": 30})
        cam.configure(config)
        assert cam.camera_configuration()["main"]["stride"] == 1920
        cam.start()
        request = cam.capture_request(wait=TIMEOUT_S)
        request.release()
        with pytest.raises(RuntimeError, match="after release"):
            request.make_array("main")
        with pytest.raises(RuntimeError, match="negative"):
            request.release()
    finally:
        cam.close()
