"""Camera gone and back, for real threads on the real clock: a camera whose reads start
failing, the files of a folder removed and restored, a video file deleted, and an MJPEG
camera on loopback that stalls with its socket open. Each time the pipeline stays up, the
source says it once each way, and the miss log has one counted ``gap`` miss per outage (plus
its uncounted end with the length), not one line per missing frame.

(The RTSP server stopped for 10 s is in ``test_rtsp_outage.py``, marked slow.)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import pytest

from edge.clock import MONOTONIC
from edge.errors import SourceError, SourceNotFound
from edge.sources import SourceOptions, SupervisedSource, open_source
from edge.sources.base import new_seq
from tests.reliability.outage_rig import (
    Cable,
    FlakyCamera,
    LiveRun,
    StallingMjpegServer,
    jpeg_parts,
    vtest_images,
)

FAST_RECONNECT = SourceOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def assert_one_gap(by_cause: dict[str, int], why: object = None) -> None:
    """The outage is one ``gap`` miss; on a loaded machine the live pipeline may also skip a
    frame as stale (``queue``), which is load, not the outage: nothing else may appear."""
    assert by_cause.get("gap") == 1 and set(by_cause) <= {"gap", "queue"}, (by_cause, why)


def test_a_camera_whose_reads_fail_then_come_back(caplog: pytest.LogCaptureFixture) -> None:
    cable, seq = Cable(), new_seq()
    image = vtest_images(1)[0]
    reopen = FlakyCamera.opener(cable, seq, image)
    src = SupervisedSource(FlakyCamera(cable, seq, image), FAST_RECONNECT, MONOTONIC, reopen)
    with caplog.at_level(logging.INFO):
        run = LiveRun.start(src)
        try:
            run.wait_results(10)
            t_out = MONOTONIC.now_ns()
            cable.unplugged.set()  # the USB cable is pulled
            (opened,) = run.wait_gap_records(1)
            cable.wait_opens(3)  # reopening keeps failing, with backoff
            cable.unplugged.clear()  # plugged back in
            run.wait_results(10)
            out_ms = (MONOTONIC.now_ns() - t_out) / 1e6
        finally:
            run.stop()
    assert (opened.action, opened.consecutive) == ("source-silent", 1)
    _, closed = run.gaps()
    assert closed.action == "source-back" and closed.frame == opened.frame
    assert 1000.0 < closed.latency_ms < out_ms  # the silence, capture to capture
    assert_one_gap(run.pipe.counters.missed_by_cause)
    stats = src.stats()
    assert (stats.read_errors, stats.reconnects) == (1, 1) and stats.reconnect_attempts >= 3
    seqs = run.results
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # numbering goes on
    sup = messages(caplog, "edge.sources.supervisor")
    assert len(sup) == 2 and " lost: " in sup[0] and " back after " in sup[1]
    gap_lines = [m for m in messages(caplog, "edge.watchdog.deadline") if "gap" in m]
    assert len(gap_lines) == 2, gap_lines  # "no frame ... gap", "frames ... again"


def test_folder_files_removed_and_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(vtest_images(10)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), image)
    opts = SourceOptions(fps=30.0, loop=True, raw_jpeg=False)
    src = open_source(str(folder), opts, MONOTONIC)
    with caplog.at_level(logging.WARNING):
        run = LiveRun.start(src)
        try:
            run.wait_results(10)
            t0 = MONOTONIC.now_ns()
            shutil.move(folder, tmp_path / "away")  # the share is unmounted, say
            run.wait_gap_records(1)
            shutil.move(tmp_path / "away", folder)
            run.wait_results(10)
            outage_s = (MONOTONIC.now_ns() - t0) / 1e9
        finally:
            run.stop()
    assert [g.action for g in run.gaps()] == ["source-silent", "source-back"]
    assert_one_gap(run.pipe.counters.missed_by_cause)
    # unreadable files are corrupt frames, each in its own slot of the 30 fps schedule: about
    # 30 a second of outage, not a spin (and frames resume at once when the files are back)
    assert 20 <= src.corrupt_frames <= 31 * outage_s + 2
    warned = [m for m in messages(caplog, "edge.sources.supervisor") if "corrupt" in m]
    assert 1 <= len(warned) <= outage_s + 2  # at most one line a second


def test_a_deleted_video_plays_to_the_end_then_the_run_fails_clearly(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (192, 144))
    for image in vtest_images(40):
        writer.write(image)
    writer.release()
    src = open_source(str(clip), SourceOptions(pace=False, loop=True), MONOTONIC)
    try:
        frames = [src.read(1.0) for _ in range(5)]
        clip.unlink()  # deleted mid-run: the open descriptor keeps the data
        while len(frames) < 40:
            frames.append(src.read(1.0))
        assert all(f is not None for f in frames)
        with pytest.raises(SourceNotFound, match=r"clip\.avi: no such file;") as gone:
            src.read(1.0)  # the loop reopens the path: gone
    finally:
        src.close()
    assert isinstance(gone.value, FileNotFoundError) and isinstance(gone.value, SourceError)
    assert "restore the file" in str(gone.value) and "codec" not in str(gone.value)
    assert src.stats().read_errors == 1


def test_an_http_camera_that_stalls_without_closing(caplog: pytest.LogCaptureFixture) -> None:
    server = StallingMjpegServer(jpeg_parts(10), fps=15.0)
    # 2 s: long enough that a loaded machine's hiccup is not taken for a stall
    opts = SourceOptions(
        stall_timeout_s=2.0, open_timeout_s=2.0, reconnect_min_s=0.1, reconnect_max_s=0.4
    )
    try:
        src = open_source(server.url, opts, MONOTONIC)
        with caplog.at_level(logging.WARNING):
            run = LiveRun.start(src)
            try:
                run.wait_results(10)
                server.stall()  # socket open, nothing sent
                (opened,) = run.wait_gap_records(1)
                server.wait_connections(2)  # stall_timeout_s later: it gave up and reconnected
                server.resume()
                run.wait_results(10)
            finally:
                run.stop()
    finally:
        server.stop()
    sup = messages(caplog, "edge.sources.supervisor")
    why = (sup, run.gaps())
    assert opened.action == "source-silent"
    assert run.pipe.direct  # the worker read the camera itself: its reader keeps the newest
    assert [g.action for g in run.gaps()] == ["source-silent", "source-back"], why
    assert_one_gap(run.pipe.counters.missed_by_cause, why)
    stats = src.stats()
    assert stats.read_errors == 1 and stats.reconnects == 1, (stats, why)
    assert any("stalled" in m for m in sup) and sum(" back after " in m for m in sup) == 1, why
