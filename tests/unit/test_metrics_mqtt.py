"""The MQTT output's state reaches /metrics (docs/FLEET.md's dashboard queries these names)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import EdgeMetrics


def scrape(stats: dict[str, Any]) -> dict[str, float]:
    body, _ = EdgeMetrics(0.033, lambda: stats).exposition()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            key = s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items()))
            out[key] = s.value
    return out


def test_mqtt_state_is_exported_only_when_mqtt_runs() -> None:
    base: dict[str, Any] = {"frames": {"captured": 5}, "missed_by_cause": {}}
    assert not any(k.startswith("edge_mqtt") for k in scrape(base))
    m = scrape({**base, "mqtt": {"connected": True, "queued": 3, "published": 41,
                                 "dropped_by_reason": {"queue_full": 2, "lost": 1},
                                 "reconnects": 4, "inputs_dropped": 7}})
    assert m["edge_mqtt_connected"] == 1 and m["edge_mqtt_queue_messages"] == 3
    assert m["edge_mqtt_messages_published_total"] == 41
    assert m["edge_mqtt_messages_dropped_total|reason=queue_full"] == 2
    assert m["edge_mqtt_messages_dropped_total|reason=lost"] == 1
    assert m["edge_mqtt_reconnects_total"] == 4 and m["edge_mqtt_inputs_dropped_total"] == 7
