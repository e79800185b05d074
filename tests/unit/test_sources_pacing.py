"""Pacing against a fake clock: frames come due on a fixed schedule, never drift, and a reader
that falls behind gets the newest frame (the overwritten ones are counted as skipped)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.clock import MONOTONIC
from edge.sources import SourceOptions, open_source
from edge.sources.base import new_seq
from edge.sources.files import ImageFolderSource
from edge.sources.pacing import Pacer, wait_until
from edge.testing import FakeClock

MS = 1_000_000


def _folder(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        ok, data = cv2.imencode(".png", np.full((4, 4, 3), i, np.uint8))
        assert ok
        path = tmp_path / f"f{i:03d}.png"
        path.write_bytes(data.tobytes())
        paths.append(path)
    return paths


def _source(tmp_path: Path, clock: FakeClock, n: int = 5, **kw: object) -> ImageFolderSource:
    opts = SourceOptions(**kw)  # type: ignore[arg-type]
    return ImageFolderSource(_folder(tmp_path, n), "folder", opts, clock, new_seq(), loop=True)


def test_a_frame_is_not_delivered_before_it_is_due(tmp_path: Path) -> None:
    clock = FakeClock()
    src = _source(tmp_path, clock, fps=20.0)  # period 50 ms
    first = src.read(0)
    assert first is not None and first.t_capture_ns == clock.now_ns()
    clock.advance(49 * MS)
    assert src.read(0) is None  # due in 1 ms; the frame waits, decoded
    clock.advance(1 * MS)
    second = src.read(0)
    assert second is not None
    assert second.t_capture_ns - first.t_capture_ns == 50 * MS
    assert (first.seq, second.seq) == (0, 1)


def test_no_drift_over_many_frames_with_a_jittery_reader(tmp_path: Path) -> None:
    clock = FakeClock()
    src = _source(tmp_path, clock, fps=30.0)
    period = round(1e9 / 30.0)
    rng = random.Random(7)
    stamps = []
    for _ in range(5000):
        frame = src.read(0)
        if frame is None:  # not due yet: move to the due time, plus a late wake-up
            clock.advance(period // 4)
            continue
        stamps.append(frame.t_capture_ns)
        clock.advance(period - period // 8 + rng.randrange(period // 8))
    t0 = stamps[0]
    assert len(stamps) > 1000
    assert all(t == t0 + k * period for k, t in enumerate(stamps))  # exactly on schedule
    assert src.skipped == 0


def test_a_reader_behind_gets_the_newest_frame_and_skips_the_rest(tmp_path: Path) -> None:
    clock = FakeClock()
    src = _source(tmp_path, clock, n=10, fps=10.0)  # period 100 ms
    first = src.read(0)
    assert first is not None and first.image is not None
    clock.advance(350 * MS)  # frames due at +100, +200, +300 have all "happened"
    late = src.read(0)
    assert late is not None and late.image is not None
    assert late.t_capture_ns == first.t_capture_ns + 300 * MS  # the newest one's capture time
    assert int(late.image[0, 0, 0]) == 3  # image 1 and 2 were overwritten, as in a camera
    assert src.skipped == 2
    assert late.seq == first.seq + 1  # seq counts delivered frames
    assert src.read(0) is None  # the next is due at +400
    clock.advance(50 * MS)
    nxt = src.read(0)
    assert nxt is not None and nxt.t_capture_ns == first.t_capture_ns + 400 * MS


def test_unpaced_frames_are_stamped_when_read(tmp_path: Path) -> None:
    clock = FakeClock()
    src = _source(tmp_path, clock, n=3, pace=False)
    stamps = []
    for i in range(6):
        clock.advance(i * MS)
        frame = src.read(0)
        assert frame is not None
        stamps.append(frame.t_capture_ns)
    assert stamps == sorted(stamps) and len(set(stamps)) == 6
    assert stamps[-1] == clock.now_ns()


def test_pacer_counts_whole_periods_behind() -> None:
    clock = FakeClock()
    pacer = Pacer(25.0, clock)  # 40 ms
    start = pacer.next_ns
    assert pacer.behind() == 0
    clock.advance(119 * MS)
    assert pacer.behind() == 2
    pacer.skip(2)
    assert pacer.next_ns == start + 80 * MS and pacer.skipped == 2
    with pytest.raises(ValueError):
        Pacer(0.0, clock)


def test_wait_until_is_woken_by_stop_at_once() -> None:
    stop = threading.Event()
    result: list[bool] = []
    far = MONOTONIC.now_ns() + 60_000 * MS
    waiter = threading.Thread(target=lambda: result.append(wait_until(MONOTONIC, far, 60.0, stop)))
    waiter.start()
    stop.set()
    waiter.join(timeout=5.0)
    assert not waiter.is_alive() and result == [False]


def test_wait_until_real_clock_reaches_a_near_time() -> None:
    stop = threading.Event()
    target = MONOTONIC.now_ns() + 20 * MS
    assert wait_until(MONOTONIC, target, 5.0, stop)
    assert MONOTONIC.now_ns() >= target
    assert not wait_until(MONOTONIC, MONOTONIC.now_ns() + 60_000 * MS, 0.01, stop)


def test_open_source_paces_a_folder_with_the_given_clock(tmp_path: Path) -> None:
    _folder(tmp_path, 3)
    clock = FakeClock()
    src = open_source(str(tmp_path), SourceOptions(fps=4.0, loop=True), clock)
    try:
        stamps = []
        for _ in range(8):
            frame = src.read(0)
            assert frame is not None
            stamps.append(frame.t_capture_ns)
            clock.advance(250 * MS)
        assert [t - stamps[0] for t in stamps] == [k * 250 * MS for k in range(8)]
        assert src.stats().frames == 8
    finally:
        src.close()
