"""Keep LiteRT's start-up chatter off the user's stderr.

LiteRT's C++ runtime prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` to
file descriptor 2 the first time an interpreter allocates its tensors. It comes from
``TFLITE_LOG_PROD_ONCE(TFLITE_LOG_INFO, ...)`` in the XNNPACK delegate provider, and
tflite's ``MinimalLogger`` writes it with ``fprintf(stderr, ...)`` when the severity is at
least ``MinimalLogger::minimum_log_severity_``: a C++ static (INFO in release builds) with no
environment variable behind it (``TF_CPP_MIN_LOG_LEVEL`` is TensorFlow's logger, not
tflite's) and no Python binding to lower it.

So, around interpreter creation only, fd 2 is pointed at a temporary file; afterwards the lines
that are known start-up noise go to this module's logger at DEBUG (``edge -vv`` shows them) and
everything else, a real warning or error from the runtime or anything another thread wrote
meanwhile, is written back to stderr unchanged. Nothing is lost, only held for the few
milliseconds the interpreter takes to load.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: lines the runtimes print on every start that tell the user nothing they must act on
NOISE = re.compile(
    rb"^INFO: (Created TensorFlow Lite XNNPACK delegate for CPU\."
    rb"|Initialized TensorFlow Lite runtime\.)\s*$"
)

_lock = threading.Lock()  # one redirection at a time: fd 2 is process-wide


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


@contextmanager
def runtime_noise_filtered() -> Iterator[None]:
    """Run the block with fd 2 captured; drop :data:`NOISE`, pass every other line on."""
    with _lock:
        _flush()
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 at all (a daemon with it closed): nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                _flush()
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                _replay(tmp.read())


def _replay(data: bytes) -> None:
    kept: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if NOISE.match(line):
            log.debug("runtime: %s", line.decode("utf-8", "replace").strip())
        else:
            kept.append(line)
    if kept:
        out = b"".join(kept)
        while out:
            out = out[os.write(2, out) :]
