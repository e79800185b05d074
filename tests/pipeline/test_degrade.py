"""The degradation policy: steps down after consecutive misses, back up with hysteresis."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import pytest

from edge.errors import ConfigError
from edge.pipeline.degrade import Degrader, p95
from edge.pipeline.settings import DegradeConfig
from edge.testing.pipeline import MS
from tests.pipeline.rig import FAST, Rig

BUDGET = 33 * MS


def test_p95_nearest_rank() -> None:
    assert p95(deque(range(1, 101))) == 95
    assert p95(deque([7])) == 7
    assert p95(deque([1, 2, 3, 4, 100])) == 100


def test_steps_down_after_n_consecutive_misses_and_doubles_up_to_max() -> None:
    d = Degrader(DegradeConfig(after_misses=3, max_every=4), BUDGET)
    late = 40 * MS
    changes = [d.observe(missed=True, inferred=True, latency_ns=late) for _ in range(3)]
    assert changes[:2] == [None, None]
    assert changes[2] is not None and (changes[2].old_every, changes[2].new_every) == (1, 2)
    assert "3 deadline misses in a row" in changes[2].reason
    assert [d.should_infer() for _ in range(6)] == [False, True] * 3
    # shed frames on time do not break the run of misses; inferred ones do
    d.observe(missed=True, inferred=True, latency_ns=late)
    d.observe(missed=False, inferred=False, latency_ns=1 * MS)
    d.observe(missed=True, inferred=True, latency_ns=late)
    down = d.observe(missed=True, inferred=True, latency_ns=late)
    assert down is not None and down.new_every == 4 and down.down
    for _ in range(10):
        assert d.observe(missed=True, inferred=True, latency_ns=late) is None  # at max_every
    assert d.every == 4 and d.changes == 2


def test_steps_up_only_with_headroom_for_a_whole_window() -> None:
    cfg = DegradeConfig(after_misses=1, max_every=8, recover_ratio=0.6, recover_frames=5)
    d = Degrader(cfg, BUDGET)
    d.observe(missed=True, inferred=True, latency_ns=40 * MS)
    assert d.every == 2
    tight = 25 * MS  # on time but above 0.6 x 33 = 19.8 ms: no headroom
    assert all(d.observe(missed=False, inferred=True, latency_ns=tight) is None for _ in range(20))
    for _ in range(4):
        assert d.observe(missed=False, inferred=True, latency_ns=10 * MS) is None
    d.observe(missed=True, inferred=True, latency_ns=40 * MS)  # a miss restarts the window
    assert d.every == 4
    results = [d.observe(missed=False, inferred=True, latency_ns=10 * MS) for _ in range(5)]
    assert results[:4] == [None] * 4
    up = results[4]
    assert up is not None and (up.old_every, up.new_every) == (4, 2) and not up.down
    assert "p95 latency 10.0 ms" in up.reason


def test_isolated_misses_step_down_once_the_rate_window_is_over_the_maximum() -> None:
    # 1 miss in 50 frames (2 %) never makes 3 in a row; over a full window of 100 frames it
    # is more than max_miss_rate (1 %): shed. (recover_frames is out of reach: no step up.)
    cfg = DegradeConfig(
        after_misses=3, max_every=8, recover_frames=10_000, max_miss_rate=0.01, rate_window=100
    )
    d = Degrader(cfg, BUDGET)
    changes = []
    for i in range(400):
        missed = i % 50 == 49
        latency = 40 * MS if missed else 10 * MS
        changes.append(d.observe(missed=missed, inferred=True, latency_ns=latency))
    made = [(i, c) for i, c in enumerate(changes) if c is not None]
    # the window is full at frame 99 (misses at 49 and 99: 2 > 1): down at once; the rate
    # then starts over with the new mode, full again at 199 (misses 149, 199), and so on
    assert [i for i, _ in made] == [99, 199, 299]
    assert [c.new_every for _, c in made] == [2, 4, 8]
    assert "2 of the last 100 frames missed (> 1.0%)" in made[0][1].reason
    assert d.every == 8  # at max_every: misses change nothing more


def test_the_rate_window_counts_every_held_frame_and_forgets_old_misses() -> None:
    cfg = DegradeConfig(after_misses=5, max_miss_rate=0.02, rate_window=50)  # > 1 miss in 50
    d = Degrader(cfg, BUDGET)
    for i in range(500):  # 1 miss in every 50 frames: never 2 inside one window
        assert d.observe(missed=i % 50 == 0, inferred=True, latency_ns=10 * MS) is None
    assert d.every == 1
    assert d.observe(missed=True, inferred=True, latency_ns=40 * MS) is None  # 1 in the last 50
    for _ in range(10):  # shed frames on time count as held frames
        d.observe(missed=False, inferred=False, latency_ns=1 * MS)
    change = d.observe(missed=True, inferred=True, latency_ns=40 * MS)  # 2 in the last 50
    assert change is not None and change.new_every == 2
    assert "2 of the last 50 frames missed" in change.reason


@pytest.mark.parametrize(("rate", "up_after"), [(0.1, 15), (0.0, 5)])
def test_no_step_up_while_the_rate_since_the_change_would_double_past_the_maximum(
    rate: float, up_after: int
) -> None:
    cfg = DegradeConfig(
        after_misses=3, recover_ratio=0.8, recover_frames=5, max_miss_rate=rate, rate_window=20
    )
    d = Degrader(cfg, BUDGET)
    for _ in range(3):
        d.observe(missed=True, inferred=True, latency_ns=40 * MS)
    assert d.every == 2  # the change window starts here
    for _ in range(4):
        assert d.observe(missed=False, inferred=True, latency_ns=10 * MS) is None
    assert d.observe(missed=True, inferred=True, latency_ns=40 * MS) is None  # 1 of 5 frames
    ups = [d.observe(missed=False, inferred=True, latency_ns=10 * MS) for _ in range(30)]
    first = next(i for i, c in enumerate(ups) if c is not None) + 1
    # 5 frames with headroom suffice without a rate (0.0); with one, 1 miss needs
    # 2 x 1 <= 10 % of the frames since the change: 20 frames, the 15th after the miss
    assert first == up_after
    assert ups[first - 1] is not None and ups[first - 1].new_every == 1


def test_a_zero_max_miss_rate_reacts_to_misses_in_a_row_only() -> None:
    d = Degrader(DegradeConfig(after_misses=3, max_miss_rate=0.0, rate_window=10), BUDGET)
    for i in range(500):
        d.observe(missed=i % 2 == 0, inferred=True, latency_ns=10 * MS)  # 50 %, never 2 in a row
    assert d.every == 1


def test_off_never_changes() -> None:
    d = Degrader(DegradeConfig(policy="off", after_misses=1), BUDGET)
    for _ in range(10):
        assert d.observe(missed=True, inferred=True, latency_ns=90 * MS) is None
    assert d.every == 1 and all(d.should_infer() for _ in range(5))


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="degrade.policy"):
        DegradeConfig(policy="sometimes")
    with pytest.raises(ConfigError, match="degrade.recover_ratio"):
        DegradeConfig(recover_ratio=2.0)
    with pytest.raises(ConfigError, match="degrade.max_miss_rate"):
        DegradeConfig(max_miss_rate=1.5)
    with pytest.raises(ConfigError, match="degrade.rate_window"):
        DegradeConfig(rate_window=3)


@pytest.fixture
def rig() -> Iterator[Rig]:
    cfg = DegradeConfig(after_misses=2, max_every=4, recover_ratio=0.6, recover_frames=3)
    r = Rig(degrade=cfg)
    yield r
    r.close()


def test_pipeline_sheds_inference_and_restores_it(rig: Rig) -> None:
    slow = {"infer": 40 * MS}
    phase = {"slow": True}
    rig.det.durations_for = lambda seq: slow if phase["slow"] else {}
    stale_flags: list[bool] = []
    rig.worker.subscribers.append(lambda f, d, stale: stale_flags.append(stale))

    rig.process(2)  # two misses in a row -> every 2nd frame
    assert rig.degrader.every == 2
    rig.process(4)  # frames 2..5: 3 and 5 infer (late), 2 and 4 reuse -> every 4th
    assert rig.degrader.every == 4
    assert rig.det.inferred() == [0, 1, 3, 5]
    assert stale_flags == [False, False, True, False, True, False]

    phase["slow"] = False  # the model is fast again: 10 ms, well under 0.6 x budget
    rig.process(12)  # frames 6..17: infers 9, 13, 17 -> 3 with headroom -> every 2nd
    assert rig.degrader.every == 2
    rig.process(6)  # frames 18..23: infers 19, 21, 23 -> back to every frame
    assert rig.degrader.every == 1
    rig.process(2)
    assert rig.det.inferred()[-2:] == [24, 25]

    misses = rig.sink.wait_misses(4)
    assert [m.frame for m in misses] == [0, 1, 3, 5]
    assert [m.action for m in misses] == [
        "completed-late",
        "degraded:every-2",
        "completed-late",
        "degraded:every-4",
    ]
    assert rig.counters.get("degrade_down") == 2 and rig.counters.get("degrade_up") == 2
    assert rig.counters.get("shed") == stale_flags.count(True)
    assert sum(FAST.values()) == 10 * MS
