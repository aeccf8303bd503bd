"""docs/GATEWAY.md's console reference agrees with the code: every metric served is in the
metrics table (and nothing else), and every API path in the OpenAPI document is in the paths
table."""

from __future__ import annotations

import re

from kit.paths import REPO
from signet_gateway.web.api import create_app
from signet_gateway.web.metrics import METRICS

DOC = (REPO / "docs" / "GATEWAY.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}")
    return DOC[start : DOC.index("\n## ", start + 1)]


def test_every_metric_is_documented_with_its_labels() -> None:
    console = _section("The console: HTTP API, metrics and health")
    rows = re.findall(r"^\| `(signet_[a-z_]+)` \| (\w+) \|([^|]*)\|", console, re.M)
    assert {name for name, _type, _labels in rows} == set(METRICS)
    labels = {name: set(re.findall(r"`(\w+)`", text)) for name, _type, text in rows}
    assert labels["signet_records_refused_total"] == {"reason"}
    assert labels["signet_device_last_seen_age_seconds"] == {"device", "name"}
    assert labels["signet_devices"] == {"status"}
    for name, kind, _labels in rows:
        assert kind == ("counter" if name.endswith("_total") else kind), name


def test_every_api_path_is_documented() -> None:
    app = create_app(reader=None, readiness=lambda: (True, []), registry=None)  # type: ignore[arg-type]
    console = _section("The console: HTTP API, metrics and health")
    documented = {p.split("?")[0] for p in re.findall(r"^\| `(/[^`]*)` \|", console, re.M)}
    assert documented == set(app.openapi()["paths"]) | {"/openapi.json"}
