"""Prometheus metrics for a run, through ``prometheus_client``, in a registry of their own.

* ``edge_frame_latency_seconds{stage}``: a histogram per stage (and ``total``, capture to
  result) whose buckets are fractions and multiples of the frame budget, so a scrape tells
  "under half the budget" from "just under it" from "late" (the default buckets, 5 ms .. 10 s,
  would put every frame of a 33 ms budget in two buckets).
* counters and gauges read from the run's stats (:data:`edge.stats.StatsFn`) at
  scrape time, so ``/metrics`` and ``/api/stats`` count exactly the same frames.

Observing the histogram must not cost the worker anything: the worker only leaves each
finished frame's stage table where :meth:`EdgeMetrics.observe_frame` can reach it (the
server drains them on its own thread).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.stats import StatsFn
from edge.watchdog.record import CAUSES

#: histogram bucket bounds as fractions of the budget (1.0 is the deadline itself)
BUDGET_FRACTIONS: tuple[float, ...] = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip

#: the frame counters with a metric of their own (others go to ``edge_events_total``)
FRAME_COUNTERS: tuple[str, ...] = ("captured", "processed", "dropped", "skipped_stale")


def latency_buckets(budget_s: float) -> tuple[float, ...]:
    """Bucket upper bounds in seconds for a frame budget of ``budget_s``."""
    if not budget_s > 0:
        raise ValueError(f"budget_s must be > 0 s, got {budget_s!r}")
    return tuple(round(f * budget_s, 9) for f in BUDGET_FRACTIONS)


class EdgeMetrics:
    """The latency histogram plus a collector over the stats; one per server."""

    def __init__(self, budget_s: float, stats: StatsFn) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.budget_s = budget_s
        self.latency = Histogram(
            "edge_frame_latency_seconds",
            "Time a frame spent in each stage; stage=total is capture to result",
            ["stage"],
            buckets=latency_buckets(budget_s),
            registry=self.registry,
        )
        self._children: dict[str, Any] = {}
        self.registry.register(StatsCollector(stats))

    def observe_frame(self, stages_ns: Mapping[str, int]) -> None:
        """One finished frame's stage table (ns); its sum is the capture-to-result total.

        The worker's stage stamps are contiguous, so the stages add up to the latency the
        pipeline records as ``total``."""
        total = 0
        for stage, ns in stages_ns.items():
            self._child(stage).observe(ns / 1e9)
            total += ns
        self._child("total").observe(total / 1e9)

    def _child(self, stage: str) -> Any:
        child = self._children.get(stage)
        if child is None:
            child = self._children[stage] = self.latency.labels(stage)
        return child

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class StatsCollector(Collector):
    """Counters and gauges from one stats snapshot per scrape."""

    def __init__(self, stats: StatsFn) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []  # no scrape at registration: the stats may not be ready yet

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        frames: Mapping[str, int] = s.get("frames", {})
        for name in FRAME_COUNTERS:
            yield CounterMetricFamily(
                f"edge_frames_{name}", _FRAME_HELP[name], value=frames.get(name, 0)
            )
        yield _missed(s.get("missed_by_cause", {}))
        events = CounterMetricFamily(
            "edge_events", "Other pipeline events (shed, decode_errors, ...)", labels=["event"]
        )
        for name, value in sorted(frames.items()):
            if name not in FRAME_COUNTERS and name != "missed":
                events.add_metric([name], value)
        yield events
        yield from _gauges(s)
        stream = s.get("stream")
        if isinstance(stream, Mapping):
            yield from _stream(stream)
        mqtt = s.get("mqtt")
        if isinstance(mqtt, Mapping):
            yield from _mqtt(mqtt)


_FRAME_HELP = {
    "captured": "Frames read from the source",
    "processed": "Frames taken through the stages (on time or late, shed included)",
    "dropped": "Frames overwritten in the latest-frame handoff before the worker took them",
    "skipped_stale": "Frames skipped because they were past their deadline when picked up",
}


def _missed(by_cause: Mapping[str, int]) -> CounterMetricFamily:
    m = CounterMetricFamily(
        "edge_frames_missed", "Frames that missed their deadline, by cause", labels=["cause"]
    )
    for cause in (*CAUSES, *sorted(set(by_cause) - set(CAUSES))):
        m.add_metric([cause], by_cause.get(cause, 0))
    return m


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _gauges(s: Mapping[str, Any]) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "edge_info", "What runs: source, model, delegate", labels=["source", "model", "delegate"]
    )
    info.add_metric([str(s.get(k, "")) for k in ("source", "model", "delegate")], 1)
    yield info
    yield _gauge("edge_fps", "Frames processed per second, last few seconds", s.get("fps", 0.0))
    yield _gauge(
        "edge_mode", "0 normal, 1 degraded (shedding inference)", s.get("mode") != "normal"
    )
    yield _gauge("edge_degrade_every", "Inference runs on every k-th frame", s.get("every", 1))
    yield _gauge("edge_frame_budget_seconds", "The frame deadline", s.get("budget_ms", 0) / 1e3)
    yield _gauge("edge_uptime_seconds", "Seconds since the run began", s.get("uptime_s", 0.0))
    temp = s.get("temperature_c")
    if temp is not None:  # absent, not 0, where the machine does not say
        yield _gauge("edge_temperature_celsius", "CPU temperature", temp)


def _stream(stream: Mapping[str, Any]) -> Iterator[Metric]:
    yield _gauge("edge_stream_clients", "Viewers of /stream.mjpg now", stream.get("clients", 0))
    yield CounterMetricFamily(
        "edge_stream_frames_rendered",
        "Overlay frames drawn for viewers (each encoded once per width, shared)",
        value=stream.get("rendered", 0),
    )
    dropped = CounterMetricFamily(
        "edge_stream_clients_dropped", "Viewers disconnected by the server", labels=["reason"]
    )
    for reason, n in sorted(stream.get("dropped", {}).items()):
        dropped.add_metric([reason], n)
    yield dropped


def _mqtt(m: Mapping[str, Any]) -> Iterator[Metric]:
    """The MQTT output's state (present only with ``--mqtt``); names as in docs/FLEET.md."""
    yield _gauge("edge_mqtt_connected", "1 while connected to the broker", bool(m.get("connected")))
    yield _gauge("edge_mqtt_queue_messages", "Messages waiting for the broker", m.get("queued", 0))
    yield CounterMetricFamily(
        "edge_mqtt_messages_published", "Messages the broker took", value=m.get("published", 0)
    )
    dropped = CounterMetricFamily(
        "edge_mqtt_messages_dropped", "Messages given up, by reason", labels=["reason"]
    )
    for reason, n in sorted(m.get("dropped_by_reason", {}).items()):
        dropped.add_metric([reason], n)
    yield dropped
    yield CounterMetricFamily(
        "edge_mqtt_reconnects", "Reconnections to the broker", value=m.get("reconnects", 0)
    )
    yield CounterMetricFamily(
        "edge_mqtt_inputs_dropped",
        "Results the MQTT output could not take (its inbox was full)",
        value=m.get("inputs_dropped", 0),
    )
