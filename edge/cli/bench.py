"""``edge bench --source SPEC --model M``: the real pipeline, measured, plus the invoke floor.

It runs exactly what ``edge run`` runs (same threads, same deadline accounting, same miss log)
for ``--frames`` frames or to the end of the file, then times ``--floor-invokes`` bare
``interpreter.invoke()`` calls on the same interpreter in the same process: the floor that no
pipeline change can go below, so the gap between it and the ``infer`` stage shows what the
pipeline around the model costs (thread hand-offs, cache effects, a busy second core).

``--no-pace`` reads a file as fast as possible; the stale policy then defaults to
``process-all`` (every frame goes through the stages; nothing is live, so nothing is stale).
``--json`` prints one object: ``frames`` {captured, processed, dropped, missed, ...},
``latency_ms`` {p50, p95, p99, max} capture to result, ``stages_ms`` {stage: {p50, p95, p99,
max}}, ``invoke_floor_ms`` {p50, p99, min, max, count, over_budget} (``over_budget``: bare
invokes that alone took longer than the budget), and the rest of the run summary.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from edge.cli.run import (
    add_run_args,
    announce_state,
    check_before_sources,
    load_config,
    print_summary,
    source_spec,
)

DEFAULT_FRAMES = 300
DEFAULT_FLOOR_INVOKES = 100


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the real pipeline on a source",
        description="Run the pipeline on a source and report latency per stage, misses and "
        "the bare-invoke floor measured in the same run.",
    )
    add_run_args(p, required=True)
    p.set_defaults(frames=DEFAULT_FRAMES)
    # --frames is shared with `edge run`; here it has a default, say so
    for a in p._actions:
        if a.dest == "frames":
            a.help = f"stop after N captured frames ({DEFAULT_FRAMES})"
    p.add_argument(
        "--floor-invokes",
        type=int,
        default=DEFAULT_FLOOR_INVOKES,
        metavar="N",
        help=f"bare invokes timed after the run ({DEFAULT_FLOOR_INVOKES})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.launch import run as run_pipeline

    cfg = load_config(args)  # --no-pace implies process-all there, as for `edge run`
    check_before_sources(cfg)
    announce_state(cfg, os.environ)
    summary = run_pipeline(
        cfg,
        source_spec(args, cfg),
        environ=os.environ,
        floor_invokes=max(1, args.floor_invokes),
    )
    print_summary(summary, args.json)
    return 0
