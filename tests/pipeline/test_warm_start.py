"""A warm start and a direct handoff: the whole per-frame path is warmed on the source's own
first frame before the clock starts, and a source that keeps only its newest frame is read by
the worker itself (no capture thread).

Frame 0 not missing its deadline is shown by what the run did, not by a wall clock: the
preprocessor plans (and allocates) for a frame size once, in ``Preprocessor._plan``; every
plan must have happened, at the source's own frame size, before the worker took frame 0, and
none after. Without the warm-up frame 0 makes that plan (~10 ms with the maps).
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import pytest

from edge.config import Config, ModelConfig, SourceConfig
from edge.launch import run
from edge.pipeline.capture import Capture
from edge.pipeline.handoff import END, LatestSlot, reads_newest_only
from edge.pipeline.settings import DegradeConfig, PipelineConfig
from edge.pipeline.worker import Worker
from edge.preprocess import Preprocessor
from edge.sources.base import SourceOptions
from edge.sources.registry import open_source
from edge.stats import Counters
from edge.testing.pipeline import TIMEOUT_S, FakeSource, frame
from edge.watchdog.settings import WatchdogConfig

pytestmark = pytest.mark.usefixtures("models_ready")


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = []
    plan, handle = Preprocessor._plan, Worker.handle
    threads: set[str] = set()

    def spy_plan(self: Preprocessor, w: int, h: int):  # type: ignore[no-untyped-def]
        events.append(("plan", (w, h)))
        return plan(self, w, h)

    def spy_handle(self: Worker, f):  # type: ignore[no-untyped-def]
        events.append(("frame", f.seq))
        threads.add(threading.current_thread().name)
        return handle(self, f)

    monkeypatch.setattr(Preprocessor, "_plan", spy_plan)
    monkeypatch.setattr(Worker, "handle", spy_handle)
    events.append(("threads", threads))
    return events


def _config(model: str, log: Path, frames: int) -> Config:
    return Config(
        model=ModelConfig(name=model),
        source=SourceConfig(fps=200.0),
        pipeline=PipelineConfig(frames=frames, policy="process-all", opencv_threads=1),
        degrade=DegradeConfig(policy="off"),
        watchdog=WatchdogConfig(miss_log=str(log)),
    )


def _check_warm(events: list[tuple[str, object]], size: tuple[int, int]) -> None:
    first = next(i for i, (kind, _) in enumerate(events) if kind == "frame")
    plans = [v for kind, v in events if kind == "plan"]
    assert plans, "the preprocessor never planned: the spy is not on the real path"
    assert [v for kind, v in events[:first] if kind == "plan"] == [size]  # at the source's size
    assert not [v for kind, v in events[first:] if kind == "plan"], "a frame paid for a plan"
    assert events[first] == ("frame", 0)  # the warm-up lent frame 0, it did not consume it


def test_a_video_run_warms_at_the_frames_size_before_frame_0(
    samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _spy(monkeypatch)
    summary = run(_config("face", tmp_path / "m.jsonl", 6), str(samples_dir / "Megamind.avi"),
                  environ={})  # fmt: skip
    assert summary.processed == 6
    _check_warm(events, (720, 528))
    assert events[0][1] == {"worker"}  # read by the worker itself: no capture thread


def test_a_jpeg_run_warms_the_reduced_decode_before_frame_0(
    samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "jpegs"
    folder.mkdir()
    cap = cv2.VideoCapture(str(samples_dir / "Megamind.avi"))
    for i in range(4):
        ok, img = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), img)
    cap.release()
    events = _spy(monkeypatch)
    summary = run(_config("face", tmp_path / "m.jsonl", 4), str(folder), environ={})
    # paced at 200 fps, a loaded machine may pass over a file (as a camera drops a frame): every
    # frame read is processed, and every file is either read or counted as dropped
    assert summary.processed == summary.captured >= 1
    assert summary.processed + summary.dropped == 4
    _check_warm(events, (180, 132))  # 720x528 JPEG bytes, DCT-reduced by 4 for a 128 model


def test_frames_a_directly_read_source_passes_over_are_counted_as_dropped(
    samples_dir: Path, tmp_path: Path
) -> None:
    # 1000 fps: the worker cannot keep up, so the paced source skips frames (a camera with
    # one buffer would overwrite them); with no handoff they are the run's dropped frames
    cfg = _config("face", tmp_path / "m.jsonl", 30)
    cfg = Config(model=cfg.model, source=SourceConfig(fps=1000.0), pipeline=cfg.pipeline,
                 degrade=cfg.degrade, watchdog=cfg.watchdog)  # fmt: skip
    summary = run(cfg, str(samples_dir / "Megamind.avi"), environ={})
    assert summary.captured == summary.processed == 30
    assert summary.dropped > 0
    assert summary.dropped == summary.source_stats["skipped"]


def test_only_a_source_that_keeps_its_newest_frame_is_read_directly(samples_dir: Path) -> None:
    clip = str(samples_dir / "Megamind.avi")
    paced = open_source(clip, SourceOptions(fps=30.0))
    unpaced = open_source(clip, SourceOptions(pace=False))
    try:
        assert reads_newest_only(paced) and not reads_newest_only(unpaced)
        assert not reads_newest_only(FakeSource(fps=30.0))
        first = paced.peek()
        assert first is not None and first.image is not None and first.seq == -1
        again = paced.read(TIMEOUT_S)  # peek lent the frame: read still delivers it, as seq 0
        assert again is not None and again.seq == 0 and again.image is first.image
    finally:
        paced.close()
        unpaced.close()


def test_pull_reads_with_the_capture_threads_bookkeeping() -> None:
    src = FakeSource(fps=30.0)
    src.push(frame(0, 0), frame(1, 0), frame(2, 0))
    counters, stop = Counters(), threading.Event()
    cap = Capture(src, LatestSlot(), counters, stop, max_frames=2)
    got = [cap.pull(TIMEOUT_S), cap.pull(TIMEOUT_S), cap.pull(TIMEOUT_S)]
    assert [getattr(g, "seq", g) for g in got] == [0, 1, END]  # max_frames ends it
    assert cap.captured == 2 and counters.get("captured") == 2

    src = FakeSource(fps=30.0)
    src.push(frame(0, 0))
    src.end()
    cap = Capture(src, LatestSlot(), Counters(), threading.Event())
    assert getattr(cap.pull(TIMEOUT_S), "seq", None) == 0
    assert cap.pull(TIMEOUT_S) is END and cap.ended and cap.error is None

    class Broken(FakeSource):
        def read(self, timeout_s: float):  # type: ignore[no-untyped-def]
            raise OSError("camera on fire")

    cap = Capture(Broken(fps=30.0), LatestSlot(), Counters(), threading.Event())
    assert cap.pull(TIMEOUT_S) is END and isinstance(cap.error, OSError)
    stop = threading.Event()
    stop.set()
    assert Capture(FakeSource(fps=30.0), LatestSlot(), Counters(), stop).pull(0.0) is END
