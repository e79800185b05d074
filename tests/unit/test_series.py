"""The page's per-second series: the rings' new samples, the bounded ring of buckets, and the
recorder's percentiles, misses and mode per second (on a fake clock)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.serve.series import TICK_OFFSET_NS, Bucket, SeriesRecorder, SeriesRing, p50_p99_ms
from edge.stats import Counters, LatencyStats
from edge.testing import FakeClock

S = 1_000_000_000
MS = 1_000_000


def test_since_gives_the_new_samples_in_order_across_the_wrap() -> None:
    stats = LatencyStats(window=8)
    for ns in range(1, 7):
        stats.add("infer", ns)
    cur = stats.cursor()
    assert cur == {"infer": 6}
    for ns in range(7, 12):  # wraps the 8-slot ring
        stats.add("infer", ns)
    cur, new = stats.since(cur)
    assert cur == {"infer": 11}
    assert new["infer"].tolist() == [7, 8, 9, 10, 11]
    assert stats.since(cur)[1] == {}  # nothing new: nothing returned


def test_since_caps_at_the_window_and_takes_stages_first_seen_later() -> None:
    stats = LatencyStats(window=4)
    stats.add("infer", 1)
    cur = stats.cursor()
    for ns in range(2, 12):  # 10 new samples into a ring of 4: the newest 4 survive
        stats.add("infer", ns)
    stats.add("decode", 5)  # a stage the cursor has never seen
    _, new = stats.since(cur)
    assert new["infer"].tolist() == [8, 9, 10, 11]
    assert new["decode"].tolist() == [5]


def test_snapshot_counts_are_ints_in_json() -> None:
    stats = LatencyStats(window=4)
    for _ in range(731):
        stats.add("total", 2 * MS)
    text = json.dumps(stats.snapshot())
    assert '"count": 731' in text and "731.0" not in text
    assert type(json.loads(text)["total"]["count"]) is int


def test_p50_p99_match_numpy_for_every_size() -> None:
    rng = np.random.default_rng(11)
    for n in (*range(1, 40), 100, 1000):
        samples = rng.integers(100_000, 90_000_000, n).astype(np.int64)
        if n == 7:
            samples[:] = 5_000_000  # all equal
        expected = np.percentile(samples, [50, 99]) / 1e6
        assert p50_p99_ms(samples) == pytest.approx(tuple(expected), abs=1e-3), n


def bucket(t: int) -> Bucket:
    return Bucket(t, 0, None, None, {}, {}, 1)


def test_the_ring_is_bounded_and_answers_what_came_after() -> None:
    ring = SeriesRing(seconds=5)
    for t in range(100, 112):
        ring.append(bucket(t))
    assert len(ring) == 5
    assert [b.t_s for b in ring.after(None)] == [107, 108, 109, 110, 111]
    assert [b.t_s for b in ring.after(109)] == [110, 111]
    assert ring.after(111) == []
    assert [b.t_s for b in ring.after(3)] == [107, 108, 109, 110, 111]
    with pytest.raises(ValueError, match="not after"):
        ring.append(bucket(111))
    with pytest.raises(ValueError, match="at least 1"):
        SeriesRing(0)


class Run:
    """A recorder over a fake run: frames' stage times and misses go in as the worker and
    the watchdog would put them."""

    def __init__(self, seconds: int = 600) -> None:
        self.clock = FakeClock(start_ns=1000 * S)
        self.latency, self.counters = LatencyStats(window=4096), Counters()
        self.every = 1
        self.rec = SeriesRecorder(
            self.latency, self.counters, budget_ns=33 * MS, every=lambda: self.every,
            clock=self.clock, seconds=seconds,
        )  # fmt: skip

    def frames(self, totals_ns: np.ndarray) -> None:
        for ns in totals_ns:
            self.latency.add_all({"wait": 1 * MS, "infer": int(ns) - 2 * MS, "publish": MS})
            self.latency.add("total", int(ns))

    def tick_at(self, second: int) -> Bucket | None:
        self.clock.set(second * S + TICK_OFFSET_NS + 3 * MS)
        return self.rec.tick()


def test_each_second_gets_its_own_percentiles_matching_numpy() -> None:
    run = Run()
    rng = np.random.default_rng(3)
    run.frames(rng.integers(5 * MS, 30 * MS, 50))  # before recording: not in any bucket
    run.rec.start()
    seconds = [rng.integers(5 * MS, 60 * MS, n) for n in (30, 29, 1, 31)]
    for i, totals in enumerate(seconds):
        run.frames(totals)
        b = run.tick_at(1001 + i)
        assert b is not None and b.t_s == 1000 + i and b.frames == len(totals)
        p50, p99 = np.percentile(totals, [50, 99]) / 1e6
        assert b.p50_ms == pytest.approx(p50, abs=1e-3)
        assert b.p99_ms == pytest.approx(p99, abs=1e-3)
        infer = totals - 2 * MS
        assert b.stages["infer"] == pytest.approx(np.percentile(infer, [50, 99]) / 1e6, abs=1e-3)
        assert set(b.stages) == {"wait", "infer", "publish"}
    assert run.rec.ticks == 4


def test_misses_by_cause_and_the_mode_per_second() -> None:
    run = Run()
    run.rec.start()
    run.counters.miss("infer", 2)  # before the first tick: in the first second
    run.frames(np.full(10, 20 * MS))
    first = run.tick_at(1001)
    run.counters.miss("queue")
    run.counters.miss("infer")
    run.every = 2  # the policy degraded
    second = run.tick_at(1002)
    quiet = run.tick_at(1003)  # no frame, no miss: a bucket with nothing in it
    assert first is not None and second is not None and quiet is not None
    assert first.misses == {"infer": 2} and first.every == 1
    assert second.misses == {"queue": 1, "infer": 1} and second.every == 2
    assert second.frames == 0 and second.p99_ms is None
    assert quiet.misses == {} and quiet.every == 2


def test_no_tick_before_start_an_early_tick_waits_and_a_late_one_leaves_a_gap() -> None:
    run = Run()
    run.frames(np.full(5, 10 * MS))
    assert run.tick_at(1001) is None and run.rec.ticks == 0  # nobody asked: no work at all
    run.rec.start()
    run.frames(np.full(5, 10 * MS))
    assert run.tick_at(1001) is not None
    run.frames(np.full(3, 12 * MS))
    assert run.tick_at(1001) is None  # same second again (a timer that fired early)
    late = run.tick_at(1004)  # seconds 1001 and 1002 had no tick
    assert late is not None and late.t_s == 1003 and late.frames == 3
    assert [b.t_s for b in run.rec.ring.after(None)] == [1000, 1003]
    run.rec.stop()
    assert run.tick_at(1005) is None


def test_json_columns_with_and_without_stages() -> None:
    run = Run(seconds=3)
    run.rec.start()
    for second in range(1001, 1006):
        run.frames(np.full(4, second * 10_000))  # distinct per second
        run.tick_at(second)
    body = run.rec.as_json(None, stages=False)
    assert body["t"] == [1002, 1003, 1004]  # bounded at 3 seconds
    assert body["frames"] == [4, 4, 4] and body["misses"] == [0, 0, 0]
    assert body["budget_ms"] == 33.0 and body["kept_s"] == 3 and body["recording"] is True
    assert body["p99_ms"] == [10.03, 10.04, 10.05] and "stages" not in body
    later = run.rec.as_json(1003, stages=True)
    assert later["t"] == [1004]
    assert list(later["stages"]) == ["wait", "infer", "publish"]  # pipeline order
    assert later["stages"]["infer"]["p99_ms"] == [pytest.approx(10.05 - 2.0)]
    json.dumps(later, allow_nan=False)  # what the endpoint sends
