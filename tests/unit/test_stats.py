from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

from edge.frame import STAGES
from edge.stats import Counters, LatencyStats, summary_table


def test_percentiles_match_numpy_in_ms() -> None:
    rng = np.random.default_rng(7)
    samples = rng.integers(1_000_000, 40_000_000, size=500)
    stats = LatencyStats(window=1000)
    for ns in samples:
        stats.add("infer", int(ns))
    got = stats.percentiles("infer", qs=(50, 95, 99, 99.9))
    expected = np.percentile(samples, [50, 95, 99, 99.9]) / 1e6
    assert list(got) == ["p50", "p95", "p99", "p99.9"]
    assert np.allclose(list(got.values()), expected, atol=1e-3)


def test_window_keeps_recent_samples_but_max_and_count_cover_the_run() -> None:
    stats = LatencyStats(window=100)
    stats.add("infer", 500_000_000)  # one 500 ms stall, long gone from the window
    for i in range(1, 301):
        stats.add("infer", i * 1_000_000)
    p = stats.percentiles("infer", qs=(0, 100))
    assert p == {"p0": 201.0, "p100": 300.0}  # only the last 100 samples: 201..300 ms
    snap = stats.snapshot()["infer"]
    assert snap["max"] == 500.0
    assert snap["count"] == 301


def test_unknown_stage_and_bad_window() -> None:
    assert LatencyStats().percentiles("infer") == {}
    assert LatencyStats().snapshot() == {}
    with pytest.raises(ValueError, match="window"):
        LatencyStats(window=0)


def test_snapshot_orders_pipeline_stages_first() -> None:
    stats = LatencyStats(window=8)
    for stage in ("total", "publish", "decode", "wait"):
        stats.add(stage, 2_000_000)
    snap = stats.snapshot()
    assert list(snap) == ["wait", "decode", "publish", "total"]
    assert set(snap["decode"]) == {"p50", "p95", "p99", "max", "count"}
    assert snap["decode"]["p99"] == 2.0
    assert [s for s in STAGES if s in snap] == ["wait", "decode", "publish"]


def test_add_does_not_allocate_once_the_stage_exists() -> None:
    stats = LatencyStats(window=256)
    stats.add("infer", 1)
    buf = stats._rings["infer"].buf
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(20_000):
            stats.add("infer", i)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats._rings["infer"].buf is buf
    assert after - before < 1024  # nothing retained per call
    assert stats.count("infer") == 20_001


def test_one_writer_many_readers() -> None:
    stats = LatencyStats(window=64)
    done = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        while not done.is_set():
            try:
                snap = stats.snapshot()
                if "infer" in snap:
                    assert 0.0 <= snap["infer"]["p50"] <= snap["infer"]["max"]
            except BaseException as e:  # noqa: BLE001 - surfaced below
                errors.append(e)
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(30_000):
            stats.add("infer", (i % 97) * 100_000)
    finally:
        done.set()
        for t in threads:
            t.join(5)
    assert errors == []
    assert stats.count("infer") == 30_000


def test_counters_are_thread_safe_and_track_causes() -> None:
    c = Counters()

    def bump() -> None:
        for _ in range(5_000):
            c.inc("captured")
            c.miss("infer")
        c.inc("decode_errors", 2)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    c.miss("queue", 3)
    d = c.as_dict()
    assert d["captured"] == c.captured == 20_000
    assert d["missed"] == c.missed == 20_003
    assert d["missed_by_cause"] == c.missed_by_cause == {"infer": 20_000, "queue": 3}
    assert d["decode_errors"] == 8
    assert d["processed"] == 0 and d["dropped"] == 0 and d["skipped_stale"] == 0
    with pytest.raises(ValueError, match="miss"):
        c.inc("missed_by_cause")


def test_summary_table_lists_counters_and_stages() -> None:
    stats = LatencyStats()
    for ms in (10, 20, 30):
        stats.add("infer", ms * 1_000_000)
        stats.add("wait", 1_000_000)
    c = Counters()
    c.inc("captured", 100)
    c.inc("processed", 90)
    c.miss("infer", 4)
    text = summary_table(stats.snapshot(), c.as_dict())
    lines = text.splitlines()
    assert lines[0].startswith("frames: captured 100, processed 90, dropped 0")
    assert "missed 4" in lines[0]
    assert lines[1] == "misses by cause: infer 4"
    assert lines[2].split() == [
        "stage",
        "p50",
        "ms",
        "p95",
        "ms",
        "p99",
        "ms",
        "max",
        "ms",
        "count",
    ]
    infer = next(line for line in lines if line.startswith("infer"))
    assert infer.split() == ["infer", "20.00", "29.00", "29.80", "30.00", "3"]
    assert summary_table({}) == "no stage timings recorded"
