"""Image folders, and what happens to corrupt JPEGs: counted, skipped, never a crash."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import SourceError
from edge.sources import EndOfStream, SourceOptions, open_source
from edge.sources.base import jpeg_problem
from edge.sources.files import ImageFolderSource
from edge.testing import FakeClock

UNPACED = SourceOptions(pace=False)


def _encode(ext: str, value: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A flat right half of ``value`` (what the tests read back), a noisy left half (so that
    most of a JPEG is entropy-coded data, as in a real frame, not headers)."""
    image = np.full((size[1], size[0], 3), value, np.uint8)
    noise = np.random.default_rng(value).integers(0, 255, (size[1], size[0] // 2, 3))
    image[:, : size[0] // 2] = noise.astype(np.uint8)
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def _value(frame_image: np.ndarray | None, jpeg: bytes | None) -> int:
    if frame_image is None:
        assert jpeg is not None
        frame_image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame_image is not None
    return int(frame_image[0, -1, 0])  # blue of the right half


def test_files_come_in_sorted_order_jpegs_as_bytes(tmp_path: Path) -> None:
    # written out of order; names sort as 000, 001, 002 ...
    for i in (3, 0, 2, 1):
        ext = ".jpg" if i % 2 == 0 else ".png"
        (tmp_path / f"img_{i:03d}{ext}").write_bytes(_encode(ext, 40 * i + 20))
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source(str(tmp_path), UNPACED)
    values, kinds = [], []
    try:
        with pytest.raises(EndOfStream):
            while True:
                frame = src.read(1.0)
                assert frame is not None
                kinds.append("jpeg" if frame.jpeg is not None else "image")
                values.append(_value(frame.image, frame.jpeg))
    finally:
        src.close()
    assert kinds == ["jpeg", "image", "jpeg", "image"]
    assert [abs(v - (40 * i + 20)) <= 3 for i, v in enumerate(values)] == [True] * 4
    assert src.stats().frames == 4


def test_raw_jpeg_off_decodes_jpegs(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(_encode(".jpg", 100))
    src = open_source(str(tmp_path), SourceOptions(pace=False, raw_jpeg=False))
    try:
        frame = src.read(1.0)
    finally:
        src.close()
    assert frame is not None and frame.jpeg is None and frame.image is not None
    assert frame.image.shape == (48, 64, 3)


def test_loop_starts_again(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(_encode(".png", 50 * i))
    src = open_source(str(tmp_path), SourceOptions(pace=False, loop=True))
    try:
        frames = [src.read(1.0) for _ in range(7)]
    finally:
        src.close()
    assert [f.seq for f in frames if f] == list(range(7))
    assert [_value(f.image, f.jpeg) for f in frames if f] == [0, 50, 100, 0, 50, 100, 0]


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no images")
    with pytest.raises(SourceError, match="no images found"):
        open_source(str(tmp_path))


def test_jpeg_problem() -> None:
    noise = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", noise)
    assert ok
    good = data.tobytes()
    assert jpeg_problem(good) is None
    assert jpeg_problem(good + b"\x00" * 64) is None  # cameras pad their buffers with zeros
    assert jpeg_problem(good[: len(good) // 2]) == "truncated: no end-of-image marker"
    assert jpeg_problem(b"garbage" * 50) == "no JPEG start-of-image marker"
    assert jpeg_problem(b"") == "no JPEG start-of-image marker"
    assert (
        jpeg_problem(b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9") == "no start-of-scan marker"
    )


def test_corrupt_jpegs_are_counted_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = []
    for i in range(8):
        data = _encode(".jpg", 30 * i)
        if i in (2, 3, 5):
            data = data[: len(data) * 2 // 3]  # cut short, like a USB camera losing packets
        if i == 6:
            data = b"\xff\xd8\xff" + bytes(200)  # starts as a JPEG, then nothing
        path = tmp_path / f"{i:02d}.jpg"
        path.write_bytes(data)
        names.append(path)
    clock = FakeClock()
    src = open_source(str(tmp_path), UNPACED, clock)
    good = []
    try:
        with caplog.at_level(logging.WARNING, logger="edge.sources.supervisor"):
            with pytest.raises(EndOfStream):
                while True:
                    frame = src.read(1.0)
                    assert frame is not None
                    good.append(_value(frame.image, frame.jpeg))
    finally:
        src.close()
    assert [round(v / 30) for v in good] == [0, 1, 4, 7]
    stats = src.stats()
    assert stats.corrupt_frames == 4 and stats.frames == 4
    # one line for the first corrupt frame; the rest fall within the same second
    lines = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(lines) == 1 and "02.jpg" in lines[0] and "truncated" in lines[0]


def test_corrupt_frames_logged_once_per_second_per_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(6):
        (tmp_path / f"{i}.jpg").write_bytes(b"\xff\xd8\xff" + bytes(10))
    (tmp_path / "6.png").write_bytes(b"\x89PNG not really")
    clock = FakeClock()
    src = open_source(str(tmp_path), SourceOptions(fps=2.0), clock)  # one frame per 500 ms
    try:
        with caplog.at_level(logging.WARNING, logger="edge.sources.supervisor"):
            for _ in range(7):
                assert src.read(0) is None
                clock.advance(500_000_000)
    finally:
        src.close()
    lines = [r.getMessage() for r in caplog.records]
    assert src.stats().corrupt_frames == 7
    # jpeg kind: at 0 s (1 frame), at 1 s (2 frames: 0.5 s and 1 s), at 2 s (2 frames);
    # the undecodable png is another kind, logged at once
    # each line stands for the frames it names plus the ones held back since the last line
    def stands_for(line: str) -> int:
        held = re.search(r"\((\d+) more in the last", line)
        return int(line.split("skipped ")[1].split(" ")[0]) + (int(held[1]) if held else 0)

    assert [stands_for(line) for line in lines] == [1, 2, 2, 1]
    assert "not an image whose size can be read" in lines[-1]


def test_a_single_image_is_a_folder_of_one(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    path.write_bytes(_encode(".png", 9))
    src = open_source(str(path), UNPACED)
    try:
        assert src.read(1.0) is not None
        with pytest.raises(EndOfStream):
            src.read(1.0)
    finally:
        src.close()
    assert isinstance(ImageFolderSource.list_images(tmp_path), list)
