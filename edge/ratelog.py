"""At most one log line per kind of fault per second, carrying how many were held back.

Bad input comes in bursts (a stream of garbage JPEGs at 30 fps) and in trickles (one bad frame
a minute). Either way the journal should get one clear line per kind of fault at once, then at
most one a second for that kind, each saying how many of that kind it stands for: "... (12 more
in the last 1.0 s)". Every event is still counted by the caller's counter; only the lines are
limited.

A kind is the exception class plus a short stable reason (:func:`error_kind`): the ``kind`` an
exception carries (``CorruptFrame.kind``), else its message with the variable parts (numbers,
shapes, quoted names) masked, so "corrupt JPEG (0 bytes)" and "corrupt JPEG (17 bytes)" are one
kind and "unsupported image layout" another.

Time comes from the pipeline's clock (a ``FakeClock`` in tests), never the wall clock. A line
that is not due costs a dict lookup, a clock read and two integer updates: :meth:`due` returns
``None`` and the caller formats nothing. Given an exception, :meth:`due` first works out its
kind (one short string, less than the raise itself allocated); a good frame costs nothing, and
while the logger is disabled for the level nothing is done at all, not even that.
"""

from __future__ import annotations

import logging
import re

from edge.clock import Clock

#: one line per kind per this long
INTERVAL_NS = 1_000_000_000
#: kinds remembered at most; further kinds share one bucket (a message with a path in it
#: must not grow the table without bound)
MAX_KINDS = 32
#: the bucket for kinds beyond ``MAX_KINDS``
OTHER_KIND = "(other kinds)"
#: longest reason kept in a kind
_REASON_CHARS = 60
#: the variable parts of a message: (...), [...], quoted names, numbers
_VARIABLE = re.compile(r"\([^()]*\)|\[[^\]]*\]|'[^']*'|\"[^\"]*\"|\d+")


def error_kind(err: BaseException) -> str:
    """``"Class: reason"``: the exception's ``kind`` attribute if it has a string one, else its
    message with numbers, shapes and quoted names masked (first ``_REASON_CHARS`` characters)."""
    kind = getattr(err, "kind", None)
    reason = kind if isinstance(kind, str) else _VARIABLE.sub("_", str(err))[:_REASON_CHARS]
    return f"{type(err).__name__}: {reason}"


class _Kind:
    __slots__ = ("last_ns", "held")

    def __init__(self, last_ns: int) -> None:
        self.last_ns = last_ns  # when the last line of this kind was written
        self.held = 0  # events of this kind since then, not written


class RateLimitedLog:
    """Decides when a line is due for a kind of event; the caller formats and logs it.

    Use from one thread (each pipeline thread owns its own)::

        more = self._limit.due(err)
        if more is not None:
            log.warning("frame %d skipped: %s%s", seq, err, more)
    """

    def __init__(
        self,
        logger: logging.Logger,
        clock: Clock,
        *,
        level: int = logging.WARNING,
        interval_ns: int = INTERVAL_NS,
        max_kinds: int = MAX_KINDS,
    ) -> None:
        self.logger, self.clock, self.level = logger, clock, level
        self.interval_ns, self.max_kinds = interval_ns, max_kinds
        self._kinds: dict[str, _Kind] = {}

    def due(self, kind: str | BaseException, n: int = 1) -> str | None:
        """Record ``n`` events of ``kind`` (a name, or an exception: its :func:`error_kind`).
        ``None``: stay quiet (held back, or the logger is off for the level). Else a line is
        due now: append the returned suffix to it, ``""`` or ``" (12 more in the last 1.0 s)"``
        for the events of that kind held back since its last line."""
        if not self.logger.isEnabledFor(self.level):
            return None  # before error_kind: not even the exception's message is formatted
        if not isinstance(kind, str):
            kind = error_kind(kind)
        now = self.clock.now_ns()
        state = self._kinds.get(kind)
        if state is None and len(self._kinds) >= self.max_kinds:
            state = self._kinds.get(OTHER_KIND)  # the table is full: share one bucket
            kind = OTHER_KIND
        if state is None:
            self._kinds[kind] = _Kind(now)
            return ""
        if now - state.last_ns < self.interval_ns:
            state.held += n
            return None
        held, since_ns = state.held, now - state.last_ns
        state.last_ns, state.held = now, 0
        return f" ({held} more in the last {since_ns / 1e9:.1f} s)" if held else ""

    def held(self, kind: str) -> int:
        """Events of ``kind`` held back since its last line (not written yet)."""
        state = self._kinds.get(kind)
        return state.held if state is not None else 0
