"""Delegates by name, and the fallback chain.

A delegate spec is a comma-separated chain tried in order: ``edgetpu`` (fail if it cannot load),
``edgetpu,cpu`` (fall back to the CPU, and say so), ``/opt/x/libfoo.so`` (any delegate library).
Options (``--delegate-option key=value``, or ``[model.delegate_options]``) go to the first
non-CPU delegate of the chain, as strings, the way ``load_delegate(library, options)`` takes them.

``cpu`` is XNNPACK, which the LiteRT interpreter applies by itself: no library to load.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.errors import ConfigError, DelegateError
from edge.runtime.loader import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownDelegate:
    library: str
    install: str
    default_options: Mapping[str, str] = field(default_factory=dict)


#: what each name loads, and how a user gets the library when it is missing
KNOWN: dict[str, KnownDelegate] = {
    "edgetpu": KnownDelegate(
        "libedgetpu.so.1",
        "install the Edge TPU runtime (`apt-get install libedgetpu1-std` from Coral's apt "
        "repository) and use a model compiled with edgetpu_compiler (*_edgetpu.tflite)",
    ),
    "armnn": KnownDelegate(
        "libarmnnDelegate.so",
        "install Arm NN's TFLite delegate (Debian/Ubuntu `libarmnn-delegate`-style packages or "
        "Arm's release tarball) and put its directory on LD_LIBRARY_PATH",
        {"backends": "CpuAcc,CpuRef", "logging-severity": "warning"},
    ),
    "vx": KnownDelegate(
        "libvx_delegate.so",
        "use NXP's i.MX BSP image (it ships /usr/lib/libvx_delegate.so for the i.MX 8M Plus / "
        "i.MX 93 NPU)",
    ),
    "gpu": KnownDelegate(
        "libtensorflowlite_gpu_delegate.so",
        "build the TFLite GPU delegate (bazel build //tensorflow/lite/delegates/gpu:"
        "libtensorflowlite_gpu_delegate.so) and put it on LD_LIBRARY_PATH",
    ),
}


@dataclass(frozen=True)
class DelegateChoice:
    """The outcome of loading a chain: which element is in use, and the delegate objects."""

    name: str  # "cpu", a known name, or a library path
    delegates: tuple[Any, ...]
    fell_back_from: tuple[str, ...] = ()  # elements that failed before this one


def parse_chain(spec: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in spec.split(",") if p.strip())
    if not parts:
        raise ConfigError(
            "empty --delegate: expected cpu, edgetpu, armnn, vx, gpu, a path to a delegate "
            ".so, or a fallback chain such as edgetpu,cpu"
        )
    for p in parts:
        if p != "cpu" and p not in KNOWN and not (p.endswith(".so") or ".so." in p or "/" in p):
            raise ConfigError(
                f"unknown delegate {p!r}: expected cpu, {', '.join(KNOWN)}, or a path to a "
                "delegate library (*.so)"
            )
    return parts


def _load_one(rt: Runtime, name: str, options: Mapping[str, str]) -> Any:
    known = KNOWN.get(name)
    library = known.library if known else name
    opts = {**(known.default_options if known else {}), **options}
    try:
        # dlopen it ourselves first: a Delegate that fails inside LiteRT's constructor prints
        # a spurious AttributeError from its __del__ (ai_edge_litert 2.x)
        ctypes.CDLL(library)
        return rt.load_delegate(library, opts)
    except (OSError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        hint = known.install if known else "check the path and that its dependencies resolve (ldd)"
        raise DelegateError(
            f"delegate {name!r} could not be loaded from {library}: {reason}; {hint}"
        ) from None


def load_chain(rt: Runtime, spec: str, options: Mapping[str, str] | None = None) -> DelegateChoice:
    """Load the first element of ``spec`` that works; raise the last failure when none does."""
    chain = parse_chain(spec)
    options = dict(options or {})
    failed: list[str] = []
    last: DelegateError | None = None
    for i, name in enumerate(chain):
        if name == "cpu":
            if failed:
                log.warning("using the CPU (XNNPACK) instead: %s", last)
            return DelegateChoice("cpu", (), tuple(failed))
        try:
            d = _load_one(rt, name, options if not failed else options)
        except DelegateError as e:
            failed.append(name)
            last = e
            if i + 1 < len(chain):
                log.warning("%s; trying %s next", e, chain[i + 1])
            continue
        if failed:
            log.warning("falling back to delegate %s after %s failed", name, ", ".join(failed))
        return DelegateChoice(name, (d,), tuple(failed))
    assert last is not None  # chain is non-empty and every element failed
    raise last


def probe(rt: Runtime) -> dict[str, str]:
    """Which known delegates load here: {name: "ok" | reason}. Used by ``edge doctor``."""
    out = {"cpu": "ok (XNNPACK, built in)"}
    for name in KNOWN:
        try:
            _load_one(rt, name, {})
            out[name] = "ok"
        except DelegateError as e:
            out[name] = str(e)
    return out
