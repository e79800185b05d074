"""Source specs: what each form parses to, what bad ones say, and the options' validation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.sources import SourceOptions, open_source, parse_spec
from edge.sources.files import ImageFolderSource
from edge.sources.opencv_live import has_gstreamer
from edge.sources.registry import OPENERS


@pytest.mark.parametrize(
    ("spec", "kind", "target"),
    [
        ("0", "v4l2", "0"),
        ("2", "v4l2", "2"),
        ("/dev/video1", "v4l2", "/dev/video1"),
        ("/dev/v4l/by-id/usb-Cam-video-index0", "v4l2", "/dev/v4l/by-id/usb-Cam-video-index0"),
        ("picamera2", "picamera2", "0"),
        ("picamera2:1", "picamera2", "1"),
        ("gst:videotestsrc ! appsink", "gst", "videotestsrc ! appsink"),
        ("rtsp://10.0.0.5:554/stream1", "stream", "rtsp://10.0.0.5:554/stream1"),
        ("RTSPS://cam.local/x", "stream", "RTSPS://cam.local/x"),
        ("http://127.0.0.1:8080/video.mjpg", "stream", "http://127.0.0.1:8080/video.mjpg"),
        ("https://example.org/live.m3u8", "stream", "https://example.org/live.m3u8"),
        ("demo", "demo", ""),
        ("demo:person", "demo", "person"),
        ("demo:face", "demo", "face"),
        ("  demo  ", "demo", ""),
    ],
)
def test_spec_forms(spec: str, kind: str, target: str) -> None:
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.target) == (kind, target)
    assert parsed.live == (kind in {"v4l2", "picamera2", "gst", "stream"})
    assert parsed.kind in OPENERS


def test_paths_are_folders_images_or_videos(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not checked when parsing")
    image = tmp_path / "one.PNG"
    image.write_bytes(b"x")
    assert parse_spec(str(tmp_path)).kind == "folder"
    assert parse_spec(str(video)).kind == "video"
    assert parse_spec(str(image)).kind == "folder"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("demo:cat", "unknown demo clip 'cat'"),
        ("demo:", "unknown demo clip"),
        ("picamera2:front", "camera number"),
        ("gst:  ", "appsink"),
        ("ftp://host/x.avi", "unsupported URL scheme"),
        ("/no/such/clip.mp4", "not a camera, a stream URL, or an existing file or folder"),
        ("/dev/videoX", "not a camera"),
    ],
)
def test_bad_specs_name_the_spec_and_the_accepted_forms(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert says in message
    assert repr(spec.strip()) in message
    # the forms themselves, not the module's constant (which an empty string would satisfy)
    accepted = message.split("; accepted: ", 1)[-1]
    for form in ("/dev/videoN", "picamera2", "gst:", "rtsp://", "http(s)://", "demo"):
        assert form in accepted, (form, message)
    assert "\n" not in message


def test_open_source_raises_bad_specs_before_opening_anything() -> None:
    with pytest.raises(ConfigError, match="demo:dog"):
        open_source("demo:dog")


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"fps": 0.0}, "source.fps"),
        ({"width": 640}, "given together"),
        ({"lores_height": 320}, "given together"),
        ({"width": 8, "height": 8}, "source.width"),
        ({"reconnect_min_s": 5.0, "reconnect_max_s": 1.0}, "source.reconnect_max_s"),
        ({"stall_timeout_s": 0.0}, "source.stall_timeout_s"),
    ],
)
def test_options_are_validated(kwargs: dict[str, float], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        SourceOptions(**kwargs)  # type: ignore[arg-type]


def test_option_sizes() -> None:
    opts = SourceOptions(width=1280, height=720, lores_width=320, lores_height=240)
    assert opts.size == (1280, 720)
    assert opts.lores_size == (320, 240)
    assert SourceOptions().size is None and SourceOptions().lores_size is None


def test_gstreamer_detection_reads_the_build_information() -> None:
    with_gst = (
        "  Video I/O:\n    FFMPEG:                      YES\n"
        "    GStreamer:                   YES (1.22.0)\n"
    )
    without = (
        "  Video I/O:\n    FFMPEG:                      YES\n    GStreamer:                   NO\n"
    )
    assert has_gstreamer(with_gst)
    assert not has_gstreamer(without)


def test_gst_without_gstreamer_says_to_use_the_system_opencv() -> None:
    if has_gstreamer():  # a system OpenCV: the pipeline itself is then what fails
        with pytest.raises(SourceError):
            open_source("gst:fakesrc num-buffers=0 ! nosuchelement ! appsink")
        return
    with pytest.raises(SourceError) as info:
        open_source("gst:videotestsrc ! videoconvert ! appsink")
    message = str(info.value)
    assert "python3-opencv" in message and "--system-site-packages" in message
    assert "gst:videotestsrc" in message


def test_open_source_builds_the_right_source(tmp_path: Path) -> None:
    ok, data = cv2.imencode(".png", np.full((8, 8, 3), 7, np.uint8))
    assert ok
    (tmp_path / "a.png").write_bytes(data.tobytes())
    src = open_source(str(tmp_path), SourceOptions(pace=False))
    try:
        assert not src.live
        assert src.name == str(tmp_path)
        assert src.fps == 30.0
        frame = src.read(1.0)
        assert frame is not None and frame.image is not None
        assert int(frame.image[0, 0, 0]) == 7
    finally:
        src.close()
    assert ImageFolderSource.list_images(tmp_path) == [tmp_path / "a.png"]
