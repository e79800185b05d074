"""``edge``: one entry point, a subcommand per job.

Errors a user can cause are :class:`~edge.errors.EdgeError`: one line on stderr, no traceback
unless ``--debug``, and the error's exit code (2). Logging goes to stderr: human lines on a
terminal, JSON lines when running under systemd (``JOURNAL_STREAM`` set) or with ``--log-json``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence

# OpenCV prints its own "[ WARN:0@0.2] global cap_v4l.cpp ..." lines on stderr (a missing
# /dev/video0, a stream that will not open) before our one-line error says the same thing
# clearly; keep its errors, drop its warnings, unless the user asked for them. Set before any
# subcommand module imports cv2: OpenCV reads it once, at import.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

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
    p = argparse.ArgumentParser(
        prog="edge",
        description="edge-vision: real-time detection that holds every frame to a deadline.",
    )
    p.add_argument("--version", action="version", version=f"edge-vision {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log lines: -v adds the libraries' INFO lines, -vv everything (DEBUG)",
    )
    p.add_argument("--log-json", action="store_true", help="log JSON lines (default under systemd)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:  # every one exists: a module that fails to import is an error, shown
        importlib.import_module(f"edge.cli.{name}").add_parser(sub)
    return p


def _deepest_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The (sub)parser of the command the user typed: ``edge models fetch`` -> fetch's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if isinstance(chosen, argparse.ArgumentParser):
                return _deepest_parser(chosen, args)
    return parser


def _unknown_args_error(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """ "unrecognized arguments: --modle x (did you mean --model?)" for the subcommand."""
    options = [o for a in parser._actions for o in a.option_strings]
    hints: list[str] = []
    for word in extra:
        if word.startswith("-"):
            hints += difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.6)
    hint = f" (did you mean {' or '.join(hints)}?)" if hints else ""
    return f"unrecognized arguments: {' '.join(extra)}{hint}"


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; a flag the subcommand does not know is reported with the subcommand's usage
    (argparse would show the top-level one, which does not list the subcommand's flags)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = _deepest_parser(parser, args)
        sub.error(_unknown_args_error(sub, extra))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C before a command installs its own handler (while the parser imports OpenCV, or
    # the model loads) ends quietly with 130, like one during the command: no traceback
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    setup_logging(args.verbose, args.log_json or bool(os.environ.get("JOURNAL_STREAM")))
    try:
        rc: int = args.func(args)
        return rc
    except EdgeError as e:
        if args.debug:
            raise
        print(f"edge {args.command}: error: {e}", file=sys.stderr)  # noqa: T201
        return e.exit_code
    except BrokenPipeError:  # `edge doctor | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
