"""`signet export peaq`: keccak256, event shape, trust levels, uptime windows.

The main fixture stores real signed records through the gateway's own path
(Verifier -> Sequencer -> Aggregator.on_stored in one transaction), so each
dataHash is checked against the exact bytes a device signed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_aggregate import DAY_MS, T0, Db, rec

from kit.independent_signer import make_key, make_record
from signet_gateway.ingest.sequencer import Findings, Sequencer
from signet_gateway.log.merkle import leaf_hash
from signet_gateway.log.note import Signer
from signet_gateway.log.verification import verify_inclusion
from signet_gateway.mcr.aggregate import Aggregator, day_of
from signet_gateway.mcr.peaq import (
    EVENT_ACTIVITY,
    EVENT_REVENUE,
    data_hash,
    decode_metadata,
    export_events,
    keccak256,
    trust_level,
)
from signet_gateway.mcr.report import Period
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_gateway.trust import VerifiedEvidence
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier
from signet_tools.cli import main as cli

EVENT_KEYS = {
    "machineId",
    "eventType",
    "value",
    "currency",
    "timestamp",
    "dataHash",
    "trustLevel",
    "sourceChainId",
    "sourceTxHash",
    "metadata",
}


def test_keccak256_published_vectors() -> None:
    # Ethereum's keccak256 (not FIPS SHA3-256, whose padding differs).
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()
    assert data_hash(b"") == "0x" + keccak256(b"").hex()


def test_trust_level_comes_from_enrollment_only() -> None:
    assert trust_level("hardware", None, False) == 2
    assert trust_level("software", None, False) == 0
    assert trust_level("hardware", 123, False) == 0  # revoked
    assert trust_level("hardware", None, True) == 0  # equivocated: the key may be copied


class Signed:
    """A real device: signed records, stored through Verifier and Sequencer."""

    def __init__(self, where: Path | str, tier: str = "hardware", seed: int = 7) -> None:
        self.store = Store.create(where)
        self.agg = Aggregator(self.store.conn)
        self.key = make_key(seed=seed)
        public = DevicePublicKey.from_sec1(self.key.compressed, "p256")
        evidence = VerifiedEvidence("se-chain", {}, b"cert") if tier == "hardware" else None
        self.store.enroll(public, tier, evidence=evidence)
        self.kid = public.device_id
        self.verifier = Verifier(self.store.active_keys())
        self.log = RecordLog(self.store.conn)  # as the gateway stores them: in the log
        self.seq = Sequencer(
            self.store.conn, Findings(), on_stored=self.agg.on_stored, record_log=self.log
        )
        self.prev = bytes(32)
        self.raw: dict[int, bytes] = {}

    def sign(self, n: int, kind: str, b: int, u: int, t: int | None, **fields: Any) -> bytes:
        body = {"v": 1, "n": n, "b": b, "u": u, "t": t, "p": self.prev, "k": kind, **fields}
        payload = cbor2.dumps(body, canonical=True)
        self.prev = hashlib.sha256(payload).digest()
        raw = make_record(self.key, payload)
        self.raw[n] = raw
        return raw

    def store_all(self, raws: list[bytes], received_ms: int) -> None:
        with self.store.transaction():
            for raw in raws:
                self.seq.apply(self.verifier.verify(raw), received_ms, day_of(received_ms))
            self.seq.flush()
        self.seq.committed()


@pytest.fixture
def device(store_at: Path | str) -> Signed:
    d = Signed(store_at)
    boot = {"rc": "power_on", "fw": "0.1.0", "ls": 0}
    raws = [d.sign(1, "boot", 1, 0, T0, **boot)]
    for i in range(1, 6):  # 5 minutes up
        raws.append(d.sign(1 + i, "hb", 1, i * 60_000, T0 + i * 60_000, iv=60_000, st="ok"))
    raws.append(d.sign(7, "rev", 1, 330_000, T0 + 330_000, am=250, cur="EUR", src="pulse"))
    raws.append(d.sign(8, "rev", 1, 331_000, T0 + 331_000, am=-50, cur="EUR", src="pulse"))
    # Two heartbeats missing (device hung), then two more minutes up.
    raws.append(d.sign(9, "hb", 1, 480_000, T0 + 480_000, iv=60_000, st="ok"))
    raws.append(d.sign(10, "hb", 1, 540_000, T0 + 540_000, iv=60_000, st="ok"))
    raws.append(d.sign(11, "hb", 1, 600_000, T0 + 600_000, iv=60_000, st="degraded"))
    d.store_all(raws, T0 + 700_000)
    return d


def test_export_shape_values_and_hashes(device: Signed) -> None:
    out = export_events(device.store.conn)
    assert (out.revenue_events, out.activity_events) == (1, 2)
    assert out.refunds_skipped == [(device.kid, 8)]
    events = out.events
    assert all(set(e) == EVENT_KEYS for e in events)
    assert all(e["machineId"] == "0x" + device.kid for e in events)
    assert all(e["trustLevel"] == 2 and e["sourceChainId"] == 0 for e in events)
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)

    first, rev, second = events
    assert rev["eventType"] == EVENT_REVENUE
    assert (rev["value"], rev["currency"]) == (250, "EUR")
    assert rev["timestamp"] == (T0 + 330_000) // 1000  # seconds
    assert rev["dataHash"] == "0x" + keccak256(device.raw[7]).hex()
    assert decode_metadata(rev["metadata"]) == {
        "device": device.kid,
        "n": 7,
        "kind": "rev",
        "b": 1,
        "time": "record_t",
        "log_index": 6,  # the seventh record stored
        "checkpoint": None,  # none signed yet
    }

    assert (first["eventType"], first["currency"], first["value"]) == (EVENT_ACTIVITY, "", 300)
    assert first["timestamp"] == (T0 + 300_000) // 1000
    meta = decode_metadata(first["metadata"])
    assert (meta["first_n"], meta["last_n"], meta["records"]) == (1, 6, 6)
    assert meta["up_ms"] == 300_000
    window = b"".join(device.raw[n] for n in range(1, 7))  # a CBOR sequence of the records
    assert first["dataHash"] == data_hash(window)

    # 480 s after 300 s is 180 s > 66 s: down. The next window starts at record 9.
    meta2 = decode_metadata(second["metadata"])
    assert (meta2["first_n"], meta2["last_n"], second["value"]) == (9, 11, 120)
    assert second["dataHash"] == data_hash(device.raw[9] + device.raw[10] + device.raw[11])


def test_events_lead_to_the_first_checkpoint_that_includes_their_records(device: Signed) -> None:
    signer = Signer("gw.test/signet", Ed25519PrivateKey.generate())
    with device.store.transaction():
        device.log.issue_checkpoint(signer)  # size 11: every record so far
    more = [device.sign(12, "rev", 1, 660_000, T0 + 660_000, am=5, cur="EUR", src="pulse")]
    device.store_all(more, T0 + 800_000)
    with device.store.transaction():
        device.log.issue_checkpoint(signer)  # size 12
    first, rev, second, late_rev = export_events(device.store.conn).events
    metas = [decode_metadata(e["metadata"]) for e in (first, rev, second, late_rev)]
    assert [(m.get("log_first"), m.get("log_last"), m.get("log_index")) for m in metas] == [
        (0, 5, None),
        (None, None, 6),
        (8, 10, None),
        (None, None, 11),
    ]
    assert [m["checkpoint"] for m in metas] == [11, 11, 11, 12]
    # The index is the record's leaf: the log's inclusion proof for it checks.
    proof = device.log.inclusion_proof(11, 12)
    verify_inclusion(leaf_hash(device.raw[12]), 11, 12, proof, device.log.tree.root(12))


def test_software_key_exports_trust_level_zero(new_store: Callable[[str], Path | str]) -> None:
    d = Signed(new_store("soft.db"), tier="software", seed=8)
    d.store_all([d.sign(1, "rev", 1, 10, T0 + 10, am=100, cur="USD", src="uart")], T0 + 1000)
    (event,) = export_events(d.store.conn).events
    assert event["trustLevel"] == 0 and event["value"] == 100


def test_activity_windows_split_at_utc_midnight(db: Db) -> None:
    kid = db.enroll(tier="hardware")
    start = T0 - 120_000
    db.put(rec(kid, 1, "boot", u=0, t=start))
    for i in range(1, 5):  # heartbeats at 23:59, 00:00, 00:01, 00:02
        db.put(rec(kid, 1 + i, "hb", u=i * 60_000, t=start + i * 60_000))
    events = export_events(db.conn, as_of_ms=T0 + DAY_MS).events
    metas = [decode_metadata(e["metadata"]) for e in events]
    assert [(m["first_n"], m["last_n"], m["up_ms"]) for m in metas] == [
        (1, 2, 60_000),
        (2, 5, 180_000),
    ]
    # A period covering only the second day keeps only its window, whole.
    only = export_events(
        db.conn, period=Period.parse("2026-01-01", "2026-01-01"), as_of_ms=T0 + DAY_MS
    ).events
    assert [decode_metadata(e["metadata"])["first_n"] for e in only] == [2]


def test_placement_by_receive_time_is_named_in_metadata(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=None, received_ms=T0 + 5_000))
    db.put(rec(kid, 2, "rev", u=1_000, t=None, am=7, cur="EUR", received_ms=T0 + 6_000))
    (event,) = export_events(db.conn, metadata_format="json").events
    assert event["metadata"]["time"] == "received"
    assert event["timestamp"] == (T0 + 6_000) // 1000


def test_cli_export_writes_a_json_array(
    device: Signed, store_at: Path | str, tmp_path: Path, capsys
) -> None:
    device.store.close()
    out = tmp_path / "events.json"
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({device.kid: 4242}))
    db = str(store_at)
    code = cli.main(["export", "peaq", "--db", db, "--out", str(out), "--machine-ids", str(ids)])
    assert code == 0
    events = json.loads(out.read_text())
    assert isinstance(events, list) and len(events) == 3
    assert {e["machineId"] for e in events} == {4242}
    err = capsys.readouterr().err
    assert "1 revenue and 2 activity events" in err
    assert "1 refund record left out" in err
    assert cli.main(["export", "peaq", "--db", db, "--device", "0000"]) == 2
    assert "no device '0000' is enrolled" in capsys.readouterr().err
