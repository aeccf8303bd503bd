"""Audit bundles end to end in one process: a real gateway database (the gateway's own
write path), `audit export`'s bundle, and `audit verify`'s verdict on it genuine and
tampered: any byte of a record, proof, checkpoint or report flipped, records removed,
repeated or reordered, a figure altered and re-signed, split views."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

from kit.audit_site import Site, make_site
from kit.merkle_reference import mth, path
from signet_gateway.audit import bundle as bundle_format
from signet_gateway.audit import verify as audit_verify
from signet_gateway.audit.bundle import Bundle, BundleRecord, ConsistencyEntry
from signet_gateway.audit.export import export_bundle
from signet_gateway.audit.proofs import TreeLevels
from signet_gateway.audit.signed_report import open_report, sign_report
from signet_gateway.audit.verify import Outcome, verify_bundle
from signet_gateway.log.checkpoint import Checkpoint, parse
from signet_gateway.log.nodes import MemoryNodeStore
from signet_gateway.log.note import sign, split
from signet_gateway.log.tree import MerkleTree
from signet_gateway.mcr.report import build_report
from signet_gateway.store.sqlite import Store


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("site"), devices=2, hours=60)


@pytest.fixture(scope="module")
def genuine(site: Site) -> Bundle:
    with Store(site.db) as store:
        return export_bundle(
            store.conn,
            site.signer,
            device=site.devices[0].kid,
            max_future_skew_ms=300_000,
            consistency_all=True,
        ).bundle


def _verify(site: Site, bundle: Bundle | bytes, **kw: Any) -> Outcome:
    data = bundle if isinstance(bundle, bytes) else bundle_format.encode(bundle)
    return verify_bundle(data, site.verifier, **kw)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_a_genuine_bundle_verifies_and_its_report_is_signet_reports(
    site: Site, genuine: Bundle
) -> None:
    outcome = _verify(site, genuine)
    assert outcome.ok, outcome.failure
    assert outcome.passed == [
        "bundle", "checkpoint", "keys", "report", "records", "receipts", "consistency",
        "checkpoints", "figures",
    ]  # fmt: skip
    assert outcome.records == len(genuine.records) > 70 and outcome.consistency == 1
    content = open_report(genuine.report, site.verifier)
    with Store(site.db, readonly=True) as store:
        live = build_report(store.conn, device=site.devices[0].kid, missing=store.missing)
    assert json.loads(json.dumps(live)) == content["report"]
    figures = content["report"]["devices"][0]["integrity"]
    # The awkward cases are in it: what the replay has to get right.
    assert figures["late"] == 1 and figures["missing"] == 1 and figures["duplicates"] == 1
    assert figures["future_time"] == 1


def test_the_verifier_key_may_be_the_pem_public_key_or_must_be_this_logs(
    site: Site, genuine: Bundle, tmp_path: Path
) -> None:
    data = bundle_format.encode(genuine)
    assert verify_bundle(data, site.verifier.public_key).ok
    other = make_site(tmp_path, devices=1, hours=2)
    outcome = verify_bundle(data, other.verifier)
    assert outcome.failure is not None and outcome.failure.check == "checkpoint"
    assert "no signature from a known key" in outcome.failure.message


def test_flipping_bytes_of_records_and_proofs_names_the_record(site: Site, genuine: Bundle) -> None:
    rng = random.Random(12)
    for _ in range(60):
        number = rng.randrange(len(genuine.records))
        rec = genuine.records[number]
        field = rng.choice(("raw", "proof"))
        blob = getattr(rec, field)
        altered = rec._replace(**{field: _flip(blob, rng.randrange(len(blob)))})
        records = list(genuine.records)
        records[number] = altered
        outcome = _verify(site, dataclasses.replace(genuine, records=records))
        failure = outcome.failure
        assert failure is not None and failure.check == "record", (field, number, failure)
        assert failure.record is not None and failure.record["number"] == number
        assert failure.record["log_index"] == rec.log_index
        assert f"record #{number} (log index {rec.log_index}" in failure.message
        if field == "proof":
            assert "inclusion proof" in failure.message
            assert failure.record["device"] == site.devices[0].kid


def test_flipping_any_byte_of_the_checkpoint_or_the_report_is_detected(
    site: Site, genuine: Bundle
) -> None:
    for at in range(len(genuine.checkpoint)):
        tampered = dataclasses.replace(genuine, checkpoint=_flip(genuine.checkpoint, at))
        failure = _verify(site, tampered).failure
        assert failure is not None and failure.check == "checkpoint", (at, failure)
    for at in range(len(genuine.report)):
        tampered = dataclasses.replace(genuine, report=_flip(genuine.report, at))
        failure = _verify(site, tampered).failure
        assert failure is not None and failure.check == "report", (at, failure)


def test_flipping_bytes_of_the_file_itself_is_detected(site: Site, genuine: Bundle) -> None:
    data = bundle_format.encode(genuine)
    rng = random.Random(5)
    for at in [*range(40), *(rng.randrange(len(data)) for _ in range(150))]:
        assert not verify_bundle(_flip(data, at), site.verifier).ok, at
    outcome = verify_bundle(data + b"\x00", site.verifier)
    assert outcome.failure is not None and outcome.failure.check == "bundle"


def test_records_removed_repeated_or_reordered_are_detected(site: Site, genuine: Bundle) -> None:
    records = genuine.records
    cases = {
        "first removed": records[1:],
        "one removed": records[:10] + records[11:],
        "last removed": records[:-1],
        "one repeated": [*records[:5], records[4], *records[5:]],
        "two swapped": [*records[:3], records[4], records[3], *records[5:]],
    }
    for name, changed in cases.items():
        failure = _verify(site, dataclasses.replace(genuine, records=changed)).failure
        assert failure is not None, name
        if "removed" in name:
            assert failure.check in ("receipts", "record"), (name, failure)
        else:
            assert failure.check == "record" and "log order" in failure.message, (name, failure)
    # A receive time moved (the proofs still hold: the leaf is the record alone).
    moved = list(records)
    moved[7] = records[7]._replace(received_ms=records[7].received_ms + 1)
    failure = _verify(site, dataclasses.replace(genuine, records=moved)).failure
    assert failure is not None and failure.check == "receipts"


def _resigned(site: Site, bundle: Bundle, change: Any) -> Bundle:
    content = open_report(bundle.report, site.verifier)
    change(content)
    return dataclasses.replace(bundle, report=sign_report(site.signer, content).encode())


def test_an_altered_figure_in_a_genuinely_signed_report_is_named(
    site: Site, genuine: Bundle
) -> None:
    def more_revenue(content: dict[str, Any]) -> None:
        content["report"]["devices"][0]["revenue"]["currencies"][0]["amount"] += 100

    failure = _verify(site, _resigned(site, genuine, more_revenue)).failure
    assert failure is not None and failure.check == "figure"
    assert failure.figure is not None
    name = "report.devices[0].revenue.currencies[0].amount"
    assert failure.figure["name"] == name
    assert failure.figure["found"] == failure.figure["expected"] + 100
    assert name in failure.message

    def fewer_missing(content: dict[str, Any]) -> None:
        content["report"]["devices"][0]["integrity"]["missing"] = 0

    failure = _verify(site, _resigned(site, genuine, fewer_missing)).failure
    assert failure is not None and failure.figure is not None
    assert failure.figure == {
        "name": "report.devices[0].integrity.missing", "expected": 1, "found": 0,
    }  # fmt: skip

    def other_checkpoint(content: dict[str, Any]) -> None:
        content["checkpoint"]["size"] -= 1

    failure = _verify(site, _resigned(site, genuine, other_checkpoint)).failure
    assert failure is not None and failure.check == "report" and "bound to" in failure.message


def _checkpoint_note(site: Site, size: int, root: bytes) -> bytes:
    return sign(Checkpoint(site.signer.name, size, root).body(), site.signer).encode()


def test_split_views_are_detected_given_the_other_checkpoint(site: Site, genuine: Bundle) -> None:
    own = parse(split(genuine.checkpoint)[0])
    earlier = parse(split(genuine.consistency[0].checkpoint)[0])
    # Same size, another root: a split view.
    forged = _checkpoint_note(site, own.size, bytes(32))
    failure = _verify(site, genuine, checkpoints=[("theirs.note", forged)]).failure
    assert failure is not None and failure.check == "given"
    assert "split view" in failure.message and "theirs.note" in failure.message
    # The same checkpoint, and the earlier one the bundle's extends: consistent.
    fine = _verify(
        site, genuine, checkpoints=[("same", genuine.checkpoint),
                                    ("earlier", genuine.consistency[0].checkpoint)],
    )  # fmt: skip
    assert fine.ok and len(fine.compared) == 2
    # An earlier checkpoint the bundle's does not extend.
    forged = _checkpoint_note(site, earlier.size, bytes(32))
    failure = _verify(site, genuine, checkpoints=[("old", forged)]).failure
    assert failure is not None and "split view" in failure.message
    # An earlier one of a size the bundle has no proof from: say what to ask for.
    other = _checkpoint_note(site, earlier.size - 1, bytes(32))
    failure = _verify(site, genuine, checkpoints=[("older", other)]).failure
    assert failure is not None and f"--consistency-from {earlier.size - 1}" in failure.message
    # A later one: cannot be checked from this bundle.
    later = _checkpoint_note(site, own.size + 5, bytes(32))
    failure = _verify(site, genuine, checkpoints=[("later", later)]).failure
    assert failure is not None and "newer" in failure.message


def test_a_consistency_proof_that_does_not_extend_is_detected(site: Site, genuine: Bundle) -> None:
    entry = genuine.consistency[0]
    earlier = parse(split(entry.checkpoint)[0])
    bad = [ConsistencyEntry(entry.checkpoint, _flip(entry.proof, 3))]
    failure = _verify(site, dataclasses.replace(genuine, consistency=bad)).failure
    assert failure is not None and failure.check == "consistency"
    # A genuinely signed earlier checkpoint of another history: no proof makes it extend.
    forked = _checkpoint_note(site, earlier.size, bytes(32))
    failure = _verify(
        site, dataclasses.replace(genuine, consistency=[ConsistencyEntry(forked, entry.proof)])
    ).failure
    assert failure is not None and failure.check == "consistency"
    assert f"does not extend the one of size {earlier.size}" in failure.message


def test_workers_locate_the_same_record(
    site: Site, genuine: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_verify, "CHUNK", 8)
    monkeypatch.setattr(audit_verify, "PARALLEL_MIN", 16)
    assert _verify(site, genuine, jobs=2).ok
    records = list(genuine.records)
    records[41] = records[41]._replace(raw=_flip(records[41].raw, 30))
    failure = _verify(site, dataclasses.replace(genuine, records=records), jobs=2).failure
    assert failure is not None and failure.record is not None
    assert failure.record["number"] == 41


def test_progress_is_reported_per_chunk(site: Site, genuine: Bundle) -> None:
    seen: list[tuple[int, int]] = []
    assert _verify(site, genuine, progress=lambda done, total: seen.append((done, total))).ok
    assert seen[-1] == (len(genuine.records), len(genuine.records))


@pytest.mark.parametrize("size", [*range(1, 40), 63, 64, 65, 100, 129])
def test_tree_levels_give_rfc9162_proofs(size: int) -> None:
    entries = [f"entry {i}".encode() for i in range(size)]
    nodes = MemoryNodeStore(level_stride=3)
    from signet_gateway.log.merkle import leaf_hash

    MerkleTree(nodes).append_many(leaf_hash(e) for e in entries)
    levels = TreeLevels(nodes, size)
    assert levels.root() == mth(entries)
    for index in range(size):
        assert levels.inclusion_proof(index) == path(index, entries)


def test_a_bundle_record_is_exactly_the_stored_record_and_its_log_index(
    site: Site, genuine: Bundle
) -> None:
    with Store(site.db, readonly=True) as store:
        rows = store.conn.execute(
            "SELECT log_index, received_ms, raw FROM records WHERE kid = ? ORDER BY log_index",
            (site.devices[0].kid,),
        ).fetchall()
    assert [(r.log_index, r.received_ms, r.raw) for r in genuine.records] == [
        (i, ms, bytes(raw)) for i, ms, raw in rows
    ]
    content = open_report(genuine.report, site.verifier)
    cp = parse(split(genuine.checkpoint)[0])
    assert content["checkpoint"] == {"size": cp.size, "root": base64.b64encode(cp.root).decode()}
    assert isinstance(genuine.records[0], BundleRecord)


def test_the_inclusion_checker_refuses_what_the_rfc_check_refuses() -> None:
    from signet_gateway.audit.inclusion import InclusionChecker
    from signet_gateway.log.merkle import leaf_hash
    from signet_gateway.log.verification import ProofError

    rng = random.Random(9)
    entries = [rng.randbytes(20) for _ in range(300)]
    leaves = [leaf_hash(e) for e in entries]
    checker = InclusionChecker(300, mth(entries))
    order = list(range(300))
    rng.shuffle(order)
    for index in order:  # every genuine proof passes, in any order, cache or not
        checker.check(leaves[index], index, b"".join(path(index, entries)))
    for _ in range(400):  # then every altered one fails, however much of it is cached
        index = rng.randrange(300)
        proof = path(index, entries)
        kind = rng.choice(("flip", "drop", "add", "index", "leaf"))
        leaf, at = leaves[index], index
        if kind == "flip":
            k = rng.randrange(len(proof))
            proof[k] = _flip(proof[k], rng.randrange(32))
        elif kind == "drop":
            proof.pop(rng.randrange(len(proof)))
        elif kind == "add":
            proof.insert(rng.randrange(len(proof) + 1), rng.randbytes(32))
        elif kind == "index":
            at = (index + rng.randrange(1, 300)) % 300
        else:
            leaf = _flip(leaf, rng.randrange(32))
        with pytest.raises(ProofError):
            checker.check(leaf, at, b"".join(proof))
    checker.check(leaves[5], 5, b"".join(path(5, entries)))


def test_the_inclusion_checker_refuses_altered_proofs_that_meet_its_known_nodes() -> None:
    """In log order (a bundle's order) every proof meets the nodes the previous ones reached:
    an altered proof of the next leaf is refused there, and the genuine one then passes."""
    from signet_gateway.audit.inclusion import InclusionChecker
    from signet_gateway.log.merkle import leaf_hash
    from signet_gateway.log.verification import ProofError

    rng = random.Random(12)
    entries = [rng.randbytes(20) for _ in range(259)]
    leaves = [leaf_hash(e) for e in entries]
    checker = InclusionChecker(len(entries), mth(entries))
    for index in range(len(entries)):
        proof = path(index, entries)
        if proof:
            altered = list(proof)
            k = rng.randrange(len(altered))  # anywhere: below, at or above the known node
            altered[k] = _flip(altered[k], rng.randrange(32))
            with pytest.raises(ProofError):
                checker.check(leaves[index], index, b"".join(altered))
            with pytest.raises(ProofError):  # one hash missing at the end
                checker.check(leaves[index], index, b"".join(proof[:-1]))
        checker.check(leaves[index], index, b"".join(proof))


def test_keys_and_report_fields_the_gateway_would_not_have_are_refused_in_one_line(
    site: Site, genuine: Bundle
) -> None:
    key = genuine.keys[0]
    cases = {
        "hardware without evidence": [dataclasses.replace(key, tier="hardware")],
        "twice": [key, key],
        "another machine": [key, dataclasses.replace(key, machine="ab" * 16)],
    }
    for name, keys in cases.items():
        failure = _verify(site, dataclasses.replace(genuine, keys=keys)).failure
        assert failure is not None and failure.check == "keys", (name, failure)

    def bad_period(content: dict[str, Any]) -> None:
        content["period"] = {"from": "2023-02-30", "to": None}

    failure = _verify(site, _resigned(site, genuine, bad_period)).failure
    assert failure is not None and failure.check == "report" and "period" in failure.message


def test_a_rotated_machine_verifies_with_both_keys_and_the_refusals_attested(
    tmp_path: Path,
) -> None:
    from kit.audit_site import HOUR, T0, Device

    site = make_site(tmp_path, devices=1, hours=6)
    old = site.devices[0]
    new = Device(50)
    last_n = old.n
    with Store(site.db) as store, store.transaction():
        store.add_device(new.key, "software", rotate_from=old.kid, last_n=last_n,
                         enrolled_ms=T0 + 7 * HOUR)  # fmt: skip
    gw = site.gateway()
    try:
        at = T0 + 8 * HOUR
        gw.deliver([
            (new.kid, new.sign("boot", 0, at, rc="power_on", fw="1.1", ls=0), at + 100),
            (old.kid, old.sign("hb", 9 * HOUR, at + 5, iv=HOUR, st="ok"), at + 200),  # rotated
            (new.kid, new.sign("rev", 1000, at + 1000, am=700, cur="EUR", src="pulse"), at + 1100),
            (new.kid, new.sign("hb", HOUR, at + HOUR, iv=HOUR, st="ok"), at + HOUR + 100),
        ])  # fmt: skip
    finally:
        gw.close()
    with Store(site.db) as store:
        bundle = export_bundle(
            store.conn, site.signer, device=new.kid, max_future_skew_ms=300_000
        ).bundle
        live = build_report(store.conn, device=new.kid, missing=store.missing)
    assert [k.kid for k in bundle.keys] == [old.kid, new.kid]
    assert any(f[2] == "refused:rotated" for f in bundle.findings)
    outcome = _verify(site, bundle)
    assert outcome.ok, outcome.failure
    signed = open_report(bundle.report, site.verifier)["report"]
    assert signed == json.loads(json.dumps(live))
    assert signed["devices"][0]["integrity"]["refused"] == {"rotated": 1}
    # Without the attested refusal, the recomputed figure no longer matches the signed one.
    trimmed = [f for f in bundle.findings if f[2] != "refused:rotated"]
    failure = _verify(site, dataclasses.replace(bundle, findings=trimmed)).failure
    assert failure is not None and failure.figure is not None
    assert failure.figure["name"] == "report.devices[0].integrity.refused.rotated"
