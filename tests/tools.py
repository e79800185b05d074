"""What tests need from the machine, and fault injection shared by the subprocess tests.

A missing system tool or privilege is one line that names it and the fix, and the same outcome
everywhere: the test fails (``pytest.fail``), it never skips quietly on one machine and fails on
another. scripts/test installs the tools (Debian packages) when it runs as root, as CI does.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import MutableMapping
from pathlib import Path

import pytest

#: sitecustomize that makes every Detector.infer() take EDGE_TEST_INFER_DELAY_MS longer
SLOW_INFER_DIR = Path(__file__).resolve().parent / "hooks" / "slow_infer"
#: the stage delay that makes every frame miss a 1 ms budget on any machine, however fast
INFER_DELAY_MS = 5.0


def require_tool(tool: str, package: str) -> str:
    """The path of ``tool``, or fail with the one line that says how to get it."""
    path = shutil.which(tool)
    if path is None:
        for d in ("/usr/sbin", "/sbin", "/lib/systemd", "/usr/lib/systemd"):
            if os.access(f"{d}/{tool}", os.X_OK):
                return f"{d}/{tool}"
        pytest.fail(
            f"{tool} is missing: apt-get install {package} (scripts/test does when run as root)",
            pytrace=False,
        )
    return path


def require_root(what: str) -> None:
    """Fail with one line when not root: ``what`` needs it (CI runs the suite as root)."""
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root: run scripts/test as root (CI does)", pytrace=False)


def libfaketime() -> Path:
    """Debian's multithreaded libfaketime, for this machine's architecture."""
    patterns = (
        "/usr/lib/*/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/lib64/faketime/libfaketimeMT.so.1",
    )
    for pattern in patterns:
        hits = sorted(glob.glob(pattern))
        if hits:
            return Path(hits[0])
    pytest.fail("libfaketimeMT.so.1 is missing: apt-get install faketime", pytrace=False)


def sample(name: str) -> Path:
    """A sample clip in ``$EDGE_CACHE/samples`` (where scripts/test fetches them)."""
    from edge.samples import samples_dir

    p = samples_dir() / name
    if not p.is_file():
        pytest.fail(f"sample {p} missing: run scripts/test (or `edge samples fetch`)")
    return p


def slow_infer(env: MutableMapping[str, str], ms: float = INFER_DELAY_MS) -> None:
    """Make a child ``edge`` process's inference ``ms`` slower (a sitecustomize on PYTHONPATH).

    A test that needs frames to miss their deadline delays the stage instead of counting on
    the model being slower than the budget, which a fast machine would not be.
    """
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(SLOW_INFER_DIR) + (os.pathsep + path if path else "")
    env["EDGE_TEST_INFER_DELAY_MS"] = str(ms)


def slow_infer_in_process(monkeypatch: pytest.MonkeyPatch, ms: float = INFER_DELAY_MS) -> None:
    """The same delay for a pipeline run in this process."""
    import time

    import edge.detector

    real = edge.detector.Detector.infer

    def infer(self: edge.detector.Detector) -> None:
        time.sleep(ms / 1000.0)
        real(self)

    monkeypatch.setattr(edge.detector.Detector, "infer", infer)
