"""The live page in a real headless Chromium (Debian's ``chromium``), driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: fds 3 and 4, NUL-separated JSON; no
websocket, no port): the stream shows and changes, the stats update, the misses are listed,
the token in the page's URL reaches every request, and nothing is logged as an error.

The phone-sized screenshot is kept as ``artifacts/serve_page.png``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.serve import ServeConfig, Server
from edge.watchdog.record import MissRecord
from tests.integration.serve_rig import BUDGET_NS, Publisher, Sample, load_clip

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "page-token-42xyz"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
    "--remote-debugging-pipe",
]  # fmt: skip


class Chromium:
    """A headless Chromium and one page, over the DevTools protocol on a pipe."""

    def __init__(self, timeout_s: float = 20.0) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail(
                "chromium is not installed: apt-get install -y chromium (scripts/test does)"
            )
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="edge-chromium-")
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, to_r, 3),
            (os.POSIX_SPAWN_DUP2, from_w, 4),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        args = [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.pid = os.posix_spawn(binary, args, dict(os.environ), file_actions=actions)
        os.close(to_r)
        os.close(from_w)
        self._w, self._r = to_w, from_r
        self._buf, self._id = b"", 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, session=True, **params)

    def _next(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return dict(json.loads(msg))

    def js(self, expr: str) -> Any:
        """Evaluate ``expr`` in the page (awaiting a promise); its JSON value."""
        r = self.page("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_js(self, predicate: str, timeout_ms: int = 10_000) -> bool:
        """Resolve in the page once ``predicate`` holds, re-checked on every DOM change."""
        return bool(self.js(f"""new Promise((resolve) => {{
            const ok = () => {{ try {{ return !!({predicate}); }} catch (e) {{ return false; }} }};
            if (ok()) return resolve(true);
            const obs = new MutationObserver(() => {{
                if (ok()) {{ obs.disconnect(); resolve(true); }} }});
            obs.observe(document, {{subtree: true, childList: true, attributes: true,
                                    characterData: true}});
            setTimeout(() => {{ obs.disconnect(); resolve(ok()); }}, {timeout_ms});
        }})"""))  # fmt: skip

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.page("Page.captureScreenshot", **params)["data"])

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(p["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(json.dumps(p.get("args"))[:300])
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError, EOFError):
            os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self._w)
        os.close(self._r)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def clip(samples_dir: Path, models_ready: None) -> list[Sample]:
    return load_clip(samples_dir / "Megamind.avi")


@pytest.fixture()
def browser() -> Iterator[Chromium]:
    b = Chromium()
    try:
        yield b
    finally:
        b.close()


def decode_png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_the_page_shows_a_live_stream_and_live_stats(clip: list[Sample], browser: Chromium) -> None:
    server = Server(ServeConfig(http="127.0.0.1:0", token=TOKEN, stream_fps=15.0))
    pub = Publisher(server, clip)
    server.attach_stats(pub.stats(), BUDGET_NS)
    server.start()
    pub.start()
    try:
        pub.counters.miss("infer")
        server.on_miss(MissRecord.create(
            frame=3, source="Megamind.avi", budget_ms=33.0, latency_ms=41.5,
            stages_ns={"infer": 35_000_000}, cause="infer", action="completed-late",
            consecutive=1))  # fmt: skip
        for domain in ("Runtime", "Log", "Page"):
            browser.page(f"{domain}.enable")
        # a phone: 390 x 844 CSS pixels at 2x
        browser.page("Emulation.setDeviceMetricsOverride", width=390, height=844,
                     deviceScaleFactor=2, mobile=True)  # fmt: skip
        browser.page("Page.navigate", url=f"{server.url}?token={TOKEN}")
        processed = "Number(document.getElementById('frames').dataset.processed || 0)"
        img_ok = "document.getElementById('stream').naturalWidth > 0"
        assert browser.wait_js(f"{processed} > 0 && {img_ok}"), browser.errors()
        first = browser.js(processed)
        assert browser.js("document.getElementById('conn').textContent") == "live"
        assert browser.js("document.getElementById('mode').textContent") == "normal"
        assert browser.js("document.getElementById('what').textContent").startswith("Megamind")
        rect = browser.js("""(() => { const r = document.getElementById('stream')
            .getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width,
            height: r.height}; })()""")  # fmt: skip
        assert rect["width"] > 300 and rect["height"] > 200  # the stream fills the phone's width
        shot_a = decode_png(browser.screenshot(rect))
        # the stats move on (the page polls once a second) and so does the picture
        assert browser.wait_js(f"{processed} >= {first} + 30"), browser.errors()
        assert browser.wait_js("document.querySelectorAll('#misses tbody tr').length > 0")
        shot_b = decode_png(browser.screenshot(rect))
        assert shot_a.shape == shot_b.shape
        assert float(np.mean(np.abs(shot_a.astype(int) - shot_b.astype(int)))) > 2.0
        assert float(shot_b.std()) > 10.0  # a picture, not a blank box
        cells = browser.js(
            "[...document.querySelectorAll('#misses tbody td')].map(t => t.textContent)"
        )
        assert cells[1:3] == ["3", "infer"]
        stages = browser.js(
            "[...document.querySelectorAll('#stages tbody td:first-child')].map(t => t.textContent)"
        )
        assert "infer" in stages and "total" in stages
        assert server.hub.watchers == 1  # the page's <img> holds one stream
        (ROOT / "artifacts").mkdir(exist_ok=True)
        (ROOT / "artifacts" / "serve_page.png").write_bytes(browser.screenshot())
        assert browser.errors() == []
    finally:
        pub.close()
        server.stop()
