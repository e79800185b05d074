"""``edge doctor``: what this machine can run, and what blocks a run, each with its fix.

Prints the runtime and its version, numpy's and OpenCV's versions, the delegates that load, the
models present with their checksums, then the host checks of :mod:`edge.doctor_checks`: camera
devices and whether this user can open them, config validity, clock source, thermal and
throttling state, systemd and its watchdog. Exit 1 when something blocks a run.
"""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Any

import cv2
import numpy as np

from edge import models
from edge.errors import EdgeError
from edge.runtime import load_runtime
from edge.runtime.delegates import probe


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check runtime, delegates, models")
    p.add_argument("--dir", help="models directory (models/)")
    p.add_argument("--config", metavar="FILE", help="check this config file too")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    problems: list[str] = []
    out.write(f"python    {platform.python_version()} ({platform.machine()})\n")
    out.write(f"numpy     {np.__version__}\nopencv    {cv2.__version__}\n")
    try:
        rt = load_runtime()
        out.write(f"runtime   {rt.name} {rt.version}\n")
        out.write("delegates\n")
        for name, st in probe(rt).items():
            out.write(f"  {name:<8} {st}\n")
    except EdgeError as e:
        problems.append(str(e))
        out.write(f"runtime   MISSING: {e}\n")
    out.write("models\n")
    ok = 0
    for spec, st in models.status(args.dir):
        out.write(f"  {spec.name:<12} {st}\n")
        ok += st == "ok"
        if st == "checksum mismatch":
            problems.append(
                f"model {spec.name}: checksum mismatch; re-fetch it with "
                f"`edge models fetch {spec.name}`"
            )
    if ok == 0:
        problems.append("no model is fetched: run `edge models fetch`")
    from edge.doctor_checks import checks

    out.write("host\n")
    for c in checks(args.config):
        mark = "ok" if c.ok else ("PROBLEM" if c.blocking else "warning")
        out.write(f"  {c.name:<15} {mark:<8} {c.detail}\n")
        if not c.ok and c.fix:
            out.write(f"  {'':<12} {'fix:':<8} {c.fix}\n")
        if not c.ok and c.blocking:
            problems.append(f"{c.name}: {c.detail}" + (f"; {c.fix}" if c.fix else ""))
    for p in problems:
        out.write(f"PROBLEM: {p}\n")
    out.write("ok\n" if not problems else f"{len(problems)} problem(s)\n")
    return 1 if problems else 0
