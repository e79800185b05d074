"""Real footage through the file sources: vtest.avi and Megamind.avi from Debian's opencv-doc
(fetched into .cache/samples by scripts/test), paced in real time and unpaced, looped, and
damaged on purpose."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.clock import MONOTONIC
from edge.errors import SourceError, SourceNotFound
from edge.samples import sample_path
from edge.sources import EndOfStream, SourceOptions, open_source
from edge.sources.base import new_seq
from edge.sources.files import VideoFileSource

VTEST_FRAMES = 795  # what vtest.avi's header declares, and what FFmpeg decodes


def _drain(spec: str, opts: SourceOptions, limit: int = 5000) -> list[int]:
    src = open_source(spec, opts)
    seqs = []
    try:
        with pytest.raises(EndOfStream):
            for _ in range(limit):
                frame = src.read(5.0)
                assert frame is not None and frame.image is not None
                seqs.append(frame.seq)
    finally:
        src.close()
    return seqs


def test_vtest_unpaced_delivers_every_frame_then_ends() -> None:
    seqs = _drain(str(sample_path("vtest.avi")), SourceOptions(pace=False))
    assert seqs == list(range(VTEST_FRAMES))


def test_paced_video_follows_the_schedule_in_real_time() -> None:
    src = open_source(str(sample_path("vtest.avi")), SourceOptions(fps=100.0), MONOTONIC)
    try:
        assert src.fps == 100.0
        stamps = []
        for _ in range(30):
            frame = src.read(5.0)
            assert frame is not None and frame.image is not None
            assert frame.image.shape == (576, 768, 3)
            assert MONOTONIC.now_ns() >= frame.t_capture_ns  # never handed over early
            stamps.append(frame.t_capture_ns)
    finally:
        src.close()
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    # on a busy machine a late read skips frames (whole periods), it never shifts the grid
    assert all(g > 0 and g % 10_000_000 == 0 for g in gaps)
    skipped = src.stats().skipped
    assert sum(gaps) == (29 + skipped) * 10_000_000


def test_the_file_rate_is_used_when_no_fps_is_given() -> None:
    src = open_source(str(sample_path("vtest.avi")))
    try:
        assert src.fps == 10.0
    finally:
        src.close()


def test_looping_continues_past_the_end() -> None:
    src = open_source(str(sample_path("vtest.avi")), SourceOptions(pace=False, loop=True))
    try:
        seqs = [f.seq for f in (src.read(5.0) for _ in range(VTEST_FRAMES + 20)) if f]
    finally:
        src.close()
    assert seqs == list(range(VTEST_FRAMES + 20))


@pytest.mark.parametrize(
    ("spec", "clip", "shape", "fps", "reads"),
    [
        ("demo", "Megamind.avi", (528, 720, 3), 23.976, 300),  # 270 frames: it loops
        ("demo:person", "vtest.avi", (576, 768, 3), 10.0, 30),
    ],
)
def test_demo_loops_a_real_clip(
    spec: str, clip: str, shape: tuple[int, int, int], fps: float, reads: int
) -> None:
    src = open_source(spec, SourceOptions(pace=False))
    try:
        assert src.fps == pytest.approx(fps, abs=0.001)
        frames = [src.read(5.0) for _ in range(reads)]
    finally:
        src.close()
    images = [f.image for f in frames if f is not None and f.image is not None]
    assert len(images) == reads
    assert all(i.shape == shape for i in images)
    assert max(float(i.std()) for i in images) > 30.0  # real footage (Megamind fades in)
    assert frames[0] is not None and frames[0].source == spec
    assert sample_path(clip).is_file()


def test_damaged_video_is_read_to_its_end_without_crashing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(sample_path("vtest.avi").read_bytes())
    n = len(data)
    for at in (int(n * 0.3), int(n * 0.6)):
        data[at : at + 150_000] = b"\xab" * 150_000  # overwrite packets mid-stream
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(bytes(data[: n // 2]))
    with caplog.at_level(logging.WARNING, logger="edge.sources.files"):
        got_damaged = _drain(str(damaged), SourceOptions(pace=False))
        got_truncated = _drain(str(truncated), SourceOptions(pace=False))
    # FFmpeg skips what it cannot decode; the source carries on and ends cleanly
    assert 600 < len(got_damaged) < VTEST_FRAMES
    assert 300 < len(got_truncated) < VTEST_FRAMES // 2 + 20
    ended_early = [
        r.getMessage() for r in caplog.records if "truncated or damaged" in r.getMessage()
    ]
    assert len(ended_early) == 2


def test_a_file_that_is_not_a_video_is_a_source_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 4096)
    with pytest.raises(SourceError, match="cannot be opened") as e:
        open_source(str(bogus))
    assert "check the file and its codec" in str(e.value)
    assert not isinstance(e.value, FileNotFoundError)  # it is there: the codec message


def test_a_video_file_that_is_not_there_says_so(tmp_path: Path) -> None:
    # open_source refuses a missing path at parse time (ConfigError); the source itself meets
    # it when a looping video is reopened after the file was deleted or moved
    gone = tmp_path / "gone.mp4"
    with pytest.raises(SourceNotFound, match=r"gone\.mp4: no such file; .*restore") as e:
        VideoFileSource(gone, "gone.mp4", SourceOptions(), MONOTONIC, new_seq())
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, SourceError)
    assert "codec" not in str(e.value)
