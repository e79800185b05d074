"""From a ``--source`` spec to an opened, supervised source.

``parse_spec`` decides what a spec names (one rule per form, in this order):

=====================  ===========  ===============================================
spec                   kind         opened by
=====================  ===========  ===============================================
``demo[:face|person]`` demo         a sample clip, looped and paced (files.py)
``picamera2[:N]``      picamera2    libcamera through picamera2 (picamera2.py)
``gst:PIPELINE``       gst          OpenCV + GStreamer, ends in appsink (opencv_live)
``rtsp://``, ``http(s)://``  stream OpenCV + FFmpeg (opencv_live)
``N``, ``/dev/videoN`` v4l2         OpenCV V4L2, MJPEG requested (opencv_live)
an existing folder     folder       sorted images, paced (files.py)
an existing image      folder       that one image
an existing file       video        OpenCV + FFmpeg, paced (files.py)
=====================  ===========  ===============================================

Anything else is a :class:`~edge.errors.ConfigError` naming the spec and the accepted forms.
Live kinds (cameras, streams) are reopened with backoff when they fail.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.clock import MONOTONIC, Clock
from edge.errors import ConfigError
from edge.sources import files, opencv_live
from edge.sources.base import ACCEPTED_FORMS, Source, SourceOptions, new_seq, redact
from edge.sources.supervisor import SupervisedSource

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
LIVE_KINDS = frozenset({"v4l2", "picamera2", "gst", "stream"})


@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec: ``kind`` (see the module table) and what it points at."""

    spec: str
    kind: str
    target: str

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(f"source {redact(spec)!r}: {why}; accepted: {ACCEPTED_FORMS}")


def _parse_prefixed(spec: str) -> SourceSpec | None:
    head, sep, rest = spec.partition(":")
    if head == "demo":
        if rest not in files.DEMO_CLIPS or (sep and not rest):
            choices = ", ".join(f"demo:{k}" for k in files.DEMO_CLIPS if k)
            raise _bad(spec, f"unknown demo clip {rest!r} (demo, {choices})")
        return SourceSpec(spec, "demo", rest)
    if head == "picamera2":
        if sep and not rest.isdigit():
            raise _bad(spec, f"picamera2 camera number must be 0, 1, ..., got {rest!r}")
        return SourceSpec(spec, "picamera2", rest or "0")
    if head == "gst" and sep:
        if not rest.strip():
            raise _bad(spec, "gst: needs a pipeline ending in appsink")
        return SourceSpec(spec, "gst", rest.strip())
    return None


def parse_spec(spec: str) -> SourceSpec:
    """What ``spec`` names; its ``spec`` field, the source's name wherever it is shown, has
    every password replaced by ``***`` (:func:`~edge.sources.base.redact`); ``target`` is
    what is opened."""
    parsed = _parse(spec)
    return dataclasses.replace(parsed, spec=redact(parsed.spec))


def _parse(spec: str) -> SourceSpec:
    spec = spec.strip()
    if not spec:
        raise _bad(spec, "empty")
    prefixed = _parse_prefixed(spec)
    if prefixed is not None:
        return prefixed
    if spec.lower().startswith(_STREAM_SCHEMES):
        return SourceSpec(spec, "stream", spec)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        raise _bad(spec, "unsupported URL scheme (rtsp, rtsps, http and https are)")
    if opencv_live.accepted_v4l2(spec):
        return SourceSpec(spec, "v4l2", spec)
    try:
        path = Path(spec).expanduser()
    except RuntimeError:  # ~name of a user this system does not have
        raise _bad(spec, "no such user for ~") from None
    if path.is_dir():
        return SourceSpec(spec, "folder", str(path))
    if path.is_file():
        kind = "folder" if path.suffix.lower() in files.IMAGE_SUFFIXES else "video"
        return SourceSpec(spec, kind, str(path))
    raise _bad(spec, "not a camera, a stream URL, or an existing file or folder")


Opener = Callable[[SourceSpec, SourceOptions, Clock, Iterator[int], bool], Source]


def _open_v4l2(s: SourceSpec, o: SourceOptions, c: Clock, q: Iterator[int], first: bool) -> Source:
    spec = opencv_live.v4l2_spec(opencv_live.device_of(s.target))
    return _live(opencv_live.LiveCapture(s.spec, spec, o, c, q), first)


def _open_stream(
    s: SourceSpec, o: SourceOptions, c: Clock, q: Iterator[int], first: bool
) -> Source:
    spec = opencv_live.stream_spec(s.target, o)
    return _live(opencv_live.LiveCapture(s.spec, spec, o, c, q), first)


def _open_gst(s: SourceSpec, o: SourceOptions, c: Clock, q: Iterator[int], first: bool) -> Source:
    spec = opencv_live.gst_spec(s.target)
    return _live(opencv_live.LiveCapture(s.spec, spec, o, c, q), first)


def _live(capture: opencv_live.LiveCapture, first: bool) -> Source:
    # The first open fails loudly here; reopens report failure through read() instead,
    # so a supervisor being closed from another thread is never stuck in an open.
    if first:
        capture.wait_open()
    return capture


def _open_picamera2(
    s: SourceSpec, o: SourceOptions, c: Clock, q: Iterator[int], first: bool
) -> Source:
    from edge.sources.picamera2 import PiCamera2Source  # imports picamera2 only when opened

    return PiCamera2Source(int(s.target), s.spec, o, c, q)


def _open_file(s: SourceSpec, o: SourceOptions, c: Clock, q: Iterator[int], first: bool) -> Source:
    if s.kind == "demo":
        return files.open_demo(s.target, s.spec, o, c, q)
    if s.kind == "folder":
        return files.open_folder(Path(s.target), s.spec, o, c, q)
    return files.open_video(Path(s.target), s.spec, o, c, q)


#: the registry: spec kind -> opener
OPENERS: dict[str, Opener] = {
    "v4l2": _open_v4l2,
    "stream": _open_stream,
    "gst": _open_gst,
    "picamera2": _open_picamera2,
    "demo": _open_file,
    "folder": _open_file,
    "video": _open_file,
}


def open_source(
    spec: str, opts: SourceOptions | None = None, clock: Clock = MONOTONIC
) -> SupervisedSource:
    """Open ``spec`` now (errors are raised here) and wrap it for counting and reconnects."""
    opts = opts or SourceOptions()
    parsed = parse_spec(spec)
    opener = OPENERS[parsed.kind]
    seq = new_seq()
    first = opener(parsed, opts, clock, seq, True)
    if not parsed.live:
        return SupervisedSource(first, opts, clock)
    return SupervisedSource(
        first, opts, clock, reopen=lambda: opener(parsed, opts, clock, seq, False)
    )
