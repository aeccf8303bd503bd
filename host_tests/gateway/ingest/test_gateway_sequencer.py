"""Sequence rules (PROTOCOL 6.4) and ack(K) (6.5), applied through the real BatchWriter
on a real store (SQLite, then PostgreSQL: new_store), with records signed by the firmware
code."""

from __future__ import annotations

import hashlib
import itertools
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.gatewaykit import T0, Dev
from signet_gateway.ingest.intake import verify_message
from signet_gateway.ingest.writer import BatchWriter, Message
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.verifier import Verifier

NOW = T0 + 10_000_000
_EXAMPLES = itertools.count()  # a new store for each of hypothesis's examples


class Harness:
    def __init__(self, path: Path | str, *devs: Dev, skew_s: int = 300) -> None:
        self.store = Store.create(path)
        for d in devs:
            self.store.enroll(d.key, "software")
        self.verifier = Verifier(self.store.active_keys())
        self.writer = BatchWriter(
            self.store.conn,
            max_future_skew_ms=skew_s * 1000,
            quarantine_rows=100,
            quarantine_bytes=2048,
            known_device=lambda kid: True,
        )
        self.published: list[dict[str, int]] = []

    def feed(self, dev: Dev, *raws: bytes, received_ms: int = NOW, batch: bool = False):
        msgs = []
        for i, raw in enumerate(raws):
            m = Message(i + 1, 1, 1, dev.topic.encode(), raw, received_ms)
            verify_message(m, self.verifier)
            msgs.append(m)
        if batch:
            return [self.writer.commit([m]) for m in msgs]
        result = self.writer.commit(msgs)
        self.published.append(result.acks)
        return result

    def ack(self, dev: Dev) -> int:
        return self.store.ack(dev.kid)

    def findings(self, dev: Dev) -> dict[str, int]:
        return self.store.findings(dev.kid)


@pytest.fixture
def dev() -> Dev:
    return Dev(1)


@pytest.fixture
def h(new_store, dev: Dev) -> Harness:
    return Harness(new_store("g.db"), dev)


def test_in_order_records_are_stored_and_acked(h: Harness, dev: Dev) -> None:
    recs = dev.chain(5)
    result = h.feed(dev, *recs)
    assert result.stored == 5
    assert result.acks == {dev.kid: 5}
    assert h.ack(dev) == 5
    assert h.store.missing(dev.kid) == 0
    assert [r.n for r in h.store.records(dev.kid)] == [1, 2, 3, 4, 5]
    assert h.store.record(dev.kid, 3).raw == recs[2]  # exact bytes kept
    assert h.findings(dev) == {"verified": 5}
    assert h.store.chain_break_ns(dev.kid) == []


def test_duplicate_is_ignored_and_counted(h: Harness, dev: Dev) -> None:
    recs = dev.chain(3)
    h.feed(dev, *recs)
    result = h.feed(dev, recs[1], recs[1])
    assert result.stored == 0 and result.duplicates == 2
    assert h.store.record_count(dev.kid) == 3
    assert h.findings(dev) == {"verified": 3, "duplicate": 2}
    # The device resent acked records: it missed the ack, so the ack is republished.
    assert result.republish == {dev.kid}


def test_equivocation_keeps_stored_record_and_evidence_and_flags(h: Harness, dev: Dev) -> None:
    recs = dev.chain(3)
    h.feed(dev, *recs)
    prev = hashlib.sha256(dev.payloads[1]).digest()
    other = dev.make("rev", n=2, prev=prev, advance=False, fields={"am": 999})
    result = h.feed(dev, other, other)
    assert result.equivocations == 2 and result.stored == 0
    assert h.store.record(dev.kid, 2).raw == recs[1]
    evidence = h.store.evidence(dev.kid)
    assert [(n, raw) for n, _p, raw in evidence] == [(2, other)]
    assert h.store.device(dev.kid).flagged
    # Counted once: the second copy of the same conflicting record adds nothing.
    assert h.findings(dev)["equivocation"] == 1
    assert h.ack(dev) == 3


def test_gap_is_missing_until_filled_then_ack_jumps(h: Harness, dev: Dev) -> None:
    recs = dev.chain(6)
    h.feed(dev, recs[0], recs[1], recs[4], recs[5])
    assert h.ack(dev) == 2
    assert h.store.missing(dev.kid) == 2
    result = h.feed(dev, recs[3])
    assert h.store.missing(dev.kid) == 1 and h.ack(dev) == 2 and result.acks == {}
    result = h.feed(dev, recs[2])
    assert h.store.missing(dev.kid) == 0
    assert result.acks == {dev.kid: 6}
    f = h.findings(dev)
    assert f["late"] == 2 and f["verified"] == 6
    assert "chain_break" not in f
    late = {r.n for r in h.store.records(dev.kid) if r.late}
    assert late == {3, 4}


def test_boot_ls_declares_unused_numbers(h: Harness, dev: Dev) -> None:
    recs = dev.chain(3)  # 1..3 signed, then a restart after reserving up to 10
    boot = dev.boot(n=11, ls=3)
    after = dev.chain(2)  # 12, 13
    h.feed(dev, *recs, boot, *after)
    assert h.ack(dev) == 13
    assert h.store.missing(dev.kid) == 0
    assert h.store.unused_ranges(dev.kid) == [(4, 10)]
    assert h.store.chain_break_ns(dev.kid) == []


def test_boot_before_its_predecessor_still_links_and_acks(h: Harness, dev: Dev) -> None:
    recs = dev.chain(3)
    boot = dev.boot(n=8, ls=3)
    h.feed(dev, recs[0], boot)
    assert h.ack(dev) == 1 and h.store.missing(dev.kid) == 2  # 2 and 3 missing, 4..7 unused
    h.feed(dev, recs[2], recs[1])
    assert h.ack(dev) == 8 and h.store.missing(dev.kid) == 0
    assert h.store.chain_break_ns(dev.kid) == []


def test_lost_records_before_boot_are_missing(h: Harness, dev: Dev) -> None:
    recs = dev.chain(5)
    boot = dev.boot(n=9, ls=5)
    h.feed(dev, *recs[:3], boot)  # 4 and 5 never arrive
    assert h.store.missing(dev.kid) == 2
    assert h.ack(dev) == 3


def test_chain_break_is_counted_once_whatever_the_order(new_store) -> None:
    for order in ((0, 1, 2, 3), (3, 2, 1, 0), (0, 2, 3, 1)):
        dev = Dev(7)
        recs = dev.chain(2)
        bad = dev.make("hb", prev=bytes(range(32)))  # n=3 does not link to n=2
        recs += [bad, dev.make("hb")]
        h = Harness(new_store(f"g{''.join(map(str, order))}.db"), dev)
        for i in order:
            h.feed(dev, recs[i])
        assert h.store.chain_break_ns(dev.kid) == [3], order
        assert h.findings(dev)["chain_break"] == 1
        assert h.ack(dev) == 4


def test_genesis_rules(new_store) -> None:
    dev = Dev(8)
    h = Harness(new_store("g.db"), dev)
    first = dev.make("hb", prev=b"\x01" * 32)  # n = 1 with a non-zero p
    h.feed(dev, first)
    assert h.store.chain_break_ns(dev.kid) == [1]
    dev.make("hb", advance=True)  # n = 2, never delivered
    zero = dev.make("hb", prev=bytes(32))  # n = 3 claims to be first although 1 exists
    h.feed(dev, zero)
    assert h.store.chain_break_ns(dev.kid) == [1, 3]


def test_future_time_is_stored_and_marked(new_store, dev: Dev) -> None:
    h = Harness(new_store("g.db"), dev, skew_s=60)
    rec = dev.make("hb", t=NOW + 3_600_000)
    result = h.feed(dev, rec)
    assert result.stored == 1 and h.ack(dev) == 1
    assert h.store.record(dev.kid, 1).future
    assert h.findings(dev)["future_time"] == 1
    ok = dev.make("hb", t=NOW)
    h.feed(dev, ok)
    assert not h.store.record(dev.kid, 2).future


def test_refusals_are_quarantined_and_counted(h: Harness, dev: Dev) -> None:
    good = dev.make("hb")
    forged = bytearray(good)
    forged[-1] ^= 1
    result = h.feed(dev, bytes(forged), b"\xd2garbage", good)
    assert result.stored == 1
    assert result.refused == {"bad_signature": 1, "malformed": 1}
    rows = h.store.quarantine()
    assert {r.reason for r in rows} == {"bad_signature", "malformed"}
    assert h.findings(dev)["refused:bad_signature"] == 1


def test_internal_error_quarantines_one_message_and_keeps_the_rest(new_store) -> None:
    dev = Dev(9)
    store = Store.create(new_store("g.db"))
    store.enroll(dev.key, "software")
    calls = []

    def hook(rec) -> None:
        calls.append(rec.n)
        if rec.n == 2:
            raise RuntimeError("aggregation bug")

    writer = BatchWriter(store.conn, max_future_skew_ms=1, quarantine_rows=10,
                         quarantine_bytes=4096, on_stored=hook)  # fmt: skip
    verifier = Verifier(store.active_keys())
    msgs = []
    for i, raw in enumerate(dev.chain(3)):
        m = Message(i, 1, 1, dev.topic.encode(), raw, int(time.time() * 1000))
        verify_message(m, verifier)
        msgs.append(m)
    result = writer.commit(msgs)
    assert result.stored == 2
    assert [r.n for r in store.records(dev.kid)] == [1, 3]
    assert [q.reason for q in store.quarantine()] == ["internal_error"]
    assert store.missing(dev.kid) == 1 and store.ack(dev.kid) == 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_order_independence_and_monotonic_ack(new_store, data) -> None:
    """Any arrival order (with duplicates) ends in the same state; ack never decreases."""
    dev = Dev(3)
    recs = dev.chain(4)
    recs.append(dev.boot(n=9, ls=4))  # 5..8 unused
    recs += dev.chain(3)  # 10..12
    bad = dev.make("hb", prev=bytes(range(32)))  # 13: broken link
    recs += [bad, dev.make("evt")]  # 14
    perm = data.draw(st.permutations(range(len(recs))))
    dups = data.draw(st.lists(st.sampled_from(range(len(recs))), max_size=4))
    h = Harness(new_store(f"perm{next(_EXAMPLES)}.db"), dev)
    acks = [0]
    for i in [*perm, *dups]:
        h.feed(dev, recs[i])
        acks.append(h.ack(dev))
    assert acks == sorted(acks)
    assert acks[-1] == 14
    assert h.store.missing(dev.kid) == 0
    assert h.store.chain_break_ns(dev.kid) == [13]
    f = h.findings(dev)
    assert f["verified"] == len(recs) and f["chain_break"] == 1
    assert f.get("duplicate", 0) == len(dups)
    assert h.store.unused_ranges(dev.kid) == [(5, 8)]


def test_state_survives_reopening_the_store(new_store, dev: Dev) -> None:
    recs = dev.chain(6)
    h = Harness(new_store("g.db"), dev)
    h.feed(dev, recs[0], recs[1], recs[3])
    h.store.close()
    h2 = Harness.__new__(Harness)
    h2.store = Store(new_store("g.db"))
    h2.verifier = Verifier(h2.store.active_keys())
    h2.writer = BatchWriter(h2.store.conn, max_future_skew_ms=1, quarantine_rows=5,
                            quarantine_bytes=5)  # fmt: skip
    h2.published = []
    h2.feed(dev, recs[2], recs[4], recs[5])
    assert h2.ack(dev) == 6 and h2.store.missing(dev.kid) == 0
    assert h2.store.chain_break_ns(dev.kid) == []


def test_a_batch_s_devices_read_at_once_hold_what_each_read_alone_holds(new_store) -> None:
    """Sequencer.preload (every device of a batch in a few statements, as a worker does after
    another one wrote) gives each device the state its first record alone would load: ack,
    highest, counts, the highest record's payload hash and the unused ranges above the ack,
    for devices in order, with a gap, with unused ranges below and above the ack, and none
    stored; more devices than one statement's group, so that groups are padded and split."""
    devs = [Dev(600 + i) for i in range(70)]
    h = Harness(new_store("g.db"), *devs)
    for i, d in enumerate(devs[:-1]):
        recs = d.chain(3 + i % 4)
        if i % 3 == 1:
            recs.append(d.boot(n=12, ls=8))  # 9..11 unused, above the ack (records lost)
        if i % 3 == 2:
            recs.append(d.boot(n=len(recs) + 3, ls=len(recs)))  # ranges the ack passed
            recs += d.chain(2)
        h.feed(d, *(r for k, r in enumerate(recs) if not (i % 5 == 0 and k == 1)))
    kids = [d.kid for d in devs]
    bulk = BatchWriter(h.store.conn, max_future_skew_ms=1, quarantine_rows=5,
                       quarantine_bytes=5).seq  # fmt: skip
    bulk.preload(kids)
    store = h.store

    def alone(kid: str) -> tuple[object, ...]:
        """The device's state read by itself, one query per part."""
        ack, highest, stored, unused = store.seq_state(kid)
        head = store.payload(kid, highest) if highest else None
        return (
            ack, highest, stored, unused,
            None if head is None else hashlib.sha256(head).digest(),
            [[lo, hi] for lo, hi in store.unused_ranges(kid, above=ack)],
        )  # fmt: skip

    states = {
        "bulk": [
            (d.ack, d.highest, d.stored, d.unused, d.head_hash, d.ranges)
            for d in (bulk._devs[kid] for kid in kids)
        ],
        "alone": [alone(kid) for kid in kids],
    }
    assert states["bulk"] == states["alone"]
    acks = [s[0] for s in states["bulk"]]
    assert len(set(acks)) > 3 and acks[-1] == 0  # the devices differ; the last has nothing
    assert sum(1 for s in states["bulk"] if s[5]) > 10  # unused ranges above the ack
    assert all(s[4] is not None for s in states["bulk"][:-1])  # hashes read, not left
    assert sum(1 for s in states["bulk"] if s[0] < s[1]) > 10  # gaps
