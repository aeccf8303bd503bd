"""What the JSON API answers, as JSON-ready dicts read from one read-only connection.

No HTTP here (api.py routes and authenticates): each function takes the connection of the
request's thread and the request's parameters, and raises :class:`NotFound` or
:class:`BadRequest` with a sentence for the client. The report and the peaq export are the
code of `signet report --format json` and `signet export peaq`, rendered the same way, so the
API and the commands give the same bytes for the same database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from signet_gateway.mcr import peaq, report
from signet_gateway.store.model import Device, DeviceLookupError, iso_ms, now_ms
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.payload_schema import decode_payload
from signet_gateway.verify.refusals import REASONS

__all__ = [
    "GATEWAY_REASONS",
    "BadRequest",
    "NotFound",
    "device",
    "fleet",
    "peaq_export",
    "records",
    "refusals",
    "report_json",
]

# The gateway's own refusal reasons (docs/GATEWAY.md, "Refusals and the quarantine"), beside
# the verifier's (gateway/verify/refusals.py): every reason a quarantine row can carry.
GATEWAY_REASONS: Final = MappingProxyType(
    {
        "bad_topic": "The topic is not signet/v1/<32 lowercase hex>/rec.",
        "internal_error": "Handling the message raised an unexpected exception (a bug); it was"
        " set aside so that ingest continues.",
        "revoked": "A record of a revoked key, received at or after its revocation moment.",
        "rotated": "A record of a rotated key numbered above the last n its rotation named.",
    }
)


class NotFound(LookupError):
    """No such device (or a name or prefix that names several: the message lists them)."""


class BadRequest(ValueError):
    """A parameter the report or the export cannot take (a bad date, --from after --to)."""


def reason_text(reason: str) -> str | None:
    """A refusal reason in words (None for a code neither list knows)."""
    return REASONS.get(reason) or GATEWAY_REASONS.get(reason)


def _resolve(store: Store, wanted: str) -> Device:
    try:
        return store.resolve_device(wanted)
    except DeviceLookupError as exc:
        raise NotFound(str(exc)) from None


def _jsonable(value: Any) -> Any:
    """A decoded payload value for JSON: bytes as hex, map keys as text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _refused_by_device(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        kid: int(count)
        for kid, count in conn.execute(
            "SELECT kid, sum(count) FROM findings WHERE finding LIKE 'refused:%' GROUP BY kid"
        )
    }


def _last_received(conn: sqlite3.Connection) -> dict[str, int]:
    """Each device's receive time of its highest stored n (one indexed look-up per device)."""
    return dict(
        conn.execute(
            "SELECT s.kid, r.received_ms FROM seqstate s"
            " JOIN records r ON r.kid = s.kid AND r.n = s.highest"
        ).fetchall()
    )


# device id -> (online, when the gateway received that word): ingest/device_status.py
StatusWords = Mapping[str, tuple[bool, int]]


def _summary(
    store: Store,
    d: Device,
    refused: int,
    last_ms: int | None,
    at_ms: int,
    word: tuple[bool, int] | None = None,
) -> dict:
    ack, highest, stored, _unused = store.seq_state(d.kid)
    return {
        "device": d.kid,
        "name": d.name,
        "machine": d.machine or d.kid,
        "tier": d.tier,
        "status": d.status(at_ms),
        "flagged": d.flagged,
        "enrolled_ms": d.enrolled_ms,
        "revoked_ms": d.revoked_ms,
        "ack": ack,
        "highest": highest,
        "stored": stored,
        "missing": store.missing(d.kid),
        "refused": refused,
        "last_received_ms": last_ms,
        "last_received": iso_ms(last_ms),
        # The device's own word on its status topic (unsigned, PROTOCOL 7.4); None: not heard.
        "online": None if word is None else word[0],
        "status_ms": None if word is None else word[1],
    }


def fleet(conn: sqlite3.Connection, status: StatusWords | None = None) -> dict[str, Any]:
    """Every enrolled key with its sequence state, counters, newest record's receive time and
    its last word on the status topic."""
    store = Store.over(conn)
    refused = _refused_by_device(conn)
    last = _last_received(conn)
    at = now_ms()
    words = status or {}
    devices = [
        _summary(store, d, refused.get(d.kid, 0), last.get(d.kid), at, words.get(d.kid))
        for d in store.devices()
    ]
    return {
        "as_of_ms": report.default_as_of(conn),
        "devices": devices,
        "refused_unattributed": refused.get("", 0),
    }


def device(
    conn: sqlite3.Connection, wanted: str, status: StatusWords | None = None
) -> dict[str, Any]:
    """One key (id, unique prefix or name): the fleet row, enrollment and evidence summary,
    integrity counters (all days), the machine's other keys."""
    store = Store.over(conn)
    d = _resolve(store, wanted)
    refused = _refused_by_device(conn).get(d.kid, 0)
    last = _last_received(conn).get(d.kid)
    row = _summary(store, d, refused, last, now_ms(), (status or {}).get(d.kid))
    row.update(
        {
            "curve": d.curve,
            "public_key": d.public_key.hex(),
            "evidence_kind": d.evidence_kind,
            "evidence_summary": d.evidence_summary,
            "evidence_bytes": len(d.evidence) if d.evidence else 0,
            "replaces": d.replaces,
            "last_n": d.last_n,
            "machine_keys": [k.kid for k in store.machine_keys(d.machine or d.kid)],
            "findings": store.findings(d.kid),
            "chain_breaks": store.chain_break_ns(d.kid),
            "equivocating_ns": sorted({n for n, _p, _r in store.evidence(d.kid)}),
        }
    )
    return row


def records(
    conn: sqlite3.Connection,
    wanted: str,
    *,
    after_n: int,
    limit: int,
    refused_before_id: int | None,
) -> dict[str, Any]:
    """One key's stored records (n > after_n, ascending, at most limit) and its refused input
    from the quarantine (newest first, id < refused_before_id, at most limit).

    A stored record: verdict "stored" with the gateway's flags (late, future, chain_break), the
    decoded signed fields, the payload and the exact received bytes in hex. A refused one:
    verdict "refused", the reason code, the reason in words, the detail sentence, the topic,
    the receive time and the raw bytes kept (cut to quarantine.max_bytes_per_row, size is the
    original). Refused input is the quarantine's: a bounded ring, so the oldest may be gone."""
    store = Store.over(conn)
    d = _resolve(store, wanted)
    rows = conn.execute(
        "SELECT n, kind, b, u, t, payload, raw, received_ms, late, future, chain_break,"
        " log_index FROM records WHERE kid = ? AND n > ? ORDER BY n LIMIT ?",
        (d.kid, after_n, limit),
    ).fetchall()
    stored = []
    for n, kind, b, u, t, payload, raw, received_ms, late, future, chain_break, log_index in rows:
        stored.append(
            {
                "verdict": "stored",
                "n": n,
                "kind": kind,
                "b": b,
                "u": u,
                "t": t,
                "received_ms": received_ms,
                "received": iso_ms(received_ms),
                "late": bool(late),
                "future": bool(future),
                "chain_break": bool(chain_break),
                "log_index": log_index,
                "fields": _jsonable(decode_payload(bytes(payload))),
                "payload_hex": bytes(payload).hex(),
                "raw_hex": bytes(raw).hex(),
            }
        )
    sql = "SELECT id, received_ms, topic, reason, detail, size, raw FROM quarantine WHERE kid = ?"
    args: list[Any] = [d.kid]
    if refused_before_id is not None:
        sql += " AND id < ?"
        args.append(refused_before_id)
    refused = [
        _refusal(row, d.kid)
        for row in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    ]
    return {
        "device": d.kid,
        "stored": stored,
        "next_after_n": stored[-1]["n"] if len(stored) == limit else None,
        "refused": refused,
        "next_refused_before_id": refused[-1]["id"] if len(refused) == limit else None,
    }


def _refusal(row: tuple[Any, ...], kid: str) -> dict[str, Any]:
    qid, received_ms, topic, reason, detail, size, raw = row
    return {
        "verdict": "refused",
        "id": qid,
        "device": kid or None,
        "topic": topic,
        "reason": reason,
        "reason_text": reason_text(reason),
        "detail": detail,
        "received_ms": received_ms,
        "received": iso_ms(received_ms),
        "size": size,
        "raw_hex": bytes(raw).hex(),
    }


def refusals(
    conn: sqlite3.Connection, *, reason: str | None, limit: int, before_id: int | None
) -> dict[str, Any]:
    """Refusals across the fleet: counts by reason over all time (the findings counters,
    which count every refusal), and the quarantined items themselves, newest first, with the
    sender's topic and the receive time (at most limit; id < before_id; one reason if given)."""
    counts = {
        finding.removeprefix("refused:"): count
        for finding, count in Store.over(conn).findings().items()
        if finding.startswith("refused:")
    }
    sql = "SELECT id, received_ms, topic, reason, detail, size, raw, kid FROM quarantine WHERE TRUE"
    args: list[Any] = []
    if reason is not None:
        sql += " AND reason = ?"
        args.append(reason)
    if before_id is not None:
        sql += " AND id < ?"
        args.append(before_id)
    items = [
        _refusal(row[:7], row[7])
        for row in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    ]
    return {
        "by_reason": [
            {"reason": r, "reason_text": reason_text(r), "count": c} for r, c in counts.items()
        ],
        "items": items,
        "next_before_id": items[-1]["id"] if len(items) == limit else None,
    }


def _period(day_from: str | None, day_to: str | None) -> report.Period:
    try:
        return report.Period.parse(day_from, day_to)
    except report.ReportError as exc:
        raise BadRequest(str(exc).replace("--from", "from").replace("--to", "to")) from None


def _known(conn: sqlite3.Connection, wanted: str | None) -> None:
    """An unknown device is a 404 before the report is built (the rest of its errors: 400)."""
    if wanted is not None:
        _resolve(Store.over(conn), wanted)


def report_json(
    conn: sqlite3.Connection, *, device: str | None, day_from: str | None, day_to: str | None
) -> str:
    """`signet report --format json`, byte for byte."""
    period = _period(day_from, day_to)
    _known(conn, device)
    try:
        result = report.build_report(
            conn, device=device, period=period, missing=Store.over(conn).missing
        )
    except report.ReportError as exc:
        raise BadRequest(str(exc)) from None
    return report.render(result, "json")


def peaq_export(
    conn: sqlite3.Connection,
    *,
    device: str | None,
    day_from: str | None,
    day_to: str | None,
    metadata: str,
) -> str:
    """`signet export peaq` (default machine ids), byte for byte."""
    period = _period(day_from, day_to)
    _known(conn, device)
    try:
        result = peaq.export_events(conn, device=device, period=period, metadata_format=metadata)
    except report.ReportError as exc:
        raise BadRequest(str(exc)) from None
    return peaq.render(result)
