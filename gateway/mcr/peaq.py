"""`signet export peaq`: stored records as peaq MachineEvent JSON for batchSubmitEvents.

Two event types (peaq's EventRegistry):

- 0 revenue: one event per stored ``rev`` record; value = ``am`` (minor units),
  currency = ``cur``, dataHash = keccak256 of that record's exact signed bytes.
- 1 activity: one event per *uptime window*: a maximal run of consecutive up
  intervals (docs/MCR.md uptime rule) of one boot whose closing heartbeats fall
  on the same UTC day. value = whole seconds up in the window, currency "".
  dataHash = keccak256 of the window's boot/heartbeat records concatenated in
  ``n`` order: exactly a CBOR-sequence file that ``signet verify`` reads.

timestamp is Unix *seconds* (peaq's SDK passes ``Math.floor(Date.now() / 1000)``;
the struct field is a uint256 "when the event occurred"), from the record's
placed time (docs/MCR.md). Events are grouped by machine (every key a rotation gave it,
``machineId`` the machine's); trustLevel is 2 only for a record of a key enrolled hardware
on verified evidence, on a machine none of whose keys is revoked or flagged for
equivocation, 0 otherwise: the tier comes from enrollment, never from a record. peaq's
``value`` is a uint256, so a refund (negative ``am``) cannot be expressed: refunds are left
out and counted.

Each event's metadata also says where its records are in the gateway's transparency log
(docs/AUDIT.md): ``log_index`` of a revenue record, ``log_first`` / ``log_last`` of a
window's first and last record, and ``checkpoint``, the size of the first stored checkpoint
that includes them (null until the gateway signed one), so that an on-chain event leads back
to an inclusion proof (`signet log proof`) and an audit bundle.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from Crypto.Hash import keccak

from .aggregate import DAY_MS, day_of, day_start_ms, look_back_ms
from .report import (
    Period,
    check_rules,
    default_as_of,
    record_span,
    resolve_devices,
    verified_hardware,
)

EVENT_REVENUE: Final = 0
EVENT_ACTIVITY: Final = 1
TRUST_SELF_REPORTED: Final = 0
TRUST_HARDWARE: Final = 2


def keccak256(data: bytes) -> bytes:
    """Ethereum's keccak256 (original Keccak padding, not FIPS 202 SHA3-256)."""
    return keccak.new(digest_bits=256, data=data).digest()


def data_hash(data: bytes) -> str:
    return "0x" + keccak256(data).hex()


def trust_level(tier: str, revoked_ms: int | None, flagged: bool) -> int:
    if tier == "hardware" and revoked_ms is None and not flagged:
        return TRUST_HARDWARE
    return TRUST_SELF_REPORTED


def encode_metadata(meta: dict[str, Any], fmt: str) -> str | dict[str, Any]:
    """peaq's metadata is bytes: '0x' + hex of compact sorted JSON; 'json' keeps the object."""
    if fmt == "json":
        return meta
    text = json.dumps(meta, separators=(",", ":"), sort_keys=True)
    return "0x" + text.encode().hex()


def decode_metadata(value: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    decoded: dict[str, Any] = json.loads(bytes.fromhex(value[2:]).decode())
    return decoded


@dataclass
class PeaqExport:
    events: list[dict[str, Any]] = field(default_factory=list)
    refunds_skipped: list[tuple[str, int]] = field(default_factory=list)  # (device, n)
    revenue_events: int = 0
    activity_events: int = 0


@dataclass
class _Window:
    b: int
    day: str
    ns: list[int]  # boot/heartbeat records, n order; ns[0] is the point the run starts from
    up_ms: int
    start_ms: int
    end_ms: int


def _windows(conn: sqlite3.Connection, kid: str, day_from: str, day_to: str) -> list[_Window]:
    """Uptime windows whose closing heartbeats fall on days day_from..day_to."""
    lo, hi = day_start_ms(day_from), day_start_ms(day_to) + DAY_MS
    reach = look_back_ms(conn, kid)
    # Points placed up to one interval before lo: the predecessor a first window starts from.
    points = conn.execute(
        "SELECT b, u, n, at_ms, up, up_start_ms, up_end_ms FROM agg_points"
        " WHERE kid = ? AND at_ms >= ? AND at_ms < ?",
        (kid, lo - reach, hi),
    ).fetchall()
    points.sort(key=lambda p: (p[0], p[1], p[2]))
    windows: list[_Window] = []
    current: _Window | None = None
    prev: tuple[Any, ...] | None = None
    for point in points:
        b, _u, n, at_ms, up, start, end = point
        same_boot_prev = prev if prev is not None and prev[0] == b else None
        if up and same_boot_prev is not None and lo <= at_ms < hi:
            day = day_of(at_ms)
            if (
                current is not None
                and current.b == b
                and current.day == day
                and current.ns[-1] == same_boot_prev[2]
            ):
                current.ns.append(n)
                current.up_ms += end - start
                current.end_ms = end
            else:
                if current is not None:
                    windows.append(current)
                current = _Window(b, day, [same_boot_prev[2], n], end - start, start, end)
        elif current is not None:
            windows.append(current)
            current = None
        prev = point
    if current is not None:
        windows.append(current)
    return windows


def export_events(
    conn: sqlite3.Connection,
    *,
    device: str | None = None,
    period: Period | None = None,
    as_of_ms: int | None = None,
    machine_ids: Mapping[str, int | str] | None = None,
    metadata_format: str = "hex",
) -> PeaqExport:
    """MachineEvent objects for the devices and period, ordered by timestamp."""
    check_rules(conn)
    result = PeaqExport()
    period = period or Period()
    devices = resolve_devices(conn, device)  # an unknown device is refused, records or not
    as_of = as_of_ms if as_of_ms is not None else default_as_of(conn)
    if as_of is None:
        return result
    keyed: list[tuple[tuple[int, str, int, int], dict[str, Any]]] = []
    for m in devices:
        span = record_span(conn, m.kids)
        if span is None:
            continue
        day_from, day_to = period.days_for(span[0], span[1], as_of)
        ids = machine_ids or {}
        # --machine-ids may name the machine by its first key's id or by any of its keys'.
        named = [ids[k] for k in (m.machine, *m.kids) if k in ids]
        machine = named[0] if named else "0x" + m.machine
        for key in m.keys:
            tier = "hardware" if verified_hardware(key) else "software"
            trust = trust_level(tier, m.revoked_ms, m.flagged)
            _key_events(
                conn, key.kid, (machine, trust), (day_from, day_to), metadata_format, result, keyed
            )
    keyed.sort(key=lambda item: item[0])
    result.events = [event for _, event in keyed]
    return result


def _key_events(
    conn: sqlite3.Connection,
    kid: str,
    event_of: tuple[int | str, int],
    days: tuple[str, str],
    metadata_format: str,
    result: PeaqExport,
    keyed: list[tuple[tuple[int, str, int, int], dict[str, Any]]],
) -> None:
    """The events of one key's records (its revenue, its uptime windows) in the days;
    ``event_of``: the machine id and trust level its events carry."""
    machine, trust = event_of
    day_from, day_to = days
    lo, hi = day_start_ms(day_from), day_start_ms(day_to) + DAY_MS
    for n, b, at_ms, placed, am, cur, raw, log_index in conn.execute(
        "SELECT a.n, a.b, a.at_ms, a.placed, a.am, a.cur, r.raw, r.log_index"
        " FROM agg_records AS a"
        " JOIN records AS r ON r.kid = a.kid AND r.n = a.n"
        " WHERE a.kid = ? AND a.kind = 'rev' AND a.at_ms >= ? AND a.at_ms < ?",
        (kid, lo, hi),
    ):
        if am < 0:
            result.refunds_skipped.append((kid, n))
            continue
        meta = {"device": kid, "n": n, "kind": "rev", "b": b, "time": placed}
        meta.update(_log_place(conn, log_index))
        event = {
            "machineId": machine,
            "eventType": EVENT_REVENUE,
            "value": am,
            "currency": cur,
            "timestamp": at_ms // 1000,
            "dataHash": data_hash(bytes(raw)),
            "trustLevel": trust,
            "sourceChainId": 0,
            "sourceTxHash": None,
            "metadata": encode_metadata(meta, metadata_format),
        }
        keyed.append(((at_ms // 1000, kid, EVENT_REVENUE, n), event))
        result.revenue_events += 1
    for w in _windows(conn, kid, day_from, day_to):
        raws = [
            bytes(r)
            for (r,) in (
                conn.execute("SELECT raw FROM records WHERE kid = ? AND n = ?", (kid, n)).fetchone()
                for n in w.ns
            )
        ]
        placed = conn.execute(
            "SELECT t_n IS NOT NULL FROM agg_boots WHERE kid = ? AND b = ?", (kid, w.b)
        ).fetchone()
        meta = {
            "device": kid,
            "kind": "hb",
            "b": w.b,
            "first_n": w.ns[0],
            "last_n": w.ns[-1],
            "records": len(w.ns),
            "up_ms": w.up_ms,
            "start_ms": w.start_ms,
            "end_ms": w.end_ms,
            "time": "boot_t" if placed and placed[0] else "received",
        }
        first, last = (
            conn.execute(
                "SELECT log_index FROM records WHERE kid = ? AND n = ?", (kid, n)
            ).fetchone()[0]
            for n in (w.ns[0], w.ns[-1])
        )
        if first is not None and last is not None:
            place = _log_place(conn, max(first, last))
            meta.update({"log_first": first, "log_last": last, "checkpoint": place["checkpoint"]})
        event = {
            "machineId": machine,
            "eventType": EVENT_ACTIVITY,
            "value": w.up_ms // 1000,
            "currency": "",
            "timestamp": w.end_ms // 1000,
            "dataHash": data_hash(b"".join(raws)),
            "trustLevel": trust,
            "sourceChainId": 0,
            "sourceTxHash": None,
            "metadata": encode_metadata(meta, metadata_format),
        }
        keyed.append(((w.end_ms // 1000, kid, EVENT_ACTIVITY, w.ns[-1]), event))
        result.activity_events += 1


def _log_place(conn: sqlite3.Connection, log_index: int | None) -> dict[str, Any]:
    """Where a record is in the transparency log: its leaf index and the size of the first
    stored checkpoint that includes it (None until one is signed; `signet log proof`)."""
    if log_index is None:  # stored while the log was off: not in it yet
        return {}
    (size,) = conn.execute(
        "SELECT min(size) FROM log_checkpoints WHERE size > ?", (log_index,)
    ).fetchone()
    return {"log_index": log_index, "checkpoint": size}


def render(export: PeaqExport) -> str:
    """One JSON array: the events argument of batchSubmitEvents."""
    return json.dumps(export.events, indent=1) + "\n"
