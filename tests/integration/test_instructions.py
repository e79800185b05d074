"""The per-frame instruction count around the model stays under its recorded ceiling.

``scripts/bench_instructions.py`` counts, under callgrind, the instructions of the handoff and
the worker's per-frame path (decode, preprocess, postprocess, bookkeeping) apart from the
interpreter's invoke, on fixed frames with a stepping clock: the count repeats exactly, so an
overhead regression fails here instead of hiding in timing noise. The ceiling is the measured
count + 5 % in scripts/instructions_ceiling.json; a change that is meant to cost more (or a
saving to bank) updates it with ``scripts/bench instructions --update``. One valgrind run,
~15-40 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("models_ready", "samples_dir")


def test_instructions_per_frame_stay_under_the_ceiling() -> None:
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind missing: scripts/test installs it (apt-get install valgrind)")
    ceiling = json.loads((ROOT / "scripts" / "instructions_ceiling.json").read_text())
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_instructions.py"), "--json",
         "--frames", str(ceiling["frames"])],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    [run] = res["runs"]
    assert run["invoke_per_frame"] > 1_000_000  # the model's own count was measured apart
    assert 0 < res["per_frame"] <= ceiling["ceiling_per_frame"], (
        f"{res['per_frame']:,.0f} instructions per frame around the model, ceiling "
        f"{ceiling['ceiling_per_frame']:,}: find the regression, or if the cost is meant, "
        f"{ceiling['how']}"
    )
