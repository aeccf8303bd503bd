"""`signet audit export`: a machine's audit bundle from the gateway's database.

In one write transaction: a checkpoint of the log as it is (a fresh one, or the last if the
tree has not grown), the machine's report exactly as `signet report --device --format
json` makes it, the records, keys and attested findings it covers, and the report signed
and bound to the checkpoint; so the report covers exactly the records of the checkpoint's
tree. The inclusion proofs are computed after the commit from the log's nodes, which never
change below the checkpoint's size. Nothing is replayed here: `signet audit verify` does.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from signet_gateway.log.checkpoint import CheckpointError
from signet_gateway.log.note import Signer
from signet_gateway.mcr.aggregate import RULES_VERSION
from signet_gateway.mcr.report import (
    Period,
    ReportError,
    build_report,
    check_rules,
    default_as_of,
    resolve_devices,
)
from signet_gateway.store.log_tiles import SqliteNodeStore
from signet_gateway.store.record_log import RecordLog, StoredCheckpoint, join_hashes
from signet_gateway.store.sqlite import Store

from .bundle import Bundle, BundleKey, BundleRecord, ConsistencyEntry
from .proofs import TreeLevels
from .replay import Rules, is_attested
from .signed_report import receipts_digest, sign_report

__all__ = ["ExportError", "Exported", "export_bundle"]


class ExportError(Exception):
    """The bundle cannot be made as asked (one line: unknown device, unlogged records...)."""


@dataclass(frozen=True)
class Exported:
    bundle: Bundle
    device: str
    size: int
    root: bytes
    period: dict[str, Any]


def export_bundle(
    conn: sqlite3.Connection,
    signer: Signer,
    *,
    device: str,
    day_from: str | None = None,
    day_to: str | None = None,
    max_future_skew_ms: int,
    consistency_from: Sequence[int] = (),
    consistency_all: bool = False,
) -> Exported:
    store = Store.over(conn)
    try:
        period = Period.parse(day_from, day_to)
        check_rules(conn)
        machine = resolve_devices(conn, device)[0]
    except ReportError as exc:
        raise ExportError(str(exc)) from None
    kids = machine.kids
    marks = ", ".join("?" * len(kids))
    log = RecordLog(conn)
    with store.transaction():
        unlogged = conn.execute(
            f"SELECT kid, n FROM records WHERE kid IN ({marks}) AND log_index IS NULL"
            " ORDER BY received_ms LIMIT 1",
            kids,
        ).fetchone()
        if unlogged is not None:
            raise ExportError(
                f"record n={unlogged[1]} of device {unlogged[0]} is not in the log yet (stored"
                " while [log] enabled = false): start the gateway with the log on, which"
                " appends it, then export again"
            )
        if log.size == 0:
            raise ExportError("the log is empty: no record has been stored with the log on")
        try:
            checkpoint = log.issue_checkpoint(signer)
        except CheckpointError as exc:
            raise ExportError(f"cannot sign a checkpoint: {exc}") from None
        size = checkpoint.size
        as_of = default_as_of(conn)
        report = build_report(
            conn, device=machine.machine, period=period, as_of_ms=as_of, missing=store.missing
        )
        rows = conn.execute(
            f"SELECT log_index, received_ms, raw FROM records WHERE kid IN ({marks})"
            " AND log_index < ? ORDER BY log_index",
            (*kids, size),
        ).fetchall()
        keys = _keys(conn, machine.machine)
        findings = [
            (kid, day, finding, int(count))
            for kid, day, finding, count in conn.execute(
                f"SELECT kid, day, finding, count FROM findings WHERE kid IN ({marks}, '')"
                " ORDER BY kid, day, finding",
                kids,
            )
            if is_attested(finding)
        ]
        earlier = _earlier(log, size, consistency_from, consistency_all)
        rules = Rules(max_future_skew_ms, _tolerance_ppm(conn), RULES_VERSION)
        content = {
            "checkpoint": {"size": size, "root": base64.b64encode(checkpoint.root).decode()},
            "device": machine.machine,
            "period": {"from": day_from, "to": day_to},
            "as_of_ms": as_of,
            "rules": rules.as_json(),
            "records": {
                "count": len(rows),
                "receipts": receipts_digest((int(i), int(r)) for i, r, _ in rows),
            },
            "report": report,
        }
        note = sign_report(signer, content)
    consistency = [
        ConsistencyEntry(old.note.encode(), join_hashes(log.consistency_proof(old.size, size)))
        for old in earlier
    ]
    records = _with_proofs(conn, size, checkpoint, rows)
    bundle = Bundle(
        origin=signer.name,
        checkpoint=checkpoint.note.encode(),
        keys=keys,
        records=records,
        findings=findings,
        report=note.encode(),
        consistency=consistency,
    )
    return Exported(bundle, machine.machine, size, checkpoint.root, content["period"])


def _keys(conn: sqlite3.Connection, machine: str) -> list[BundleKey]:
    return [
        BundleKey(
            kid=row[0],
            public_key=bytes(row[1]),
            curve=row[2],
            tier=row[3],
            name=row[4],
            evidence=None if row[5] is None else bytes(row[5]),
            evidence_kind=row[6],
            evidence_summary=row[7],
            enrolled_ms=int(row[8]),
            revoked_ms=row[9],
            flagged=bool(row[10]),
            machine=row[11],
            replaces=row[12],
            last_n=row[13],
        )
        for row in conn.execute(
            "SELECT kid, public_key, curve, tier, name, evidence, evidence_kind,"
            " evidence_summary, enrolled_ms, revoked_ms, flagged, machine, replaces, last_n"
            " FROM devices WHERE machine = ? ORDER BY enrolled_ms, kid",
            (machine,),
        )
    ]


def _tolerance_ppm(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM agg_meta WHERE key = 'hb_tolerance_ppm'").fetchone()
    if row is None:
        raise ExportError("the aggregates have no heartbeat tolerance: start the gateway once")
    return int(row[0])


def _earlier(
    log: RecordLog, size: int, sizes: Sequence[int], every: bool
) -> list[StoredCheckpoint]:
    stored = {c.size: c for c in log.checkpoints() if 0 < c.size < size}
    if every:
        return [stored[s] for s in sorted(stored)]
    chosen = []
    for wanted in dict.fromkeys(sizes):
        if wanted not in stored:
            sizes_known = ", ".join(map(str, sorted(stored))) or "none"
            raise ExportError(
                f"--consistency-from {wanted}: no stored checkpoint of that size below"
                f" {size} (stored: {sizes_known})"
            )
        chosen.append(stored[wanted])
    return chosen


def _with_proofs(
    conn: sqlite3.Connection, size: int, checkpoint: StoredCheckpoint, rows: list[Any]
) -> list[BundleRecord]:
    # A read transaction: one snapshot of the nodes while the gateway may keep appending.
    conn.execute("BEGIN")
    try:
        tree = TreeLevels(SqliteNodeStore(conn), size)
    finally:
        conn.execute("COMMIT")
    if tree.root() != checkpoint.root:
        raise ExportError(
            f"the log's stored nodes give another root for size {size} than its checkpoint:"
            " the database was altered"
        )
    return [
        BundleRecord(int(i), int(r), bytes(raw), join_hashes(tree.inclusion_proof(int(i))))
        for i, r, raw in rows
    ]
