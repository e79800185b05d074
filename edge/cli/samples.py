"""``edge samples fetch``: the real sample clips used by the demo source, tests and benchmarks."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge import samples


def add_parser(sub: Any) -> None:
    p = sub.add_parser("samples", help="fetch the sample footage (Debian's opencv-doc)")
    s = p.add_subparsers(dest="samples_cmd", metavar="ACTION", required=True)
    f = s.add_parser("fetch", help="apt-get download opencv-doc and keep its examples/data")
    f.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    d = samples.fetch()
    sys.stdout.write(f"samples in {d}\n")
    return 0
