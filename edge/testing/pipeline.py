"""Fakes for pipeline tests: a clock that wakes listeners, a detector whose stages take fake
time (or hang until released), a source fed by the test, and a record sink that can be
waited on.

The fake detector follows :class:`edge.detector.Detector`'s stage methods exactly
(``decode(frame) -> (image, reduction)``, ``preprocess(image) -> transform``, ``infer()``,
``postprocess(transform, reduction) -> Detections``), and the fake source the
:class:`edge.sources.base.Source` protocol (``read(timeout_s)``, ``EndOfStream``, ``close``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edge.errors import ImageError
from edge.frame import Detections, Frame, Image
from edge.sources.base import EndOfStream
from edge.testing.clock import FakeClock
from edge.watchdog.record import MissRecord, RunRecord

MS = 1_000_000
#: the real-time bound on every wait in these tests: a failure, never a pacing device
TIMEOUT_S = 5.0


class TickClock(FakeClock):
    """A :class:`FakeClock` that calls listeners after it moves (the watchdog's ``poke``), so a
    thread waiting for a fake deadline re-checks at once instead of at its real timeout."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        super().__init__(start_ns)
        self.listeners: list[Callable[[], None]] = []

    def advance(self, ns: int) -> None:
        super().advance(ns)
        for listener in list(self.listeners):
            listener()

    def set(self, ns: int) -> None:
        super().set(ns)
        for listener in list(self.listeners):
            listener()


def image(w: int = 64, h: int = 48) -> Image:
    return np.zeros((h, w, 3), np.uint8)


def frame(seq: int, t_capture_ns: int, source: str = "fake") -> Frame:
    return Frame(seq=seq, t_capture_ns=t_capture_ns, image=image(), source=source)


class FakeDetector:
    """Each stage advances the fake clock by its duration in ``durations`` (ns).

    ``durations_for(seq)`` may override per frame. ``hang(stage)`` makes the next call of that
    stage signal ``entered`` and block until ``release()`` (a real-time bound of TIMEOUT_S
    keeps a broken test from hanging). ``corrupt`` seqs raise :class:`ImageError` in decode.
    """

    name = "fake"
    input_w = 32
    input_h = 32

    def __init__(self, clock: FakeClock, durations: Mapping[str, int] | None = None) -> None:
        self.clock = clock
        self.durations = dict(durations or {})
        self.durations_for: Callable[[int], Mapping[str, int]] | None = None
        self.corrupt: set[int] = set()
        self.calls: list[tuple[str, int]] = []
        self.entered = threading.Event()
        self._hang_stage: str | None = None
        self._release = threading.Event()
        self._seq = -1

    def hang(self, stage: str) -> None:
        self._hang_stage, self._release = stage, threading.Event()
        self.entered.clear()

    def release(self) -> None:
        self._release.set()

    def _stage(self, stage: str) -> None:
        self.calls.append((stage, self._seq))
        if self._hang_stage == stage:
            self._hang_stage = None
            self.entered.set()
            if not self._release.wait(TIMEOUT_S):
                raise TimeoutError(f"fake {stage} was never released")
        per_frame = self.durations_for(self._seq) if self.durations_for else {}
        ns = per_frame.get(stage, self.durations.get(stage, 0))
        if ns:
            self.clock.advance(ns)

    def decode(self, frame: Frame) -> tuple[Image, int]:
        self._seq = frame.seq
        self._stage("decode")
        if frame.seq in self.corrupt:
            raise ImageError(f"frame {frame.seq}: not a JPEG")
        assert frame.image is not None
        return frame.image, 1

    def preprocess(self, image: Image) -> tuple[int, int]:
        self._stage("preprocess")
        return image.shape[1], image.shape[0]

    def infer(self) -> None:
        self._stage("infer")

    def postprocess(self, t: Any, reduction: int = 1) -> Detections:
        self._stage("postprocess")
        w, h = t
        box = np.array([[0.0, 0.0, w / 2, h / 2]], np.float32)
        seq = np.array([float(self._seq) / 1000.0], np.float32)  # score encodes the frame
        return Detections(box, seq, np.zeros(1, np.int32), labels=("thing",))

    def bare_invoke_ns(self) -> int:
        self._stage("infer")
        return self.durations.get("infer", 0)

    def inferred(self) -> list[int]:
        return [seq for stage, seq in self.calls if stage == "infer"]


class FakeSource:
    """A source the test feeds: ``push(frame)``, ``end()``; ``read`` blocks on a queue."""

    def __init__(self, name: str = "fake", fps: float | None = 30.0) -> None:
        self.name, self.fps = name, fps
        self._q: queue.Queue[Frame | None] = queue.Queue()
        self.closed = False
        self.reads = 0

    def push(self, *frames: Frame) -> None:
        for f in frames:
            self._q.put(f)

    def end(self) -> None:
        self._q.put(None)

    def read(self, timeout_s: float) -> Frame | None:
        self.reads += 1
        try:
            item = self._q.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if item is None:
            self._q.put(None)  # stays ended
            raise EndOfStream(self.name)
        return item

    def close(self) -> None:
        self.closed = True


class ListSink:
    """Records in memory, with a Condition to wait for them (the miss log's interface)."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self._cond = threading.Condition()
        self.lost = 0

    def write(self, record: Any) -> bool:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()
        return True

    def flush(self, timeout_s: float = 1.0) -> bool:
        return True

    @property
    def misses(self) -> list[MissRecord]:
        with self._cond:
            return [r for r in self.records if isinstance(r, MissRecord)]

    @property
    def runs(self) -> list[RunRecord]:
        with self._cond:
            return [r for r in self.records if isinstance(r, RunRecord)]

    def wait_misses(self, n: int, timeout_s: float = TIMEOUT_S) -> list[MissRecord]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(isinstance(r, MissRecord) for r in self.records) >= n, timeout_s
            )
        if not ok:
            raise AssertionError(f"expected {n} miss records, got {self.misses}")
        return self.misses
