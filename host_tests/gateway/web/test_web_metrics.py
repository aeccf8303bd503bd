"""/metrics and /readyz of a real gateway process: the exposition parses with
prometheus_client's own parser, its counters are what the virtual fleet sent, and readiness
follows the broker going away and coming back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kit.console import ConsoleClient, console_gateway
from kit.gatewaykit import Dev, Mqtt
from signet_gateway.web.metrics import METRICS
from signet_tools.fleet import adversary
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def scrape(client: ConsoleClient) -> dict[str, list[Sample]]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    (match,) = [s for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    return match.value


@pytest.fixture
def console(
    tmp_path: Path, broker: Mosquitto
) -> Iterator[tuple[list[Dev], GatewayProcess, ConsoleClient]]:
    devs = [Dev(i) for i in range(2)]
    _cfg, gateway, client = console_gateway(tmp_path, broker.port, devs)
    yield devs, gateway, client
    client.close()
    gateway.kill()


def test_metrics_count_what_the_fleet_sent(
    console: tuple[list[Dev], GatewayProcess, ConsoleClient], broker: Mosquitto
) -> None:
    devs, _gateway, client = console
    before = scrape(client)
    assert value(before, "signet_records_stored_total") == 0
    assert value(before, "signet_records_refused_total", reason="bad_signature") == 0
    mqtt = Mqtt(broker.port)
    try:
        a, b = devs
        genuine = {d.kid: d.chain(8) for d in devs}
        for d in devs:
            mqtt.publish_all([(d.topic, r) for r in genuine[d.kid]])
        mqtt.wait_acks({d.kid: 8 for d in devs})
        mqtt.publish_all(
            [(a.topic, adversary.forged(a.make("rev", advance=False))) for _ in range(3)]
            + [(b.topic, genuine[b.kid][0]), (b.topic, genuine[b.kid][1])]  # duplicates
            + [(a.topic, a.make("rev", n=2, fields={"am": 7}, advance=False))]  # equivocation
            + [("signet/v1/nope/rec", b"\x00")]
        )
        wait_until(
            lambda: value(scrape(client), "signet_records_received_total") == 16 + 3 + 2 + 1 + 1,
            30,
            "every message decided",
        )
    finally:
        mqtt.close()
    after = scrape(client)
    expected = {
        "signet_messages_received_total": 23,
        "signet_records_stored_total": 16,
        "signet_records_duplicate_total": 2,
        "signet_records_equivocation_total": 1,
        "signet_backlog_messages": 0,
        "signet_broker_connected": 1,
        "signet_ready": 1,
    }
    assert {name: value(after, name) for name in expected} == expected
    refused = {s.labels["reason"]: s.value for s in after["signet_records_refused_total"]}
    assert {r: c for r, c in refused.items() if c} == {"bad_signature": 3, "bad_topic": 1}
    assert {"unknown_key", "revoked", "malformed"} <= set(refused)  # known reasons start at 0
    commits = value(after, "signet_commits_total")
    assert commits >= 2
    for histogram in ("signet_commit_seconds", "signet_ack_latency_seconds"):
        assert value(after, f"{histogram}_count") == commits
        assert value(after, f"{histogram}_bucket", le="+Inf") == commits
        assert 0 < value(after, f"{histogram}_sum") < 60 * commits
    assert value(after, "signet_verify_chunk_seconds_count") >= 1
    # The log's work (on by default): the catch-up at start, then the appends of each commit
    # that stored records (not those of duplicates or refusals alone), and their CPU.
    assert 2 <= value(after, "signet_log_seconds_count") <= commits + 1
    log_cpu = value(after, "signet_log_cpu_seconds_total")
    assert 0 < log_cpu < value(after, "signet_commit_seconds_sum")
    ages = {s.labels["device"]: s.value for s in after["signet_device_last_seen_age_seconds"]}
    assert set(ages) == {a.kid, b.kid} and all(0 <= age < 60 for age in ages.values())
    assert value(after, "signet_devices", status="active") == 2
    assert value(after, "signet_acks_published_total") >= 2
    # Every metric the reference documents is exposed, and nothing else of ours.
    ours = {
        n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for n in after
        if n.startswith("signet_")
    }
    assert ours == set(METRICS)


def test_readyz_follows_the_broker(
    console: tuple[list[Dev], GatewayProcess, ConsoleClient], broker: Mosquitto
) -> None:
    _devs, _gateway, client = console
    assert client.get("/readyz", token=None).status_code == 200
    broker.stop()

    def not_ready() -> bool:
        response = client.get("/readyz", token=None)
        return response.status_code == 503 and any(
            p.startswith("broker not connected") for p in response.json()["problems"]
        )

    wait_until(not_ready, 30, "/readyz 503 with the broker stopped")
    assert client.get("/healthz", token=None).status_code == 200  # the process is still up
    assert value(scrape(client), "signet_broker_connected") == 0
    assert value(scrape(client), "signet_ready") == 0
    broker.start()
    wait_until(
        lambda: client.get("/readyz", token=None).status_code == 200,
        40,
        "/readyz 200 after the broker came back",
    )
    assert client.get("/readyz", token=None).json() == {"ready": True, "problems": []}
    assert value(scrape(client), "signet_broker_connected") == 1


def test_metrics_can_be_opened_to_a_local_prometheus(tmp_path: Path, broker: Mosquitto) -> None:
    _cfg, gateway, client = console_gateway(
        tmp_path, broker.port, [Dev(0)], http={"metrics_token": False}
    )
    try:
        assert client.get("/metrics", token=None).status_code == 200
        assert client.get("/api/v1/fleet", token=None).status_code == 401  # the API still asks
    finally:
        client.close()
        gateway.kill()
