"""The gateway as a separate process behind a real Mosquitto: acks after commit, SIGKILL,
broker restart, and adversarial input; on both stores (new_store), but for the broker's
restart (the MQTT link's behaviour, whatever the store: SQLite only, to save the time)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, write_config
from signet import cbor
from signet_gateway.store.sqlite import Store, store_name
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until


def _setup(
    new_store: Callable[[str], Path | str],
    tmp_path: Path,
    broker: Mosquitto,
    devs: list[Dev],
    **sections,
) -> tuple[Path, Path | str]:
    db = new_store("gateway.db")
    with Store.create(db) as store:
        for d in devs:
            store.enroll(d.key, "software", name=f"dev{d.kid[:4]}")
    cfg = write_config(tmp_path / "gateway.toml", broker.port, db, **sections)
    return cfg, db


def _stored_ns(db: Path | str, kid: str) -> set[int]:
    with Store(db, readonly=True) as store:
        return {r.n for r in store.records(kid)}


@pytest.mark.timeout(90)
def test_acks_only_cover_committed_records(
    new_store, tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(i) for i in range(3)]
    cfg, db = _setup(new_store, tmp_path, broker, devs)
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    violations: list[str] = []
    checked = threading.Event()

    def on_ack(kid: str, n: int) -> None:
        # At the instant an ack arrives, every record it covers must already be committed.
        missing = set(range(1, n + 1)) - _stored_ns(db, kid)
        if missing:
            violations.append(f"{kid} ack {n} but {sorted(missing)[:5]} not committed")
        checked.set()

    client = Mqtt(broker.port)
    clients.append(client)
    client.on_ack = on_ack
    recs = {d.kid: d.chain(40) for d in devs}
    client.publish_all([(d.topic, r) for i in range(40) for d in devs for r in [recs[d.kid][i]]])
    client.wait_acks({d.kid: 40 for d in devs})
    assert checked.is_set() and not violations
    # The ack topic is retained: a device connecting later reads its ack at once.
    late = Mqtt(broker.port, "late-reader")
    clients.append(late)
    late.wait_acks({d.kid: 40 for d in devs}, 10)
    assert gw.stop() == 0
    log = gw.text()
    assert "stopped: 120 messages received, 120 records stored" in log
    assert f"database {store_name(db)}" in log
    with Store(db, readonly=True) as store:
        for d in devs:
            assert store.findings(d.kid) == {"verified": 40}


@pytest.mark.timeout(120)
def test_sigkill_loses_nothing_acked_and_counts_nothing_twice(
    new_store, tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(10 + i) for i in range(4)]
    cfg, db = _setup(new_store, tmp_path, broker, devs, ingest={"batch_max": 50, "batch_ms": 5})
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)
    per = 300
    recs = {d.kid: d.chain(per) for d in devs}
    half = per // 2
    first = [(d.topic, recs[d.kid][i]) for i in range(half) for d in devs]
    second = [(d.topic, recs[d.kid][i]) for i in range(half, per) for d in devs]
    publisher = threading.Thread(target=client.publish_all, args=(first,))
    publisher.start()
    # Kill -9 once some acks went out, while the first half may still be in flight; the
    # second half is published while the gateway is dead (the broker keeps its session).
    wait_until(lambda: sum(client.acks.values()) >= 50, 60, "first acks")
    gw.kill()
    acked_before = dict(client.acks)
    publisher.join(60)
    client.publish_all(second)
    for kid, n in acked_before.items():
        assert set(range(1, n + 1)) <= _stored_ns(db, kid), f"acked {n} but lost records"
    total_acked = sum(acked_before.values())
    assert total_acked < per * len(devs), "the kill came too late to test anything"

    gw2 = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw2)
    client.wait_acks({d.kid: per for d in devs}, 60)
    assert gw2.stop() == 0
    with Store(db, readonly=True) as store:
        for d in devs:
            assert store.record_count(d.kid) == per
            assert store.missing(d.kid) == 0 and store.ack(d.kid) == per
            f = store.findings(d.kid)
            # verified counts stored records: a redelivery after the kill is a duplicate.
            assert f["verified"] == per
            assert set(f) <= {"verified", "duplicate"}


@pytest.mark.timeout(90)
def test_broker_restart_is_survived(tmp_path: Path, broker: Mosquitto, procs) -> None:
    started, clients = procs
    dev = Dev(20)
    cfg, db = _setup(lambda name: tmp_path / name, tmp_path, broker, [dev])
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(10)])
    client.wait_acks({dev.kid: 10})
    broker.restart()
    gw.wait_log("disconnected from the broker", 20)
    wait_until(lambda: gw.text().count("subscribed to") >= 2, 30, "gateway resubscribed")
    wait_until(client.connected.is_set, 10, "client reconnect")
    client.publish_all([(dev.topic, r) for r in dev.chain(10)])
    client.wait_acks({dev.kid: 20}, 30)
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        assert store.record_count(dev.kid) == 20


@pytest.mark.timeout(120)
def test_adversarial_input_is_refused_counted_and_bounded(
    new_store, tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    good = [Dev(30 + i) for i in range(3)]
    victim = Dev(40)
    stranger = Dev(41)  # never enrolled
    cfg, db = _setup(new_store, tmp_path, broker, [*good, victim], quarantine={"max_rows": 40})
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)

    good_recs = {d.kid: d.chain(30) for d in good}
    victim_recs = victim.chain(5)
    client.publish_all([(victim.topic, r) for r in victim_recs])
    client.wait_acks({victim.kid: 5})
    forged = bytearray(victim.make("rev", advance=False))
    forged[40] ^= 0x01  # inside the signed payload
    link = hashlib.sha256(victim.payloads[2]).digest()
    equivocating = victim.make("rev", n=3, prev=link, advance=False, fields={"am": 1})
    big_record = b"\xd2" + b"\x00" * 1100
    big_batch = cbor.dumps([victim_recs[0]] * 400, capacity=100_000)
    assert len(big_batch) > 65536
    mixed_batch = cbor.dumps([victim_recs[1], b"\xd2junk"], capacity=4096)
    attacks = [
        (victim.topic, victim_recs[2]),  # replay: a duplicate
        (good[0].topic, victim_recs[3]),  # moved to another device's topic
        (victim.topic, bytes(forged)),  # forged signature
        (victim.topic, equivocating),  # same n, different signed payload
        (victim.topic, b"\x00garbage\xff"),  # garbage
        (victim.topic, b""),  # empty
        (victim.topic, big_record),  # > 1 KiB
        (victim.topic, big_batch),  # > 64 KiB
        (victim.topic, mixed_batch),  # one duplicate element, one malformed
        ("signet/v1/NOT-A-DEVICE/rec", victim_recs[0]),  # bad topic
    ]
    flood = [(stranger.topic, stranger.make("hb")) for _ in range(60)]  # unknown device
    items = []
    for i in range(30):
        items += [(d.topic, good_recs[d.kid][i]) for d in good]
        if i < len(attacks):
            items.append(attacks[i])
        items += flood[2 * i : 2 * i + 2]
    client.publish_all(items)
    client.wait_acks({d.kid: 30 for d in good}, 60)
    gw.wait_log("further unknown_key refusals are counted", 30)

    def counted() -> dict[str, int]:
        with Store(db, readonly=True) as store:
            return store.findings()

    expected = {
        "refused:unknown_key": 60,
        "refused:kid_mismatch": 1,
        "refused:bad_signature": 1,
        "refused:malformed": 3,
        "refused:too_large": 2,
        "refused:bad_topic": 1,
        "equivocation": 1,
        "duplicate": 2,
    }
    wait_until(lambda: all(counted().get(k) == v for k, v in expected.items()), 30,
               f"findings {expected}")  # fmt: skip
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        for d in good:  # unaffected
            assert store.record_count(d.kid) == 30 and store.ack(d.kid) == 30
        # kid_mismatch is counted against the topic's (enrolled) device
        assert store.findings(good[0].kid) == {"verified": 30, "refused:kid_mismatch": 1}
        assert store.findings(good[1].kid) == {"verified": 30}
        assert store.record_count(victim.kid) == 5
        assert store.device(victim.kid).flagged
        assert len(store.evidence(victim.kid)) == 1
        assert store.quarantine_count() <= 40
        reasons = {q.reason for q in store.quarantine(40)}
        assert "unknown_key" in reasons
        # Unknown senders are counted under '' so random device ids cannot grow the table.
        assert store.findings("")["refused:unknown_key"] == 60
        assert store.findings("")["refused:bad_topic"] == 1
        assert store.record_count(stranger.kid) == 0
        assert store.device(stranger.kid) is None  # never auto-enrolled


@pytest.mark.timeout(90)
def test_enroll_and_revoke_take_effect_while_running(
    new_store, tmp_path: Path, broker: Mosquitto, procs
) -> None:
    from signet_tools.cli.main import main

    started, clients = procs
    known, late = Dev(60), Dev(61)
    cfg, db = _setup(new_store, tmp_path, broker, [known])
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish(late.topic, late.make("boot"))
    gw.wait_log("refused unknown_key", 20)
    pem = tmp_path / "late.pem"
    pem.write_bytes(late.pem())
    assert main(["enroll", "--pubkey", str(pem), "--tier", "software", "--config", str(cfg)]) == 0
    gw.wait_log(f"device {late.kid} enrolled", 20)
    client.publish_all([(late.topic, late.make("boot", n=1)), (known.topic, known.make("hb"))])
    client.wait_acks({late.kid: 1, known.kid: 1})
    assert main(["revoke", known.kid, "--config", str(cfg)]) == 0
    gw.wait_log(f"device {known.kid} revoked", 20)
    client.publish(known.topic, known.make("hb"))
    gw.wait_log(f"refused revoked on {known.topic}: device {known.kid} is revoked since", 20)
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        assert store.record_count(known.kid) == 1
        assert store.findings(known.kid)["refused:revoked"] == 1
