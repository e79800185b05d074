"""docs/grafana-dashboard.json against the metrics a device really exposes: every metric and
label a panel queries must exist in ``/metrics`` (``edge.metrics.EdgeMetrics``), or be one of the
MQTT output's metrics (docs/FLEET.md), so the dashboard cannot drift from the exporter."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import EdgeMetrics

ROOT = Path(__file__).resolve().parents[2]
#: what the MQTT output's metrics() reports (edge_mqtt_* exist only on devices run with --mqtt)
MQTT_STATE = {"connected": True, "queued": 0, "published": 3, "reconnects": 0,
              "dropped_by_reason": {"queue_full": 1}, "inputs_dropped": 0}
#: labels Prometheus adds at scrape time (job, instance) and the fleet's relabelling (device)
SCRAPE_LABELS = {"job", "instance", "device", "site", "le"}


def exposed() -> dict[str, set[str]]:
    """Metric sample names and their labels, from a real exposition."""
    stats = {
        "frames": {"captured": 10, "processed": 9, "dropped": 1, "skipped_stale": 0, "missed": 2},
        "missed_by_cause": {"infer": 2},
        "fps": 29.9, "mode": "normal", "every": 1, "budget_ms": 33.3, "uptime_s": 5.0,
        "source": "demo", "model": "person", "delegate": "cpu", "temperature_c": 51.0,
        "mqtt": MQTT_STATE,
    }  # fmt: skip
    m = EdgeMetrics(0.0333, lambda: stats)
    m.observe_frame({"infer": 12_000_000, "decode": 3_000_000})
    body, _ = m.exposition()
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_queries_only_what_devices_expose() -> None:
    dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    have = {**exposed(), "up": set()}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] and dash["schemaVersion"] >= 36
    queries = exprs(dash)
    assert len(queries) >= 10
    for q in queries:
        assert q.count("(") == q.count(")") and q.count("{") == q.count("}"), q
        names = set(re.findall(r"\b(edge_[a-z_]+|up)\b(?=\s*[{\[(]|\s*\))", q))
        assert names, f"no metric in {q}"
        for name in names:
            assert name in have, f"{name} (in {q}) is not exposed by /metrics"
        used = set(re.findall(r"\bby \(([^)]*)\)", q))
        used |= set(re.findall(r"\b([a-z_]+)\s*(?:=~|!=|=)\s*\"", q))
        labels = {x.strip() for group in used for x in group.split(",")}
        known = set().union(*(have[n] for n in names)) | SCRAPE_LABELS
        assert labels <= known, f"{q}: labels {labels - known} are not on {names}"
    # the three views the fleet needs: latency per stage, misses by cause, fps
    assert any("histogram_quantile(0.99" in q and "by (le, stage)" in q for q in queries)
    assert any("sum by (cause) (rate(edge_frames_missed_total" in q for q in queries)
    assert any("edge_fps" in q for q in queries)
    device_var = {v["name"]: v for v in dash["templating"]["list"]}["device"]
    assert "label_values(edge_info, device)" in json.dumps(device_var)
