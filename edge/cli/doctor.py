"""``edge doctor``: what this machine can run, and what blocks a run, each with its fix.

Prints the runtime and its version, numpy's and OpenCV's versions, the delegates that load, the
models present with their checksums, then the host checks of :mod:`edge.doctor_checks`: camera
devices and whether this user can open them, config validity, clock source, thermal and
throttling state, systemd and its watchdog. Exit 1 when something blocks a run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import textwrap
from collections.abc import Mapping
from typing import IO, Any

import cv2
import numpy as np

from edge import models
from edge.errors import EdgeError
from edge.runtime import load_runtime
from edge.runtime.delegates import KNOWN, probe
from edge.state import MISS_LOG_NAME, state_dir

#: how a delegate that is simply not installed reads in the loader's reason (dlopen's words)
_ABSENT = ("cannot open shared object file", "No such file or directory")

INSTALL_HINT = (
    "an accelerator is used through its vendor's delegate library: the Coral Edge TPU's "
    "libedgetpu1-std (Coral's apt repository), Arm NN's libarmnnDelegate.so, NXP i.MX's "
    "libvx_delegate.so (in NXP's BSP image), the TFLite GPU delegate; then "
    "`edge run --delegate NAME` (docs/RASPBERRY_PI.md, docs/JETSON.md); "
    "`edge -v doctor` shows why each did not load"
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check runtime, delegates, models")
    p.add_argument("--dir", help="models directory (models/)")
    p.add_argument("--config", metavar="FILE", help="check this config file too")
    p.set_defaults(func=run)


def write_delegates(out: IO[str], status: Mapping[str, str], *, verbose: bool) -> None:
    """The CPU, then the accelerators that load; the optional ones that are simply not
    installed in one line with one install hint, wrapped to the terminal (each reason with -v).
    A library that is present but fails to load is a finding, and is shown in full."""
    width = max(40, min(shutil.get_terminal_size().columns, 100))  # $COLUMNS, else the tty
    out.write("delegates\n")
    absent: list[str] = []
    for name, st in status.items():
        if name in KNOWN and st != "ok" and any(a in st for a in _ABSENT) and not verbose:
            absent.append(name)
        else:
            out.write(f"  {name:<8} {st}\n")
    if not absent:
        return
    found = [n for n, st in status.items() if n in KNOWN and st == "ok"]
    head = ", ".join(found) if found else "none found"
    summary = f"optional accelerators: {head} (not installed: {', '.join(absent)})"
    for text in (summary, "hint: " + INSTALL_HINT):
        for line in textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    "):
            out.write(line + "\n")


def state_line(environ: Mapping[str, str]) -> str:
    """Where runs write their miss log (edge.state), and whether it exists yet."""
    try:
        d = state_dir(environ)
    except EdgeError as e:
        return f"none: {e}"
    log = d / MISS_LOG_NAME
    return f"{d} (miss log {'present' if log.is_file() else 'not written yet'})"


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    problems: list[str] = []
    out.write(f"python    {platform.python_version()} ({platform.machine()})\n")
    out.write(f"numpy     {np.__version__}\nopencv    {cv2.__version__}\n")
    try:
        rt = load_runtime()
        out.write(f"runtime   {rt.name} {rt.version}\n")
        write_delegates(out, probe(rt), verbose=getattr(args, "verbose", 0) > 0)
    except EdgeError as e:
        problems.append(str(e))
        out.write(f"runtime   MISSING: {e}\n")
    out.write(f"state     {state_line(os.environ)}\n")
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
