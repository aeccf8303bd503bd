"""What a gateway database says about one device, for end-to-end checks after faults.

Sales are matched by their `ref`, read from the stored signed payloads (decoded here with
cbor2, not by the gateway's own decoder). Each function returns a list of problems, one
sentence each, empty when all is well, so a test can report every problem at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cbor2

from kit.till import Sale
from signet_gateway.store.sqlite import Store


@dataclass(frozen=True)
class StoredSale:
    n: int
    ref: str | None
    amount: int
    currency: str


def stored_sales(db: Path, kid: str) -> list[StoredSale]:
    """Every revenue record stored for kid, in n order."""
    with Store(db, readonly=True) as store:
        rows = store.conn.execute(
            "SELECT n, payload FROM records WHERE kid = ? AND kind = 'rev' ORDER BY n", (kid,)
        ).fetchall()
    found = []
    for n, payload in rows:
        fields = cbor2.loads(payload)
        found.append(StoredSale(n, fields.get("ref"), fields["am"], fields["cur"]))
    return found


def sale_problems(sales: Iterable[Sale], stored: list[StoredSale]) -> list[str]:
    """Each accepted sale stored exactly once, at the n the agent answered, with its amount;
    a refused or given-up sale not stored at all; nothing stored that no sale asked for."""
    by_ref: dict[str | None, list[StoredSale]] = {}
    for s in stored:
        by_ref.setdefault(s.ref, []).append(s)
    problems = []
    known = set()
    for sale in sales:
        known.add(sale.ref)
        copies = by_ref.get(sale.ref, [])
        if sale.outcome == "accepted":
            if len(copies) != 1:
                problems.append(f"accepted sale stored {len(copies)} times: {sale.describe()}")
                continue
            (copy,) = copies
            if (copy.amount, copy.currency) != (sale.amount, sale.currency):
                problems.append(f"stored as {copy}: {sale.describe()}")
            if sale.n is not None and copy.n != sale.n:
                problems.append(f"answered n={sale.n}, stored at n={copy.n}: {sale.describe()}")
        elif copies:
            problems.append(
                f"{sale.outcome} sale stored {len(copies)} times "
                f"(n={[c.n for c in copies]}): {sale.describe()}"
            )
        if sale.outcome not in ("accepted", "refused"):
            problems.append(f"no outcome for a sale: {sale.describe()}")
    strangers = [s for s in stored if s.ref not in known]
    if strangers:
        problems.append(f"stored sales no till made: {strangers[:5]}")
    return problems


def integrity_problems(db: Path, kid: str) -> list[str]:
    """No sequence number reused (no equivocation finding, no evidence kept, not flagged), the
    hash chain intact, nothing missing or refused, and the ack at the highest record."""
    problems = []
    with Store(db, readonly=True) as store:
        findings = store.findings(kid)
        if findings.get("equivocation"):
            problems.append(f"equivocation: {findings['equivocation']} (findings {findings})")
        evidence = store.evidence(kid)
        if evidence:
            problems.append(f"two payloads for n={sorted({n for n, _p, _r in evidence})}")
        device = store.device(kid)
        if device is None or device.flagged:
            problems.append(f"device {kid} is {'flagged' if device else 'not enrolled'}")
        breaks = store.chain_break_ns(kid)
        if breaks:
            problems.append(f"chain breaks at n={breaks}")
        refused = {f: c for f, c in store.findings().items() if f.startswith("refused:")}
        if refused or store.quarantine_count():
            problems.append(f"refused records: {refused}, {store.quarantine_count()} quarantined")
        ack, highest, _stored, _unused = store.seq_state(kid)
        if store.missing(kid):
            problems.append(f"{store.missing(kid)} sequence numbers missing below {highest}")
        if ack != highest:
            problems.append(f"ack {ack} is not the highest stored n {highest}")
    return problems


def store_ack(db: Path, kid: str) -> int:
    with Store(db, readonly=True) as store:
        return store.ack(kid)
