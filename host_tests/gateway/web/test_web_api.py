"""The console's JSON API against a real gateway process and a real Mosquitto: a small virtual
fleet sends genuine records, forgeries, a duplicate, an equivocation, a record of a stranger and
one on a bad topic; then every data endpoint is checked for its token, its contents, and the
report and peaq export against the `signet` commands. On both stores (the console reads
a PostgreSQL database through its own read-only connections as it reads a SQLite file)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

from kit.console import ConsoleClient, console_gateway, signet
from kit.gatewaykit import Dev, Mqtt
from signet_gateway.store.sqlite import Store
from signet_tools.fleet import adversary
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

GENUINE = 6  # records per device


_CONSOLE_DATABASES = itertools.count()


@dataclass
class Site:
    cfg: Path
    db: Path | str  # a SQLite file, or a PostgreSQL URL
    gateway: GatewayProcess
    client: ConsoleClient
    devs: list[Dev]
    stranger: Dev
    sent: dict[str, int]  # what was sent, by outcome


def _metric(client: ConsoleClient, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return -1.0


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("console")
    db: Path | str = tmp / "gateway.db"
    if request.param == "postgresql":
        db = request.getfixturevalue("pg_cluster").new_database(
            f"console{next(_CONSOLE_DATABASES)}"
        )
    broker = Mosquitto(tmp / "broker").start()
    devs = [Dev(i) for i in range(3)]
    stranger = Dev(99)  # never enrolled
    cfg, gateway, client = console_gateway(tmp, broker.port, devs, db=db)
    with Store(db) as store:  # a name to resolve the device by
        store.conn.execute("UPDATE devices SET name = 'coffee-01' WHERE kid = ?", (devs[0].kid,))
    mqtt = Mqtt(broker.port)
    try:
        first: dict[str, bytes] = {}
        for d in devs:
            records = d.chain(GENUINE)
            first[d.kid] = records[0]
            mqtt.publish_all([(d.topic, r) for r in records])
        mqtt.wait_acks({d.kid: GENUINE for d in devs})
        a, b, _c = devs
        forged = [adversary.forged(a.make("rev", advance=False)) for _ in range(2)]
        twin = b.make("rev", n=3, fields={"am": 999}, advance=False)  # a second payload for n=3
        mqtt.publish_all(
            [(a.topic, f) for f in forged]
            + [(a.topic, first[a.kid]), (b.topic, twin)]
            + [(stranger.topic, stranger.make("hb")), ("signet/v1/not-a-device/rec", b"\xa0")]
        )
        sent = {
            "stored": 3 * GENUINE,
            "bad_signature": 2,
            "duplicates": 1,
            "equivocations": 1,
            "unknown_key": 1,
            "bad_topic": 1,
        }
        total = sum(sent.values())
        wait_until(
            lambda: _metric(client, "signet_records_received_total") == total,
            30,
            f"the gateway to decide on {total} records",
        )
        yield Site(cfg, db, gateway, client, devs, stranger, sent)
    finally:
        mqtt.close()
        client.close()
        gateway.kill()
        broker.stop()


def _data_paths(site: Site) -> list[str]:
    """Every endpoint of the OpenAPI document that needs a token, with its parameters filled."""
    doc = site.client.json("/openapi.json")
    paths = []
    for path, item in doc["paths"].items():
        if item["get"].get("security"):
            paths.append(path.replace("{device}", site.devs[0].kid))
    return paths


def test_no_token_no_data_on_every_data_endpoint(site: Site) -> None:
    paths = _data_paths(site)
    assert {p.split("/")[-1] for p in paths} >= {
        "fleet", "records", "refusals", "report", "peaq", "metrics", site.devs[0].kid,
    }  # fmt: skip
    for path in paths:
        for token in (None, "signet_not-a-token", "x" * 300):
            response = site.client.get(path, token=token)
            assert response.status_code == 401, (path, token, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert site.devs[0].kid not in response.text
        # Another scheme with the right token is no bearer token either.
        basic = site.client.http.get(path, headers={"Authorization": f"Basic {site.client.token}"})
        assert basic.status_code == 401
        assert site.client.get(path).status_code == 200, path


def test_a_revoked_token_is_refused_from_the_next_request(site: Site) -> None:
    token = signet("token", "create", "--name", "revoke-me", "--config", str(site.cfg))
    token_text = token.stdout.strip()
    assert site.client.get("/api/v1/fleet", token=token_text).status_code == 200
    # The database keeps the hash, never the token.
    with Store(site.db, readonly=True) as store:
        kept = store.conn.execute("SELECT name, sha256 FROM api_tokens").fetchall()
    assert kept and all(token_text.encode() not in bytes(digest) for _, digest in kept)
    if isinstance(site.db, Path):
        assert token_text.encode() not in site.db.read_bytes()
    signet("token", "revoke", "revoke-me", "--config", str(site.cfg))
    for path in _data_paths(site):
        assert site.client.get(path, token=token_text).status_code == 401, path
    assert site.client.get("/api/v1/fleet").status_code == 200  # the other token still works
    listed = signet("token", "list", "--json", "--config", str(site.cfg)).stdout
    states = {r["name"]: r["status"] for r in map(json.loads, listed.splitlines())}
    assert states == {"tests": "active", "revoke-me": "revoked"}


def test_health_endpoints_need_no_token(site: Site) -> None:
    assert site.client.get("/healthz", token=None).json() == {"status": "ok"}
    ready = site.client.get("/readyz", token=None)
    assert ready.status_code == 200 and ready.json() == {"ready": True, "problems": []}


def test_fleet_and_device(site: Site) -> None:
    a, b, c = site.devs
    fleet = site.client.json("/api/v1/fleet")
    rows = {r["device"]: r for r in fleet["devices"]}
    assert set(rows) == {a.kid, b.kid, c.kid}  # the stranger is not enrolled
    for d in site.devs:
        row = rows[d.kid]
        assert (row["stored"], row["ack"], row["highest"], row["missing"]) == (GENUINE,) * 3 + (0,)
        assert row["status"] == "active" and row["tier"] == "software"
        assert row["last_received_ms"] > 0
    assert (rows[a.kid]["name"], rows[a.kid]["refused"]) == ("coffee-01", 2)
    assert rows[b.kid]["flagged"] and not rows[a.kid]["flagged"]
    assert fleet["refused_unattributed"] == 2  # the stranger and the bad topic
    # By name, by prefix, by id: the same device.
    by_name = site.client.json("/api/v1/devices/coffee-01")
    assert by_name == site.client.json(f"/api/v1/devices/{a.kid[:10]}")
    assert by_name["device"] == a.kid
    assert by_name["findings"] == {"refused:bad_signature": 2, "verified": GENUINE, "duplicate": 1}
    assert site.client.json(f"/api/v1/devices/{b.kid}")["equivocating_ns"] == [3]
    missing = site.client.get(f"/api/v1/devices/{site.stranger.kid}")
    assert missing.status_code == 404 and site.stranger.kid in missing.json()["detail"]


def test_online_is_each_device_s_last_word_on_its_status_topic(site: Site) -> None:
    a, b, c = site.devs
    port = tomllib.loads(site.cfg.read_text())["mqtt"]["port"]
    mqtt = Mqtt(port, "status-words")
    try:
        for topic, word in (
            (f"signet/v1/{a.kid}/status", b"online"),
            (f"signet/v1/{b.kid}/status", b"offline"),
            (f"signet/v1/{c.kid}/status", b"maybe"),  # not a word of the protocol: ignored
            ("signet/v1/not-a-device/status", b"online"),  # not a device: ignored
        ):
            mqtt.client.publish(topic, word, qos=1, retain=True).wait_for_publish(10)

        def words() -> dict[str, object]:
            rows = site.client.json("/api/v1/fleet")["devices"]
            return {r["device"]: r["online"] for r in rows}

        wait_until(lambda: words() == {a.kid: True, b.kid: False, c.kid: None}, 20,
                   "the fleet to show a online, b offline, c unheard")  # fmt: skip
        mqtt.client.publish(f"signet/v1/{a.kid}/status", b"offline", qos=1, retain=True)
        wait_until(lambda: words()[a.kid] is False, 20, "a's offline to reach the fleet")
        row = site.client.json(f"/api/v1/devices/{a.kid}")
        assert row["online"] is False and row["status_ms"] > 0
    finally:
        for d in (a, b, c):  # retained words would outlive the test in the module's broker
            mqtt.client.publish(f"signet/v1/{d.kid}/status", b"", qos=1, retain=True)
        mqtt.close()


def test_records_of_a_device_with_verdicts_and_raw_bytes(site: Site) -> None:
    a = site.devs[0]
    page = site.client.json(f"/api/v1/devices/{a.kid}/records", limit=4)
    assert [r["n"] for r in page["stored"]] == [1, 2, 3, 4] and page["next_after_n"] == 4
    rest = site.client.json(f"/api/v1/devices/{a.kid}/records", after_n=4, limit=4)
    assert [r["n"] for r in rest["stored"]] == [5, 6] and rest["next_after_n"] is None
    with Store(site.db, readonly=True) as store:
        for r in page["stored"] + rest["stored"]:
            stored = store.record(a.kid, r["n"])
            assert stored is not None
            assert r["verdict"] == "stored" and bytes.fromhex(r["raw_hex"]) == stored.raw
            assert bytes.fromhex(r["payload_hex"]) == a.payloads[r["n"]]
            assert r["fields"]["n"] == r["n"] and r["fields"]["k"] == r["kind"]
    rev = next(r for r in page["stored"] if r["kind"] == "rev")
    assert (rev["fields"]["am"], rev["fields"]["cur"]) == (250, "EUR")
    refused = page["refused"]
    assert [r["reason"] for r in refused] == ["bad_signature", "bad_signature"]
    for r in refused:
        assert r["verdict"] == "refused" and r["topic"] == a.topic
        assert "signature does not verify" in r["reason_text"]
        assert r["detail"] and len(bytes.fromhex(r["raw_hex"])) == r["size"]


def test_refusals_by_reason_across_the_fleet(site: Site) -> None:
    result = site.client.json("/api/v1/refusals")
    counts = {r["reason"]: r["count"] for r in result["by_reason"]}
    assert counts == {"bad_signature": 2, "unknown_key": 1, "bad_topic": 1}
    assert all(r["reason_text"] for r in result["by_reason"])
    topics = {(i["reason"], i["topic"]) for i in result["items"]}
    assert topics == {
        ("bad_signature", site.devs[0].topic),
        ("unknown_key", site.stranger.topic),
        ("bad_topic", "signet/v1/not-a-device/rec"),
    }
    assert all(i["received_ms"] > 0 and i["received"].endswith("Z") for i in result["items"])
    only = site.client.json("/api/v1/refusals", reason="unknown_key")["items"]
    assert [i["topic"] for i in only] == [site.stranger.topic]
    newest, *older = result["items"]
    page = site.client.json("/api/v1/refusals", before_id=newest["id"])
    assert page["items"] == older


def test_report_equals_signet_report(site: Site) -> None:
    cases = [
        {},
        {"device": site.devs[0].kid},
        {"device": "coffee-01", "from": "2023-11-14", "to": "2023-11-15"},
    ]
    for params in cases:
        argv = [x for k, v in params.items() for x in (f"--{k}", v)]
        expected = signet("report", "--format", "json", "--config", str(site.cfg), *argv).stdout
        response = site.client.get("/api/v1/report", **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.text == expected, params
    bad = site.client.get("/api/v1/report", **{"from": "2024-02-02", "to": "2024-01-01"})
    assert bad.status_code == 400 and "after" in bad.json()["detail"]
    unknown = site.client.get("/api/v1/report", device="nobody")
    assert unknown.status_code == 404


def test_peaq_export_equals_signet_export_peaq(site: Site) -> None:
    for params in ({}, {"device": site.devs[1].kid}, {"metadata": "json"}):
        argv = [x for k, v in params.items() for x in (f"--{k}", v)]
        expected = signet("export", "peaq", "--config", str(site.cfg), *argv).stdout
        response = site.client.get("/api/v1/export/peaq", **params)
        assert response.status_code == 200, response.text
        assert response.text == expected, params
        assert json.loads(response.text)  # events were exported


def test_openapi_document_describes_the_api(site: Site) -> None:
    doc = site.client.json("/openapi.json")
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert set(doc["paths"]) == {
        "/healthz", "/readyz", "/metrics", "/api/v1/fleet", "/api/v1/devices/{device}",
        "/api/v1/devices/{device}/records", "/api/v1/refusals", "/api/v1/report",
        "/api/v1/export/peaq", "/api/v1/devices/{device}/yield",
        "/api/v1/report/summary",
    }  # fmt: skip
    assert site.client.get("/docs", token=None).status_code == 404  # no CDN-backed page
