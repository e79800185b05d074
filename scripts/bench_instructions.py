"""Instructions per frame in our code around the model: a figure machine noise cannot move.

Runs a fixed set of frames (the first --frames of Megamind.avi, 720x528 BGR, face model, one
interpreter thread, one OpenCV thread) under ``valgrind --tool=callgrind`` with PYTHONHASHSEED
fixed, and counts the instructions (Ir) of the per-frame path apart from the interpreter's
invoke: the handoff (``LatestSlot.put`` and ``get``) and the worker's ``handle`` (stamps,
the in-flight record, decode, preprocess, postprocess, the degradation policy, the stats),
with a clock that steps 1 us per reading so that no branch depends on valgrind's timing.

How the count is cut out of a Python process, deterministically and cheaply:
  * start with instrumentation off (``--instr-atstart=no``: imports and the model load run at
    near-native speed) and switch it on with ``callgrind_control -i on`` after start-up and a
    warm-up of the path (so plans and first-call costs are not counted);
  * collect only inside ``ffi_call`` (``--collect-atstart=no --toggle-collect=ffi_call``): each
    measured call goes through a ctypes callback, nothing else in the run uses libffi;
  * phase 1 runs each frame through the path (invoke included), ``os.getppid()`` then dumps the
    counts (``--dump-before=getppid``), and phase 2 runs one bare ``invoke`` per frame through
    the same kind of callback. Per frame: (phase 1 - phase 2) / frames, which also cancels the
    callback's own cost. The invoke's count does not depend on the pixels (XNNPACK's kernels do
    not branch on them).

Runs repeat to the instruction or within a few tens per frame (0.002 %: the allocator's state
after the wait for ``callgrind_control`` differs by a block or two); ``--check`` runs twice and
fails beyond 0.1 %.

The count does not move with the machine's load, so tests/integration/test_instructions.py holds
it under the ceiling in scripts/instructions_ceiling.json (measured + 5 %). To update the
ceiling after a change that is meant to cost more (or to bank a saving):
    scripts/bench instructions --update
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CEILING = ROOT / "scripts" / "instructions_ceiling.json"
MARGIN = 1.05
#: runs repeat to within this fraction (observed: 20 instructions per frame in 1.3 M, from the
#: allocator's state after the wait for callgrind_control); --check fails beyond it
SPREAD = 0.001


def child(frames: int) -> None:
    """Runs under valgrind: warm up, switch instrumentation on, phase 1, dump, phase 2."""
    import ctypes
    import gc
    import threading

    import cv2

    from edge.config import ModelConfig
    from edge.detector import load_detector
    from edge.frame import Frame
    from edge.pipeline.degrade import Degrader
    from edge.pipeline.handoff import LatestSlot
    from edge.pipeline.inflight import InFlight
    from edge.pipeline.settings import DegradeConfig
    from edge.pipeline.worker import Timing, Worker
    from edge.samples import sample_path
    from edge.stats import Counters, LatencyStats

    cv2.setNumThreads(1)
    det = load_detector(ModelConfig(name="face", threads=1))
    cap = cv2.VideoCapture(str(sample_path("Megamind.avi")))
    images = []
    while len(images) < frames:
        ok, img = cap.read()
        if not ok:
            raise SystemExit("Megamind.avi has fewer frames than asked for")
        images.append(img)
    cap.release()
    class StepClock:
        """Time moves 1 us per reading: every stamp, duration and branch on them is the same
        in every run (a real clock under valgrind's slowdown would move the stats' maxima)."""

        def __init__(self) -> None:
            self.t = 10**12

        def now_ns(self) -> int:
            self.t += 1_000
            return self.t

    clock = StepClock()
    budget = 10**12  # nothing is ever late
    slot, inflight = LatestSlot(), InFlight()
    worker = Worker(slot, det, inflight, Timing(budget, budget), clock=clock,
                    counters=Counters(), stats=LatencyStats(), degrader=Degrader(
                        DegradeConfig(policy="off"), budget), stop=threading.Event())  # fmt: skip
    todo: list[Frame] = []

    def one_frame() -> None:
        slot.put(todo.pop())
        item = slot.get(0.0)
        worker.handle(item)  # type: ignore[arg-type]

    def bare() -> None:
        det.infer()

    callback = ctypes.CFUNCTYPE(None)
    measured, measured_bare = callback(one_frame), callback(bare)
    seq = 0

    def feed(img: object) -> None:
        nonlocal seq
        todo.append(Frame(seq, clock.now_ns(), image=img, source="bench"))  # type: ignore[arg-type]
        seq += 1

    for img in images[:3]:  # warm-up: plans, buffers, first calls (not counted)
        feed(img)
        one_frame()
        inflight.take()
    on = subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while on.poll() is None:  # keep running: callgrind reads its command file as we do
        time.sleep(0)
    for img in images[:2]:  # the same allocations as a measured frame, to settle the allocator
        feed(img)
        one_frame()
        inflight.take()
    gc.collect()
    gc.disable()  # a collection must not land inside one run's count and not the other's
    for img in images:
        feed(img)
        measured()
        inflight.take()
    os.getppid()  # --dump-before=getppid: phase 1 ends here
    for _ in images:
        measured_bare()


def run_once(frames: int, workdir: Path) -> dict[str, float]:
    # the same argv every run (a relative output path in the run's own directory): a string
    # that differs between runs would move hashes and allocations, and the count with them
    # one thread everywhere: another thread's instructions must not land in the count
    env = {**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
           "--toggle-collect=ffi_call", "--dump-before=getppid",
           "--callgrind-out-file=callgrind.out",
           sys.executable, str(Path(__file__).resolve()), "--child",
           "--frames", str(frames)]  # fmt: skip
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"valgrind run failed ({r.returncode}):\n{r.stderr[-3000:]}")
    totals = [_total(p) for p in sorted(workdir.glob("callgrind.out*"), key=_dump_no)]
    if len(totals) != 2:
        raise SystemExit(f"expected 2 callgrind dumps, found {len(totals)} in {workdir}")
    path_ir, bare_ir = totals
    return {"per_frame": (path_ir - bare_ir) / frames, "path_ir": path_ir, "invoke_ir": bare_ir,
            "invoke_per_frame": bare_ir / frames, "seconds": time.monotonic() - t0}  # fmt: skip


def _dump_no(p: Path) -> int:
    m = re.search(r"\.(\d+)$", p.name)
    return int(m.group(1)) if m else 1 << 30  # the final dump has no number


def _total(p: Path) -> int:
    for line in p.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"{p}: no totals line")


def measure(frames: int, runs: int) -> dict[str, object]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_once(frames, Path(tmp)))
    per = [r["per_frame"] for r in results]
    spread = (max(per) - min(per)) / max(per)
    return {"frames": frames, "model": "face", "source": "Megamind.avi 720x528 BGR",
            "per_frame": max(per), "runs": results, "spread": spread,
            "deterministic": spread <= SPREAD}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="run twice, fail unless equal")
    ap.add_argument("--update", action="store_true", help=f"write {CEILING.name}")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.frames)
        return 0
    res = measure(a.frames, 2 if a.check or a.update else 1)
    ceiling = json.loads(CEILING.read_text()) if CEILING.exists() else None
    res["ceiling"] = ceiling
    if a.update:
        if not res["deterministic"]:
            raise SystemExit(f"the count differs between runs by more than {SPREAD:.1%}: "
                             f"{res['runs']}")  # fmt: skip
        per = int(res["per_frame"])  # type: ignore[call-overload]
        CEILING.write_text(json.dumps({
            "frames": a.frames, "measured_per_frame": per, "ceiling_per_frame": int(per * MARGIN),
            "how": "scripts/bench instructions --update (measured + 5 %)"},
            indent=1) + "\n")  # fmt: skip
    if a.json:
        print(json.dumps(res))
    else:
        print(f"instructions per frame around the model (face, {a.frames} frames of Megamind.avi "
              f"720x528): {res['per_frame']:,.0f}")  # fmt: skip
        for r in res["runs"]:  # type: ignore[attr-defined]
            print(f"  run: per frame {r['per_frame']:,.0f}, invoke alone "
                  f"{r['invoke_per_frame']:,.0f} per frame, {r['seconds']:.1f} s")  # fmt: skip
        if len(res["runs"]) > 1:  # type: ignore[arg-type]
            print(f"spread between runs {res['spread']:.5%} (allowed {SPREAD:.1%})")
        if ceiling:
            print(f"ceiling {ceiling['ceiling_per_frame']:,} ({CEILING.relative_to(ROOT)})")
    if a.check and not res["deterministic"]:
        print(f"NOT repeatable: the runs differ by more than {SPREAD:.1%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
