"""``edge``: one entry point, a subcommand per job.

Errors a user can cause are :class:`~edge.errors.EdgeError`: one line on stderr, no traceback
unless ``--debug``, and the error's exit code (2). Logging goes to stderr: human lines on a
terminal, JSON lines when running under systemd (``JOURNAL_STREAM`` set) or with ``--log-json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence

from edge import __version__
from edge.errors import EdgeError

#: subcommand modules, each with add_parser(subparsers) and run(args) -> int
COMMANDS = ("detect", "models", "doctor", "samples", "run", "bench", "misses")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(verbose: int, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("edge").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--version", action="version", version=f"edge-vision {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--log-json", action="store_true", help="log JSON lines (default under systemd)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"edge.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"edge.cli.{name}":
                continue  # not built yet
            raise
        mod.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C before a command installs its own handler (while the parser imports OpenCV, or
    # the model loads) ends quietly with 130, like one during the command: no traceback
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_json or bool(os.environ.get("JOURNAL_STREAM")))
    try:
        rc: int = args.func(args)
        return rc
    except EdgeError as e:
        if args.debug:
            raise
        print(f"edge {args.command}: error: {e}", file=sys.stderr)  # noqa: T201
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
