"""What the store hands to the rest of the gateway: records, devices, quarantine rows, errors.

These types, the Store methods and the tables of schema.py are the store's interface: the
sequencer, the aggregation and the report read and write through them, so a second
implementation (PostgreSQL) provides the same.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from signet_gateway.verify.pubkeys import DevicePublicKey

__all__ = [
    "DatabaseError",
    "Device",
    "DeviceLookupError",
    "EvidenceLike",
    "QuarantineRow",
    "StoreError",
    "StoreOpenError",
    "StoreUnreachable",
    "StoredRecord",
    "iso_ms",
    "now_ms",
]


class StoreError(Exception):
    """A store operation was refused (unknown device, already enrolled, bad tier...)."""


class StoreOpenError(StoreError):
    """The database cannot be opened: there is none at the path (only an explicit create,
    `signet db init`, makes one, so a mistyped path is an error instead of a second, empty
    registry), or the file is not a Signet gateway database. A set-up error, not a refusal."""


class StoreUnreachable(StoreOpenError):
    """A PostgreSQL server that cannot be reached or takes no connections now (down,
    starting, shutting down, out of connection slots, the network or its name lookup
    failing): unlike the other StoreOpenErrors, waiting may cure it (the gateway waits:
    docs/GATEWAY.md, Faults)."""


class DatabaseError(StoreError):
    """The database engine refused or failed a statement (faults.database_error made it from
    the engine's own exception, which is its __cause__). ``fault`` is what the gateway does
    about it (faults.py): "full" or "unwritable" (wait, then retry) or "unusable" (stop)."""

    def __init__(self, message: str, fault: str, code: str | None = None) -> None:
        super().__init__(message)
        self.fault = fault
        self.code = code  # SQLite's primary result code or PostgreSQL's SQLSTATE, as text


class DeviceLookupError(StoreError):
    """A device id, id prefix or name names no device, or more than one (the message lists
    them): the caller asked for something the store cannot answer without guessing."""


class StoredRecord(NamedTuple):
    """A record as stored: what Aggregator.on_stored receives and Store.records yields.

    A NamedTuple (immutable like the frozen dataclass it was) because the writer builds
    one per stored record: it constructs in a fifth of the time (measured 0.4 vs 1.9 us).
    """

    kid: str  # device id, 32 lowercase hex
    n: int
    kind: str
    b: int
    u: int
    t: int | None
    payload: dict[str, Any]  # decoded payload map (read-only)
    raw: bytes  # exact received record bytes
    received_ms: int
    late: bool
    future: bool


class EvidenceLike(Protocol):
    """Evidence that verified (gateway/trust's VerifiedEvidence): what the store keeps of it."""

    @property
    def kind(self) -> str: ...  # se-chain | tpm2-certify | line-statement
    @property
    def summary(self) -> dict[str, Any]: ...  # JSON-able: what an operator reads
    @property
    def raw(self) -> bytes: ...  # the evidence file as given


@dataclass(frozen=True, slots=True)
class Device:
    """One enrolled key. A machine is the chain of keys that rotated into each other
    (``machine``: the device id of its first key); reports group by it."""

    kid: str
    public_key: bytes
    curve: str
    tier: str
    name: str | None
    evidence: bytes | None
    enrolled_ms: int
    revoked_ms: int | None  # records received at or after it are refused (may be ahead: scheduled)
    flagged: bool
    evidence_kind: str | None = None  # set only by evidence that verified (the hardware tier)
    evidence_summary: dict[str, Any] | None = None
    machine: str = ""
    replaces: str | None = None  # rotation: the key this one replaced
    last_n: int | None = None  # rotated away: its records above last_n are refused

    def revoked_at(self, ms: int) -> bool:
        """Is a record received at ``ms`` refused as revoked?"""
        return self.revoked_ms is not None and ms >= self.revoked_ms

    def status(self, at_ms: int | None = None) -> str:
        """'revoked' (at or after the moment), 'rotated' (a newer key replaced it) or
        'active' (also while a revocation is scheduled ahead)."""
        if self.revoked_at(now_ms() if at_ms is None else at_ms):
            return "revoked"
        return "active" if self.last_n is None else "rotated"

    @property
    def active(self) -> bool:
        """Neither revoked (now) nor rotated away: the key that speaks for its machine."""
        return self.status() == "active"

    def key(self) -> DevicePublicKey:
        return DevicePublicKey.from_sec1(self.public_key, self.curve)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    received_ms: int
    topic: str
    kid: str
    reason: str
    detail: str
    size: int
    raw: bytes


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(ms: int | None) -> str | None:
    """Unix ms as ISO 8601 UTC at millisecond precision (``...T16:07:44.175Z``); None stays."""
    if ms is None:
        return None
    when = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(milliseconds=ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
