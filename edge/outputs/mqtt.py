"""The MQTT output: presence events, periodic summaries and a retained status, for a fleet.

Per-frame detections are too many for a broker, so the output publishes what changes
(docs/MQTT_SCHEMA.md): ``PREFIX/DEVICE/events`` (a class appearing or leaving, debounced;
health changes), ``PREFIX/DEVICE/presence/CLASS`` (retained state of each class),
``PREFIX/DEVICE/stats`` (a summary every ``summary_interval_s`` and one at shutdown) and
``PREFIX/DEVICE/status`` (retained ``online``, with the last will ``offline``).

The pipeline never waits for the broker. Three threads meet here:

* the worker calls :meth:`MqttOutput.on_result` (the watchdog :meth:`~MqttOutput.on_miss`):
  one append to a bounded inbox under a lock nobody holds for long; a full inbox drops the
  input and counts it (``inputs_dropped``). No numpy, no JSON, no socket on their threads.
* the output's own thread (``mqtt-output``) turns inputs into messages (the debounce state
  machine, the tallies, the JSON) and hands them to paho from the bounded
  :class:`~edge.outputs.outbox.Outbox`, at most ``inflight`` unacknowledged at a time.
* paho's network thread (:class:`~edge.outputs.mqtt_link.MqttLink`) connects, writes,
  reads acknowledgements and reconnects with backoff; its callbacks only flip fields.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from edge.clock import MONOTONIC, Clock
from edge.errors import ConfigError
from edge.frame import Detections, Frame, Image
from edge.outputs import payloads
from edge.outputs.events import Digest, Health
from edge.outputs.mqtt_config import MqttConfig, Topics, default_device, resolve_password
from edge.outputs.mqtt_link import INSTALL_HINT, MqttLink, MqttMissing, load_paho
from edge.outputs.outbox import Message, Outbox
from edge.pipeline.output import OutputBase, RunView
from edge.stats import StatsFn
from edge.watchdog.record import MissRecord

__all__ = [
    "INSTALL_HINT",
    "MqttConfig",
    "MqttMissing",
    "MqttOutput",
    "Topics",
    "load_paho",
    "pipeline_stats",
]

log = logging.getLogger(__name__)

#: inputs (results, misses) waiting for the output's thread; ~30 s of frames at 30 fps
INBOX_SIZE = 1024
#: the longest the output's thread waits with nothing to do (the mode is re-read this often)
_TICK_NS = 1_000_000_000
#: at stop, how long paho's thread may take to send DISCONNECT and end (the messages were
#: waited for already); one still in a backoff sleep or a connect attempt is left behind
_END_S = 0.5


def pipeline_stats(pipeline: RunView) -> StatsFn:
    """A light stats provider with the keys of ``edge.serve.provider.PipelineStats`` that the
    summaries use (source, model, mode, every, frames, missed_by_cause, latency_ms.total)."""

    def read() -> dict[str, Any]:
        counts = pipeline.counters.snapshot()
        every = int(pipeline.degrader.every)
        return {
            "source": str(pipeline.source.name),
            "model": str(getattr(pipeline.detector, "name", "?")),
            "mode": _mode(every),
            "every": every,
            "frames": dict(counts.values),
            "missed_by_cause": dict(counts.missed_by_cause),
            "latency_ms": {"total": pipeline.stats.percentiles("total", (50, 99))},
        }

    return read


def _mode(every: int) -> str:
    return "normal" if every <= 1 else "degraded"


def _digest(cfg: MqttConfig, now_ns: int) -> Digest:
    return Digest(
        appear_ns=round(cfg.debounce_s * 1e9),
        leave_ns=round(cfg.leave * 1e9),
        stall_ns=round(cfg.stall_s * 1e9),
        interval_ns=round(cfg.summary_interval_s * 1e9),
        now_ns=now_ns,
    )


class MqttOutput(OutputBase):
    """An :class:`~edge.pipeline.output.Output`. Build (config errors and a missing paho
    surface here, before anything runs), add to a pipeline (``pipeline.add_output(out)``) or
    feed the ``on_*`` hooks, :meth:`start`, and :meth:`stop` at the end; or use it as a
    context manager around the run."""

    #: the key of its figures in ``/api/stats``
    name = "mqtt"

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        environ: Mapping[str, str] | None = None,
        stats: StatsFn | None = None,
        clock: Clock = MONOTONIC,
    ) -> None:
        if not cfg.enabled:
            raise ConfigError("mqtt.url is not set: pass --mqtt mqtt://HOST:PORT")
        load_paho()  # before reading a password file: the likelier problem first
        self.cfg, self.clock = cfg, clock
        self.device = cfg.device or default_device()
        self.topics = Topics(f"{cfg.prefix}/{self.device}")
        self.stats_provider = stats
        self.every: Callable[[], int] | None = None  # the degrader's k (the mode), attached
        self._cond = threading.Condition()  # the inbox, the link's fields, every wait here
        will = payloads.status_offline(device=self.device, clean=False)
        self.link = MqttLink(
            cfg,
            client_id=cfg.client_id or f"edge-{self.device}",
            will=Message(self.topics.status, payloads.dumps(will), cfg.qos_status, True),
            password=resolve_password(cfg, environ or {}),
            cond=self._cond,
        )
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._stopping = False
        self._seen_changes = 0
        self.inputs_dropped = 0
        self.produced = 0  # messages queued (events, presence, stats, status)
        self.failed = False  # the output's thread died (logged); the pipeline carries on
        self.delivered_all = False  # set at stop: the final messages reached the broker
        self._outbox = Outbox(cfg.queue_size, cfg.inflight)
        self._digest = _digest(cfg, clock.now_ns())
        self._seqs = {"events": 0, "stats": 0}
        self._announced = self._provider_errors = 0
        self._thread = threading.Thread(target=self._run, name="mqtt-output", daemon=True)
        self._stop_deadline_ns = 0

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"MqttOutput({self.link.broker} {state}, topics {self.topics.base}/...)"

    # -- the hooks (any thread; O(1), never block) --------------------------------------
    def on_result(
        self, frame: Frame, detections: Detections, stale: bool, image: Image | None = None
    ) -> None:
        """Every result (worker thread; :class:`~edge.pipeline.output.Output`)."""
        self._put(("result", frame.t_capture_ns, frame.seq, detections, stale))

    def on_miss(self, record: MissRecord) -> None:
        """A deadline miss (watchdog thread; :class:`~edge.pipeline.output.Output`)."""
        self._put(("miss", record.cause, record.over_ms))

    def on_health(self, ok: bool, reason: str = "") -> None:
        """An outside verdict on health (e.g. the HTTP server's); published when it changes."""
        self._put(("health", bool(ok), str(reason)), always=True)

    def _put(self, item: tuple[Any, ...], *, always: bool = False) -> None:
        with self._cond:
            if self._stopping or (len(self._inbox) >= INBOX_SIZE and not always):
                self.inputs_dropped += 1
                return
            self._inbox.append(item)
            self._cond.notify_all()

    # -- state, for health and metrics -------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def published(self) -> int:
        """Messages the broker acknowledged (QoS 1, 2) or that were written (QoS 0)."""
        return self.link.published

    @property
    def dropped(self) -> int:
        """Messages dropped: queue full, lost with a connection, undelivered at shutdown."""
        return self._outbox.dropped_total

    @property
    def reconnects(self) -> int:
        return self.link.reconnects

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def metrics(self) -> dict[str, Any]:
        """For ``/api/stats`` and ``/metrics`` (docs/FLEET.md names the metrics)."""
        return {
            "broker": str(self.link.broker),
            "connected": self.link.connected,
            "published": self.link.published,
            "dropped": self.dropped,
            "dropped_by_reason": dict(self._outbox.dropped),
            "queued": len(self._outbox),
            "inflight": self._outbox.inflight,
            "reconnects": self.link.reconnects,
            "inputs_dropped": self.inputs_dropped,
            "last_error": self.link.last_error,
        }

    def wait_for(self, predicate: Callable[[MqttOutput], bool], timeout_s: float) -> bool:
        """Block until ``predicate(self)`` holds, re-checked after every callback and every
        pass of the output's thread (for tests, and for a CLI that waits to say
        "connected"). The predicate runs under the output's lock: read fields only."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout_s)

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self, run: RunView) -> None:
        """Read ``run``'s mode and (unless a ``stats`` provider was given) its counters for the
        summaries (:meth:`Pipeline.add_output <edge.pipeline.runner.Pipeline.add_output>`)."""
        self.every = lambda: int(run.degrader.every)
        if self.stats_provider is None:
            self.stats_provider = pipeline_stats(run)

    def stats(self) -> dict[str, Any]:
        """The broker connection's figures, for ``/api/stats`` and ``/metrics``."""
        return self.metrics()

    def start(self) -> None:
        """Connect in the background (never blocks; a broker that is down is retried)."""
        d = self._digest
        d.begin(self.clock.now_ns())
        if self.every is not None:  # the mode at start is a state, not a change to report
            d.health.mode = _mode(self.every())
            d.health.state = Health(mode=d.health.mode)
        self.link.start()
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Publish the final summary and ``offline``; while connected, wait up to
        ``timeout_s`` (default ``stop_timeout_s``) for them to be acknowledged; disconnect.
        True when everything queued reached the broker."""
        timeout = self.cfg.stop_timeout_s if timeout_s is None else timeout_s
        with self._cond:
            if self._stopping:
                return self.delivered_all
            self._stop_deadline_ns = self.clock.now_ns() + round(timeout * 1e9)
            self._stopping = True
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout + 0.5)
        self.link.end(_END_S)
        return self.delivered_all

    def __enter__(self) -> MqttOutput:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the output's thread -----------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                batch, stopping = self._take()
                now = self.clock.now_ns()
                for item in batch:
                    self._handle(item, now)
                if stopping:
                    break
                self._housekeeping(now)
                with self._cond:  # wake wait_for(): the counters may have moved
                    self._cond.notify_all()
            self._finish()
        except Exception:
            self.failed = True
            log.exception("the MQTT output failed; no more messages will be sent")
        finally:
            with self._cond:
                self._cond.notify_all()

    def _woken(self) -> bool:
        """(Lock held.) Something to do: inputs, a link event, or a stop."""
        return bool(self._inbox) or self.link.changes != self._seen_changes or self._stopping

    def _take(self) -> tuple[list[tuple[Any, ...]], bool]:
        now = self.clock.now_ns()
        timeout_s = max(0.0, (self._digest.next_wake_ns(now, _TICK_NS) - now) / 1e9)
        with self._cond:
            self._cond.wait_for(self._woken, timeout_s)
            batch = list(self._inbox)
            self._inbox.clear()
            self._seen_changes = self.link.changes
            return batch, self._stopping

    def _handle(self, item: tuple[Any, ...], now: int) -> None:
        kind, d = item[0], self._digest
        if kind == "result":
            events, relabelled = d.result(now, *item[1:])
            if relabelled:  # the model's classes are known now: say each one's state
                self._queue_all(self._presence_messages())
            for ev in events:
                body = payloads.event(ev, device=self.device, seq=self._next_seq("events"))
                self._queue(self.topics.events, body, self.cfg.qos_events)
                self._queue_all([self._presence_message(ev.class_id, ev.label, ev.count)])
        elif kind == "miss":
            d.miss(item[1], item[2])
        elif kind == "health":  # checked at once: a change undone in the same batch counts
            d.health.external = (item[1], item[2])
            self._health(now)

    def _housekeeping(self, now: int) -> None:
        d = self._digest
        if self.every is not None:
            d.health.mode = _mode(self.every())
        self._health(now)
        if now >= d.next_summary_ns:
            self._summary(now, final=False)
        if self.link.connected and self._announced != self.link.connects:
            self._announce()
        self._pump()

    def _announce(self) -> None:
        """On every (re)connect, the retained topics again, for a broker that restarted
        without them: the presence of every class behind the queue (newer than any presence
        message waiting, so it must arrive last), the status ahead of it (the pump that
        follows hands it to paho first)."""
        self._announced = self.link.connects
        self._queue_all(self._presence_messages())
        self.produced += 1
        self._outbox.put_first([self._status_message()])

    def _health(self, now: int) -> None:
        """Publish a health change: an event, and the retained status that carries it."""
        changed = self._digest.health.check(now)
        if changed is None:
            return
        self._queue_all([self._status_message()])
        body = payloads.health_event(changed, device=self.device, seq=self._next_seq("events"))
        self._queue(self.topics.events, body, self.cfg.qos_events)

    def _next_seq(self, topic: str) -> int:
        self._seqs[topic] += 1
        return self._seqs[topic]

    def _queue(self, topic: str, body: Mapping[str, Any], qos: int, retain: bool = False) -> None:
        self._queue_all([Message(topic, payloads.dumps(body), qos, retain)])

    def _queue_all(self, msgs: list[Message]) -> None:
        for msg in msgs:
            self.produced += 1
            self._outbox.put(msg)

    def _presence_message(self, class_id: int, label: str, count: int) -> Message:
        body = payloads.presence(label, class_id, count > 0, count, device=self.device)
        topic = self.topics.presence(label)
        return Message(topic, payloads.dumps(body), self.cfg.qos_events, True)

    def _presence_messages(self) -> list[Message]:
        snapshot = self._digest.tracker.snapshot()
        return [self._presence_message(c, label, count) for c, label, _, count in snapshot]

    def _status_message(self) -> Message:
        body = payloads.status_online(
            device=self.device,
            health=self._digest.health.state,
            connects=self.link.connects,
            info=self._pipeline_info(),
        )
        return Message(self.topics.status, payloads.dumps(body), self.cfg.qos_status, True)

    def _pipeline_info(self) -> Mapping[str, Any]:
        if self.stats_provider is None:
            return {}
        try:
            return self.stats_provider()
        except Exception:
            self._provider_errors += 1
            if self._provider_errors == 1:
                log.exception("MQTT: the stats provider failed (logged once, then counted)")
            return {}

    def _summary(self, now: int, *, final: bool) -> None:
        iv = self._digest.take_interval(now)
        own = {"published": self.published, "dropped": self.dropped}
        own.update(queued=self.queued, reconnects=self.reconnects)
        seq = self._next_seq("stats")
        info = self._pipeline_info()
        body = payloads.stats(iv, info, own, device=self.device, seq=seq, final=final)
        self._queue(self.topics.stats, body, self.cfg.qos_stats)

    def _pump(self) -> None:
        if self.link.connected:
            self._outbox.pump(self.link.publish, self.link.epoch)
        else:
            self._outbox.prune(self.link.epoch)

    def _finish(self) -> None:
        """Stopping: the final summary and ``offline``, delivered within the deadline if the
        broker is there; then disconnect (a clean disconnect does not fire the will)."""
        self._summary(self.clock.now_ns(), final=True)
        body = payloads.status_offline(device=self.device, clean=True)
        self._queue(self.topics.status, body, self.cfg.qos_status, retain=True)
        while True:
            self._pump()
            self._outbox.prune(self.link.epoch)
            left_ns = self._stop_deadline_ns - self.clock.now_ns()
            if self._outbox.idle() or not self.link.connected or left_ns <= 0:
                break
            with self._cond:  # woken by an acknowledgement or a disconnect
                self._cond.wait_for(lambda: self.link.changes != self._seen_changes, left_ns / 1e9)
                self._seen_changes = self.link.changes
        undelivered = self._outbox.abandon()
        self.delivered_all = undelivered == 0
        if undelivered:
            log.warning("MQTT: %d message(s) undelivered at shutdown", undelivered)
        self.link.disconnect()
