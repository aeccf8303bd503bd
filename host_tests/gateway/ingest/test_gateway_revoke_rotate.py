"""Revocation at a moment and key rotation, in the writer: records received before a
revocation count, from its moment on they are refused 'revoked' (also when a scheduled
moment passes while the gateway runs); after a rotation the old key's records up to its
last n count and those above are refused 'rotated', and the new key starts its own
sequence and chain. On both stores (new_store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.crafted_evidence import rotate_statement
from kit.gatewaykit import Dev
from signet_gateway.ingest.enrollment import Enrollment
from signet_gateway.ingest.intake import verify_message
from signet_gateway.ingest.writer import BatchWriter, Message
from signet_gateway.store.admission import enroll
from signet_gateway.store.model import StoreError, now_ms
from signet_gateway.store.sqlite import Store
from signet_gateway.trust import EvidenceRefused, TrustPolicy
from signet_gateway.verify.verifier import Verifier
from signet_tools.runners.gateway_process import create_gateway_database


class Gw:
    """The running gateway's writer path: Enrollment (keys, limits), verifier, BatchWriter."""

    def __init__(self, path: Path | str) -> None:
        create_gateway_database(path)
        self.store = Store(path)
        self.admin = Store(path)  # `signet enroll/revoke`: another connection
        self.enrollment: Enrollment | None = None
        self.mid = 0

    def start(self) -> None:
        self.enrollment = Enrollment(self.store)
        self.verifier = Verifier(self.enrollment.keys)
        self.writer = BatchWriter(
            self.store.conn,
            max_future_skew_ms=300_000,
            quarantine_rows=100,
            quarantine_bytes=4096,
            known_device=self.enrollment.known.__contains__,
            key_limits=self.enrollment.limits,
        )

    def deliver(self, dev: Dev, raws: list[bytes], received_ms: int) -> None:
        assert self.enrollment is not None
        if self.enrollment.refresh():
            self.verifier.forget()
        msgs = []
        for raw in raws:
            self.mid += 1
            m = Message(self.mid, 1, 1, dev.topic.encode(), raw, received_ms)
            verify_message(m, self.verifier)
            msgs.append(m)
        self.writer.commit(msgs)

    def stored(self, dev: Dev) -> list[int]:
        return [r.n for r in self.store.records(dev.kid)]


@pytest.fixture
def gw(new_store) -> Gw:
    return Gw(new_store("gateway.db"))


def test_revocation_at_a_stated_moment_counts_before_and_refuses_from_it(gw: Gw) -> None:
    dev = Dev(800)
    gw.admin.enroll(dev.key, "software")
    gw.start()
    t0 = now_ms()
    moment = t0 + 3_600_000  # scheduled an hour ahead, while the gateway runs
    assert gw.admin.revoke(dev.kid, moment).revoked_ms == moment
    before = [dev.make("boot"), dev.make("hb")]
    gw.deliver(dev, before, t0)
    gw.deliver(dev, [dev.make("hb")], moment - 1)  # the last millisecond before it
    # The moment passes: no reload, no command; each record's receive time decides.
    signed_offline = dev.make("rev")  # signed before the moment, delivered after it
    gw.deliver(dev, [signed_offline, dev.make("hb")], moment)
    gw.deliver(dev, [dev.make("hb", n=99, prev=bytes(32))], moment + 10)
    assert gw.stored(dev) == [1, 2, 3]
    findings = gw.store.findings(dev.kid)
    assert findings["verified"] == 3 and findings["refused:revoked"] == 3
    reasons = [q.reason for q in gw.store.quarantine()]
    assert reasons == ["revoked"] * 3
    assert "is revoked since" in gw.store.quarantine()[0].detail
    # A forged record of a revoked key is refused for its signature, not for the revocation.
    forged = bytearray(dev.make("hb", advance=False))
    forged[-1] ^= 1
    gw.deliver(dev, [bytes(forged)], moment + 20)
    assert gw.store.quarantine(1)[0].reason == "bad_signature"
    assert gw.store.findings("") == {}  # counted under the enrolled device, never ''


def test_revoke_refuses_a_moment_in_the_past_and_a_second_revocation(gw: Gw) -> None:
    dev = Dev(802)
    gw.admin.enroll(dev.key, "software")
    with pytest.raises(StoreError, match=r"in the past.*stay counted"):
        gw.admin.revoke(dev.kid, now_ms() - 60_000)
    ahead = now_ms() + 60_000
    gw.admin.revoke(dev.kid, ahead + 60_000)
    assert gw.admin.revoke(dev.kid, ahead).revoked_ms == ahead  # moved while still ahead
    gw.admin.revoke(dev.kid)
    with pytest.raises(StoreError, match="already revoked"):
        gw.admin.revoke(dev.kid)


def _rotate(gw: Gw, old: Dev, new: Dev, last: int, **fields: object) -> None:
    statement = rotate_statement(old.independent_key(), new.independent_key(), last=last, **fields)
    enroll(gw.admin, new.key, "software", policy=TrustPolicy(), rotate_from=old.kid,
           statement=statement)  # fmt: skip


def test_rotation_mid_run_loses_nothing_and_counts_nothing_twice(gw: Gw) -> None:
    old, new = Dev(810), Dev(811)
    gw.admin.enroll(old.key, "software", name="kiosk-9")
    gw.start()
    t = now_ms()
    gw.deliver(old, [old.make("boot"), old.make("hb"), old.make("rev")], t)
    late = [old.make("hb"), old.make("rev")]  # n=4, 5: signed before the rotation, in flight
    _rotate(gw, old, new, last=5)
    beyond = old.make("hb")  # n=6: the old key after its last n (a copied key, say)
    gw.deliver(new, [new.make("boot"), new.make("rev")], t + 1)  # the new key: n from 1
    gw.deliver(old, [late[1], beyond, late[0]], t + 2)
    gw.deliver(old, [late[0]], t + 3)  # a retransmission: a duplicate, not counted again
    assert gw.stored(old) == [1, 2, 3, 4, 5] and gw.stored(new) == [1, 2]
    assert gw.store.ack(old.kid) == 5 and gw.store.ack(new.kid) == 2  # both keys' acks work
    assert gw.store.chain_break_ns(old.kid) == [] and gw.store.chain_break_ns(new.kid) == []
    f_old = gw.store.findings(old.kid)
    assert f_old["verified"] == 5 and f_old["refused:rotated"] == 1 and f_old["duplicate"] == 1
    assert gw.store.findings(new.kid) == {"verified": 2}
    q = gw.store.quarantine(1)[0]
    assert q.reason == "rotated" and "after n=5; record n=6" in q.detail
    rows = {d.kid: d for d in gw.store.devices()}
    assert rows[new.kid].machine == old.kid and rows[new.kid].replaces == old.kid
    assert rows[old.kid].last_n == 5 and rows[old.kid].status() == "rotated"
    assert rows[new.kid].name == "kiosk-9" and rows[new.kid].active  # the name moves on
    assert gw.store.resolve_device("kiosk-9").kid == new.kid


def test_rotation_refusals(gw: Gw) -> None:
    old, new, other = Dev(820), Dev(821), Dev(822)
    gw.admin.enroll(old.key, "software")
    gw.start()
    gw.deliver(old, [old.make("boot"), *old.chain(3)], now_ms())
    with pytest.raises(StoreError, match=r"already stored record n=4.*last n=3"):
        _rotate(gw, old, new, last=3)
    with pytest.raises(EvidenceRefused) as refused:  # signed by another key than the old one
        statement = rotate_statement(other.independent_key(), new.independent_key())
        enroll(gw.admin, new.key, "software", policy=TrustPolicy(), rotate_from=old.kid,
               statement=statement)  # fmt: skip
    assert refused.value.reason == "rotation_invalid"
    with pytest.raises(EvidenceRefused, match="not to the --pubkey given"):
        statement = rotate_statement(old.independent_key(), new.independent_key(), last=4)
        enroll(gw.admin, other.key, "software", policy=TrustPolicy(), rotate_from=old.kid,
               statement=statement)  # fmt: skip
    assert gw.admin.device(new.kid) is None and gw.admin.device(old.kid).last_n is None  # type: ignore[union-attr]
    _rotate(gw, old, new, last=4)
    with pytest.raises(StoreError, match="already rotated"):
        _rotate(gw, old, other, last=4)
