"""Bad input logs one line per kind of error per second, with the count held back; the
counters count every one. The fake clock decides what "a second" is."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from edge.errors import ImageError
from edge.frame import Frame, Image
from edge.pipeline.capture import Capture
from edge.pipeline.handoff import LatestSlot
from edge.ratelog import OTHER_KIND, RateLimitedLog, error_kind
from edge.sources.base import CorruptFrame
from edge.stats import Counters
from edge.testing import FakeClock
from edge.testing.pipeline import MS, FakeSource
from tests.pipeline.rig import Rig

S = 1_000_000_000
LOG = logging.getLogger("tests.ratelog")


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


@pytest.fixture
def limit() -> tuple[RateLimitedLog, FakeClock]:
    LOG.setLevel(logging.WARNING)
    clock = FakeClock()
    return RateLimitedLog(LOG, clock), clock


def test_a_burst_is_one_line_then_a_line_a_second_with_the_count_held_back(
    limit: tuple[RateLimitedLog, FakeClock],
) -> None:
    rl, clock = limit
    got = []
    for _ in range(30):  # 30 in 0.3 s
        got.append(rl.due("jpeg"))
        clock.advance(10 * MS)
    assert got[0] == "" and got[1:] == [None] * 29
    assert rl.held("jpeg") == 29
    clock.advance(700 * MS - 1)  # 0.999999999 s after the line: still quiet
    assert rl.due("jpeg") is None
    clock.advance(1)
    assert rl.due("jpeg") == " (30 more in the last 1.0 s)"
    assert rl.held("jpeg") == 0
    clock.advance(5 * S)  # a slow trickle: the next one is logged at once, nothing held
    assert rl.due("jpeg") == ""
    clock.advance(100 * MS)
    assert rl.due("jpeg", n=4) is None
    clock.advance(2 * S)
    assert rl.due("jpeg") == " (4 more in the last 2.1 s)"


def test_each_kind_has_its_own_line(limit: tuple[RateLimitedLog, FakeClock]) -> None:
    rl, clock = limit
    assert [rl.due(k) for k in ("jpeg", "shape", "jpeg", "shape", "other")] == [
        "",
        "",
        None,
        None,
        "",
    ]
    clock.advance(S)
    assert rl.due("shape") == " (1 more in the last 1.0 s)"
    assert rl.held("jpeg") == 1  # not reported until the next one of its kind


def test_nothing_is_done_while_the_logger_is_off(
    limit: tuple[RateLimitedLog, FakeClock],
) -> None:
    rl, _ = limit
    formatted = []

    class Loud(ImageError):
        def __str__(self) -> str:
            formatted.append(1)
            return "loud"

    LOG.setLevel(logging.ERROR)
    assert rl.due(Loud()) is None and rl.due("jpeg") is None
    assert formatted == [] and rl.held("jpeg") == 0
    LOG.setLevel(logging.WARNING)
    assert rl.due(Loud()) == "" and formatted == [1]


def test_kinds_beyond_the_table_share_one_bucket() -> None:
    LOG.setLevel(logging.WARNING)
    rl = RateLimitedLog(LOG, FakeClock(), max_kinds=3)
    kinds = [f"/media/{name}.jpg: unreadable" for name in "abcdef"]
    assert [rl.due(k) for k in kinds] == ["", "", "", "", None, None]
    assert rl.held(OTHER_KIND) == 2


def test_a_kind_is_the_class_and_its_reason_without_the_variable_parts() -> None:
    jpeg = [ImageError(f"corrupt or truncated JPEG frame ({n} bytes)") for n in (0, 17, 4096)]
    layout = ImageError("unsupported image layout (480, 640, 5): expected gray, BGR or BGRA")
    empty = ImageError("empty image (0, 0, 3): nothing to detect on")
    assert len({error_kind(e) for e in jpeg}) == 1
    assert error_kind(jpeg[0]) == "ImageError: corrupt or truncated JPEG frame _"
    assert len({error_kind(e) for e in (jpeg[0], layout, empty)}) == 3
    assert error_kind(ImageError("frame 12: not a JPEG")) == error_kind(
        ImageError("frame 7: not a JPEG")
    )
    assert error_kind(CorruptFrame("x.jpg: no EOI (3 bytes)", kind="jpeg")) == "CorruptFrame: jpeg"
    assert error_kind(ValueError("frame 1")) != error_kind(ImageError("frame 1"))


# -- the worker ------------------------------------------------------------------------------


def _bad_decoder(rig_det: object, kinds: dict[int, str]) -> None:
    """Frames in ``kinds`` fail to decode with that message (its digits vary by frame)."""
    real = rig_det.decode  # type: ignore[attr-defined]

    def decode(frame: Frame) -> tuple[Image, int]:
        if frame.seq in kinds:
            real(Frame(-1, frame.t_capture_ns, image=frame.image))  # advance the clock
            raise ImageError(kinds[frame.seq].format(seq=frame.seq))
        result: tuple[Image, int] = real(frame)
        return result

    rig_det.decode = decode  # type: ignore[attr-defined]


def _worker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edge.pipeline.worker"]


def test_worker_logs_bad_frames_once_per_kind_per_second_and_counts_all(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    jpeg, shape = "corrupt JPEG frame ({seq} bytes)", "wrong shape ({seq}, 5)"
    kinds = dict.fromkeys(range(0, 20), jpeg) | dict.fromkeys(range(10, 15), shape)
    _bad_decoder(rig.det, kinds)
    caplog.set_level(logging.WARNING, logger="edge.pipeline.worker")
    rig.process(25)  # 15 corrupt JPEG, 5 wrong shape, 5 good (10 ms each): 90 ms
    assert rig.counters.get("decode_errors") == 20
    lines = _worker_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("frame 0 cannot be decoded") and "corrupt JPEG frame (0" in lines[0]
    assert lines[1].startswith("frame 10 cannot be decoded") and "wrong shape (10, 5)" in lines[1]
    assert all(" more in the last" not in line for line in lines)

    rig.clock.advance(S)
    caplog.clear()
    rig.process(3)  # frames 25-27: good again
    kinds.update({28: jpeg, 29: jpeg})
    rig.process(2)
    assert rig.counters.get("decode_errors") == 22
    (line,) = _worker_lines(caplog)
    # frames 1-9 and 15-19 were held back (14), and frame 29 comes after this line
    assert line.startswith("frame 28 cannot be decoded, skipped (21 so far)")
    # since frame 0's line: 19 bad frames at 2 ms, 8 good at 10 ms, the 1 s, frame 28's decode
    assert line.endswith(" (14 more in the last 1.1 s)")
    assert rig.counters.processed == 8


def test_worker_formats_nothing_while_warnings_are_off(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.det.corrupt = {0, 1, 2}
    caplog.set_level(logging.ERROR, logger="edge.pipeline.worker")
    rig.process(4)
    assert rig.counters.get("decode_errors") == 3 and _worker_lines(caplog) == []


# -- the capture thread ----------------------------------------------------------------------


class _BadSource(FakeSource):
    """Raises the queued CorruptFrame reports, one a read, advancing the clock 100 ms each."""

    def __init__(self, clock: FakeClock, reports: list[CorruptFrame]) -> None:
        super().__init__()
        self.clock, self.reports = clock, reports

    def read(self, timeout_s: float) -> Frame | None:
        if not self.reports:
            self.end()
            return super().read(timeout_s)
        self.clock.advance(100 * MS)
        raise self.reports.pop(0)


def test_capture_logs_corrupt_frames_once_per_kind_per_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    reports = [CorruptFrame(f"part {i}: truncated", kind="jpeg", count=2) for i in range(15)]
    reports.insert(3, CorruptFrame("packet: undecodable", kind="decode"))
    counters = Counters()
    cap = Capture(
        _BadSource(clock, reports), LatestSlot(), counters, threading.Event(), clock=clock
    )
    with caplog.at_level(logging.WARNING, logger="edge.pipeline.capture"):
        cap.run()
    assert cap.ended and counters.get("corrupt_frames") == 31
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.pipeline.capture"]
    # a read every 0.1 s: jpeg at 0.1 s (part 0), decode at 0.4 s, jpeg again at 1.1 s
    # (part 9) with parts 1-8 held back (8 reports of 2 frames); parts 10-14 stay held
    assert [line.split(": ", 2)[1] for line in lines] == [
        "corrupt frame skipped (2 so far)",
        "corrupt frame skipped (7 so far)",
        "corrupt frame skipped (21 so far)",
    ]
    assert "part 0" in lines[0] and "undecodable" in lines[1] and "part 9" in lines[2]
    assert lines[2].endswith(" (16 more in the last 1.0 s)")
