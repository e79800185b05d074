"""The MQTT output's bounded outbound queue: what waits while the broker is away or slow.

Messages wait here, oldest first, until the client library takes them; at most ``inflight``
are with the library at once (handed over, not yet acknowledged), so a slow broker backs up
into this queue, not into the library's unbounded memory. Past ``size`` the *oldest* message
is dropped: after an outage the newest state matters most (and the retained status and
presence topics are republished on reconnect anyway). Every drop is counted by reason:

queue_full  dropped to make room (the broker was away or slow for too long)
lost        a QoS 0 message handed over just before the connection dropped, never confirmed
            written (QoS 1 and 2 messages are kept and resent by the library)
shutdown    still undelivered when the stop timeout ran out
rejected    refused by the library for any other reason

Single-threaded: only the output's own thread touches it (the counters may be read anywhere).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

DROP_REASONS: tuple[str, ...] = ("queue_full", "lost", "shutdown", "rejected")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


class Handle(Protocol):
    """What the library returns for a message it took (paho's ``MQTTMessageInfo``)."""

    def is_published(self) -> bool: ...


class _Rejected:
    def is_published(self) -> bool:
        return True


#: the handle a publish function returns for a message the library refused for good
REJECTED: Handle = _Rejected()

#: what a publish attempt did: the library took it (a handle), it must wait (None), or the
#: library refused it (:data:`REJECTED`)
Publish = Callable[[Message], Handle | None]


@dataclass(slots=True)
class _InFlight:
    handle: Handle
    qos: int
    epoch: int  # the connection it was handed to


class Outbox:
    def __init__(self, size: int, inflight: int) -> None:
        if size < 1 or inflight < 1:
            raise ValueError(f"expected size >= 1 and inflight >= 1, got {size}, {inflight}")
        self.size, self.max_inflight = size, inflight
        self._queue: deque[Message] = deque()
        self._inflight: deque[_InFlight] = deque()
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.handed = 0  # messages the library took

    def __len__(self) -> int:
        """Messages waiting (not yet handed to the library)."""
        return len(self._queue)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def put(self, msg: Message) -> None:
        """Queue ``msg`` last, dropping the oldest waiting message when full."""
        if len(self._queue) >= self.size:
            self._queue.popleft()
            self.dropped["queue_full"] += 1
        self._queue.append(msg)

    def put_first(self, msgs: Iterable[Message]) -> None:
        """Queue ``msgs`` (in order) ahead of everything waiting (the status on a reconnect);
        when full, the oldest of the others make room, as with :meth:`put`."""
        first = list(msgs)[: self.size]
        for msg in reversed(first):
            self._queue.appendleft(msg)
        while len(self._queue) > self.size:
            del self._queue[len(first)]
            self.dropped["queue_full"] += 1

    def pump(self, publish: Publish, epoch: int) -> int:
        """Hand waiting messages to the library while it has room; how many it took."""
        self.prune(epoch)
        taken = 0
        while self._queue and len(self._inflight) < self.max_inflight:
            msg = self._queue.popleft()
            handle = publish(msg)
            if handle is None:
                self._queue.appendleft(msg)  # not connected (QoS 0) or its queue is full
                break
            if handle is REJECTED:
                self.dropped["rejected"] += 1
                continue
            self._inflight.append(_InFlight(handle, msg.qos, epoch))
            taken += 1
        self.handed += taken
        return taken

    def prune(self, epoch: int) -> None:
        """Forget confirmed messages; QoS 0 ones from a connection that is gone are lost."""
        keep: deque[_InFlight] = deque()
        for f in self._inflight:
            if f.handle.is_published():
                continue
            if f.qos == 0 and f.epoch != epoch:
                self.dropped["lost"] += 1
                continue
            keep.append(f)
        self._inflight = keep

    def idle(self) -> bool:
        """Nothing waiting and nothing unconfirmed (call :meth:`prune` first)."""
        return not self._queue and not self._inflight

    def abandon(self) -> int:
        """At shutdown: count everything undelivered as dropped; how many."""
        n = len(self._queue) + len(self._inflight)
        self.dropped["shutdown"] += n
        self._queue.clear()
        self._inflight.clear()
        return n
