"""Capture sources: one small interface, a registry keyed by the ``--source`` spec.

    src = open_source("demo", SourceOptions(fps=30))   # errors for bad specs raise here
    try:
        while running:
            frame = src.read(timeout_s=0.25)   # None: no frame yet (or reconnecting)
            ...
    except EndOfStream:                        # files and folders only
        ...
    finally:
        src.close()

See docs/SOURCES.md for every spec form, the options and what each backend needs.
"""

from edge.sources.base import (
    ACCEPTED_FORMS,
    CameraFrame,
    CorruptFrame,
    EndOfStream,
    Source,
    SourceOptions,
)
from edge.sources.registry import SourceSpec, open_source, parse_spec
from edge.sources.supervisor import SourceStats, SupervisedSource

__all__ = [
    "ACCEPTED_FORMS",
    "CameraFrame",
    "CorruptFrame",
    "EndOfStream",
    "Source",
    "SourceOptions",
    "SourceSpec",
    "SourceStats",
    "SupervisedSource",
    "open_source",
    "parse_spec",
]
