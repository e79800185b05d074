"""The TFLite runtime: one place chooses it, one wrapper drives it.

Import order: ``ai_edge_litert`` (the maintained LiteRT wheel) → ``tflite_runtime`` (the
older standalone wheel, still what many Pi images have) → ``tensorflow.lite`` (a full TF
install, e.g. NVIDIA's Jetson wheels). Nothing else in edge/ imports any of them.
"""

from __future__ import annotations

from edge.runtime.loader import Runtime, load_runtime

__all__ = ["Runtime", "load_runtime"]
