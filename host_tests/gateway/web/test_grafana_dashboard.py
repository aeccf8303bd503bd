"""deploy/grafana-signet-gateway.json: a Grafana dashboard built on the metrics /metrics serves
(gateway/web/metrics.py): every series it queries exists, with the labels it groups by."""

from __future__ import annotations

import json
import re

from kit.paths import REPO
from signet_gateway.web.metrics import METRICS

DASHBOARD = REPO / "deploy" / "grafana-signet-gateway.json"
HISTOGRAMS = {"signet_commit_seconds", "signet_ack_latency_seconds", "signet_verify_chunk_seconds"}
LABELS = {"signet_records_refused_total": {"reason"},
          "signet_device_last_seen_age_seconds": {"device", "name"},
          "signet_devices": {"status"}}  # fmt: skip


def _exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_dashboard_queries_only_metrics_the_gateway_serves() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "signet-gateway"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for expr in _exprs():
        for name in re.findall(r"\bsignet_[a-z_]+", expr):
            if name.endswith("_bucket"):
                assert name.removesuffix("_bucket") in HISTOGRAMS, expr
                assert "histogram_quantile" in expr, expr
                name = name.removesuffix("_bucket")
            assert name in METRICS, (name, expr)
            used.add(name)
            for label in re.findall(r"by \(([a-z_, ]+)\)", expr):
                wanted = {x.strip() for x in label.split(",")} - {"le"}
                assert wanted <= LABELS.get(name, set()), (name, expr)
    # Each outcome, latency and state the issue names has a panel.
    assert used >= {
        "signet_records_stored_total", "signet_records_refused_total",
        "signet_records_duplicate_total", "signet_records_equivocation_total",
        "signet_backlog_messages", "signet_broker_connected", "signet_ready",
        "signet_device_last_seen_age_seconds", *HISTOGRAMS,
    }  # fmt: skip
