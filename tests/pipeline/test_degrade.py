"""The degradation policy: steps down after consecutive misses, back up with hysteresis."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import pytest

from edge.errors import ConfigError
from edge.pipeline.degrade import Degrader, p95
from edge.pipeline.settings import DegradeConfig
from tests.pipeline.fakes import MS
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
