"""The page's latency chart in a real headless Chromium, fed by a real run: the pipeline plays
the sample clip through the face model with the watchdog on, the server attached as
``edge run --http`` attaches it, and the page at phone size. The chart draws, updates each
second, marks the misses of an induced slow ``infer`` stage with their cause, shades the
degraded seconds that follow, adds per-stage lines on demand, and fits a phone's width.

The phone-sized screenshot of the chart is kept as ``artifacts/serve_chart.png``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import ModelConfig
from edge.detector import load_detector
from edge.outputs.records import MissLogOutput
from edge.pipeline.runner import Pipeline, Settings
from edge.pipeline.settings import PipelineConfig
from edge.pipeline.summary import RunSummary
from edge.serve import ServeConfig, Server
from edge.sources.base import SourceOptions
from edge.sources.registry import open_source
from edge.watchdog.misslog import MissLog
from tests.integration.serve_rig import TIMEOUT_S
from tests.integration.test_serve_browser import ROOT, Chromium, decode_png

TOKEN = "chart-token-77q"
SLOW_S = 0.08  # the induced stage delay: far past the 41.7 ms budget of a 24 fps clip


class SlowInfer:
    """The real detector, with ``infer`` made late on demand (a stage that stalls)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.slow = inner, threading.Event()
        self.name = inner.name

    def infer(self) -> None:
        self.inner.infer()
        if self.slow.is_set():
            time.sleep(SLOW_S)  # the delay under test, not a synchronisation

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture()
def browser() -> Iterator[Chromium]:
    b = Chromium(timeout_s=30.0)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture()
def run(
    samples_dir: Path, models_ready: None, tmp_path: Path
) -> Iterator[tuple[Server, Pipeline, SlowInfer]]:
    det = SlowInfer(load_detector(ModelConfig(name="face")))
    source = open_source(str(samples_dir / "Megamind.avi"), SourceOptions(loop=True))
    server = Server(ServeConfig(http="127.0.0.1:0", token=TOKEN, stream_fps=5.0))
    result: list[RunSummary] = []
    with MissLog(tmp_path / "misses.jsonl") as log:
        pipeline = Pipeline(source, det, Settings(PipelineConfig()),
                            [MissLogOutput(log)])  # fmt: skip
        pipeline.add_output(server)
        server.start()
        runner = threading.Thread(target=lambda: result.append(pipeline.run()), daemon=True)
        runner.start()
        try:
            yield server, pipeline, det
        finally:
            pipeline.request_stop()
            runner.join(TIMEOUT_S)
            server.stop()
    assert result, "the pipeline did not finish"


def chart(b: Chromium, key: str) -> str:
    return str(b.js(f"document.getElementById('chart').dataset.{key} || ''"))


def show_chart(b: Chromium) -> None:
    """Scroll the chart's section to just under the sticky header."""
    b.js("""window.scrollTo(0, document.querySelector('section.chart').offsetTop
            - document.querySelector('header').offsetHeight)""")


def red_in_top_band(b: Chromium) -> int:
    """Pixels of the miss colour in the top 14 px of the plot area (where marks go; the
    budget line and the series lie lower: the y range is 15 % above the highest)."""
    show_chart(b)
    r = b.js("""(() => { const r = document.querySelector('#chart .u-over')
        .getBoundingClientRect(); return {x: r.x + scrollX, y: r.y + scrollY, width: r.width,
        height: 14}; })()""")  # fmt: skip
    img = decode_png(b.screenshot(r)).astype(int)
    bgr = img[..., 0], img[..., 1], img[..., 2]
    return int(np.count_nonzero((bgr[2] > 190) & (bgr[1] < 110) & (bgr[0] < 110)))


def test_the_chart_draws_updates_marks_misses_and_fits_a_phone(
    run: tuple[Server, Pipeline, SlowInfer], browser: Chromium
) -> None:
    server, pipeline, det = run
    assert server.app.series is not None and server.app.series.ticks == 0  # nobody looked yet
    for domain in ("Runtime", "Log", "Page"):
        browser.page(f"{domain}.enable")
    browser.page("Emulation.setDeviceMetricsOverride", width=390, height=844,
                 deviceScaleFactor=2, mobile=True)  # fmt: skip
    browser.page("Page.navigate", url=f"{server.url}?token={TOKEN}")
    points = "Number(document.getElementById('chart').dataset.points || 0)"
    # draws, then updates: a point a second
    assert browser.wait_js(f"{points} >= 2", 15_000), browser.errors()
    first = browser.js(points)
    assert browser.wait_js(f"{points} > {first}", 15_000), browser.errors()
    assert browser.js("document.querySelector('#chart canvas').width") > 300
    legend = browser.js("[...document.querySelectorAll('#chart .u-legend th')]"
                        ".map(t => t.textContent)")  # fmt: skip
    assert {"p50", "p99", "budget", "misses"} <= set(legend), legend
    before = pipeline.counters.missed_by_cause.get("infer", 0)
    det.slow.set()  # every inferred frame now misses in infer
    has_infer = "(document.getElementById('chart').dataset.missCauses || '').split(',')"
    assert browser.wait_js(f"{has_infer}.includes('infer')", 15_000), browser.errors()
    assert pipeline.counters.missed_by_cause.get("infer", 0) > before
    assert int(chart(browser, "missMarks")) >= 1
    assert red_in_top_band(browser) > 20  # the marks are on the canvas, not only in data
    # three misses in a row degrade the run: the seconds after are shaded
    spans = "Number(document.getElementById('chart').dataset.degradedSpans || 0)"
    assert browser.wait_js(f"{spans} > 0", 15_000), browser.errors()
    assert pipeline.degrader.every > 1
    newest_mode = "chart.d.every[chart.d.every.length - 1]"  # chart.js's own data
    assert browser.wait_js(f"{newest_mode} > 1", 15_000), browser.errors()
    det.slow.clear()
    # readable at phone size: nothing wider than the screen, the legend on it
    box = browser.js("""(() => { const w = innerWidth, out = [];
        for (const el of document.querySelectorAll('#chart canvas, #chart .u-legend tr'))
          { const r = el.getBoundingClientRect(); out.push([r.left, r.right, r.height]); }
        return {w, scroll: document.documentElement.scrollWidth, boxes: out}; })()""")
    assert box["scroll"] <= box["w"], box
    assert all(0 <= left and right <= box["w"] and h > 0 for left, right, h in box["boxes"]), box
    show_chart(browser)
    rect = browser.js("""(() => { const r = document.querySelector('section.chart')
        .getBoundingClientRect(); return {x: r.x + scrollX, y: r.y + scrollY, width: r.width,
        height: r.height}; })()""")  # fmt: skip
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "serve_chart.png").write_bytes(browser.screenshot(rect))
    # per stage on demand
    browser.js("document.getElementById('per-stage').click()")
    assert browser.wait_js(
        "[...document.querySelectorAll('#chart .u-legend th')]"
        ".some(t => t.textContent === 'infer p99')", 15_000
    ), browser.errors()
    assert browser.errors() == []
