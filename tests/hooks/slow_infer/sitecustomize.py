"""Fault injection for tests that need late frames (tests/tools.py: slow_infer): every
Detector.infer() takes EDGE_TEST_INFER_DELAY_MS longer, like a slow model or a busy core, so a
1 ms budget is missed on any machine however fast its model runs."""

import os
import time

import edge.detector

_DELAY_NS = int(float(os.environ.get("EDGE_TEST_INFER_DELAY_MS", "5")) * 1e6)
_real_infer = edge.detector.Detector.infer


def _infer(self: edge.detector.Detector) -> None:
    # busy, as a model is, on the monotonic clock: libfaketime (test_clock.py) makes sleeps fail
    end = time.monotonic_ns() + _DELAY_NS
    while time.monotonic_ns() < end:
        pass
    _real_infer(self)


edge.detector.Detector.infer = _infer  # type: ignore[method-assign]
