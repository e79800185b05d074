"""GC discipline with the real collector: freeze at start, gen-2 only in the slack."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from edge.pipeline.gcslack import GcDiscipline
from edge.testing import FakeClock

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 14), reason="3.14's incremental collector ignores threshold2"
)


def gen2_runs() -> int:
    return int(gc.get_stats()[2]["collections"])


def make_due(gcd: GcDiscipline) -> None:
    # each gen-1 collection adds one to generation 2's count, as the automatic collector does
    while not gcd.due():
        gc.collect(1)


@pytest.fixture
def gcd() -> Iterator[GcDiscipline]:
    before = gc.get_threshold()
    g = GcDiscipline(FakeClock(), force_after=3)
    g.start()
    yield g
    g.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_start_freezes_and_takes_gen2_out_of_the_automatic_collector(gcd: GcDiscipline) -> None:
    assert gcd.active
    assert gc.get_freeze_count() > 1000  # the interpreter, numpy, the test session
    t0, t1, t2 = gc.get_threshold()
    assert t2 >= 1 << 30
    runs = gen2_runs()
    for _ in range(30):
        gc.collect(1)  # far past the usual threshold2 = 10
        _ = [[] for _ in range(1000)]  # allocations drive automatic gen-0/1 collections
    assert gen2_runs() == runs


def test_collects_gen2_when_due_and_the_slack_fits(gcd: GcDiscipline) -> None:
    now = gcd.clock.now_ns()
    runs = gen2_runs()
    assert not gcd.after_frame(now + 10**9)  # not due yet: nothing to do
    make_due(gcd)
    assert gcd.after_frame(now + 10**9)
    assert gen2_runs() == runs + 1 and gcd.stats.collections == 1
    assert not gcd.due()


def test_no_collection_without_slack_until_overdue(gcd: GcDiscipline) -> None:
    gcd._estimate_ns = 5_000_000  # a 5 ms collection does not fit in 1 ms of slack
    now = gcd.clock.now_ns()
    make_due(gcd)
    runs = gen2_runs()
    assert not gcd.after_frame(now + 1_000_000)
    assert not gcd.after_frame(None)  # a frame is already waiting
    assert gen2_runs() == runs
    while gc.get_count()[2] < gcd._due * gcd.force_after:
        gc.collect(1)
    assert gcd.after_frame(None)  # overdue: collected anyway, and counted as forced
    assert gcd.stats.forced == 1 and gen2_runs() == runs + 1


def test_disabled_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    g = GcDiscipline(FakeClock(), enabled=False)
    g.start()
    assert not g.active and gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert not g.after_frame(None)
