"""Find a TFLite runtime: ai_edge_litert → tflite_runtime → tensorflow.lite."""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from functools import cache
from typing import Any

from edge.errors import RuntimeMissing

#: (import path of the interpreter module, distribution name for the version, label)
CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("ai_edge_litert.interpreter", "ai-edge-litert", "ai_edge_litert"),
    ("tflite_runtime.interpreter", "tflite-runtime", "tflite_runtime"),
    ("tensorflow.lite", "tensorflow", "tensorflow.lite"),
)


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    Interpreter: Any  # the Interpreter class
    load_delegate: Any  # load_delegate(library, options) -> Delegate


def _version(dist: str, module: Any) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _try(modpath: str, dist: str, label: str) -> Runtime | None:
    try:
        mod = importlib.import_module(modpath)
    except ImportError:
        return None
    if label == "tensorflow.lite":
        return Runtime(label, _version(dist, mod), mod.Interpreter, mod.experimental.load_delegate)
    return Runtime(label, _version(dist, mod), mod.Interpreter, mod.load_delegate)


@cache
def load_runtime(prefer: str | None = None) -> Runtime:
    """The first runtime that imports (``prefer`` names one to try first, for tests/doctor)."""
    order = sorted(CANDIDATES, key=lambda c: c[2] != prefer)
    for modpath, dist, label in order:
        rt = _try(modpath, dist, label)
        if rt is not None:
            return rt
    raise RuntimeMissing(
        "no TFLite runtime found: tried ai_edge_litert, tflite_runtime, tensorflow.lite; "
        "install one with `pip install ai-edge-litert` (x86_64/aarch64, Python 3.10-3.13)"
    )
