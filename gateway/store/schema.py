"""The gateway database's tables (schema version 3), shared by every store implementation.

Tables (the ones REPORT reads are marked *):

* ``devices``*  enrolled keys, tier, evidence, machine, rotation, revocation, equivocation flag
* ``challenges`` single-use enrollment challenges (`signet challenge`)
* ``records``*  every stored record: exact received bytes and payload bytes
* ``findings``* per device and UTC day: counts of verified, duplicate, equivocation,
  chain_break, late, future_time and ``refused:<reason>``
* ``seqstate``  per device: ack, highest stored n, stored count, declared-unused count
* ``unused``    disjoint ranges [lo, hi] of sequence numbers declared never used by boot records
* ``evidence``  equivocating records (a second payload for an already stored n), bounded per device
* ``quarantine`` refused input (bounded ring): reason, detail, topic, receive time, raw bytes
* ``log_tiles``, ``log_tail`` the transparency log's Merkle nodes (store/log_tiles.py)
* ``log_checkpoints`` the log's signed checkpoints (store/record_log.py)
* ``api_tokens`` the HTTP API's bearer tokens, hashed (`signet token`, gateway/web/tokens.py)
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "API_TOKENS_TABLE",
    "CHALLENGES_TABLE",
    "DEVICES_TABLE",
    "LOG_TABLES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TIERS",
    "postgres_ddl",
]

TIERS: Final = ("software", "hardware")

# The devices table on its own: schema version 1 -> 2 rebuilds it (migrate.py).
DEVICES_TABLE: Final = """
CREATE TABLE IF NOT EXISTS devices (
    kid TEXT PRIMARY KEY,            -- 32 lowercase hex: the device id
    public_key BLOB NOT NULL,        -- 33-byte compressed SEC1 point
    curve TEXT NOT NULL,             -- 'p256' | 'secp256k1'
    tier TEXT NOT NULL CHECK (tier IN ('software', 'hardware')),
    name TEXT,
    evidence BLOB,                   -- the evidence file as given to `signet enroll`
    evidence_kind TEXT,              -- se-chain | tpm2-certify | line-statement: it VERIFIED
    evidence_summary TEXT,           -- JSON: what the verification found (serial, subjects...)
    enrolled_ms INTEGER NOT NULL,
    revoked_ms INTEGER,              -- records received at or after it are refused 'revoked'
    flagged INTEGER NOT NULL DEFAULT 0, -- 1 once an equivocation was seen
    machine TEXT NOT NULL,           -- device id of the machine's first key (= kid if first)
    replaces TEXT,                   -- rotation: the kid of the key this one replaced
    last_n INTEGER,                  -- set when rotated away: its records above it are refused
    -- The hardware tier only on evidence that verified (gateway/trust): no other write can
    -- claim it, whatever wrote the row.
    CHECK (tier = 'software' OR (evidence_kind IS NOT NULL AND evidence IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS devices_machine ON devices (machine);
"""

CHALLENGES_TABLE: Final = """
CREATE TABLE IF NOT EXISTS challenges (
    nonce BLOB PRIMARY KEY,          -- 32 random bytes (`signet challenge`)
    issued_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms INTEGER,                 -- set in the transaction of the enrollment it served
    used_by TEXT                     -- that enrollment's device id
) WITHOUT ROWID;
"""

# The transparency log (schema version 3; migrate.py adds them to a version-2 database).
LOG_TABLES: Final = """
-- Empty while every record is logged: finds the ones stored while the log was off.
CREATE INDEX IF NOT EXISTS records_unlogged ON records (received_ms, kid, n)
    WHERE log_index IS NULL;
CREATE TABLE IF NOT EXISTS log_tiles (
    key INTEGER PRIMARY KEY,         -- log_tiles.tile_key(level, tile): completion order
    hashes BLOB NOT NULL             -- 8 node hashes of 32 bytes, never changed once written
);
CREATE TABLE IF NOT EXISTS log_tail (
    level INTEGER PRIMARY KEY,       -- a stored level: 0, 8, 16...
    first INTEGER NOT NULL,          -- index of the tile's first node at that level
    hashes BLOB NOT NULL             -- the tile being filled: 0 to 7 hashes
);
CREATE TABLE IF NOT EXISTS log_checkpoints (
    size INTEGER PRIMARY KEY,        -- tree size
    root BLOB NOT NULL,              -- RFC 9162 tree head
    note TEXT NOT NULL,              -- the C2SP signed checkpoint note, verbatim
    issued_ms INTEGER NOT NULL,
    proof BLOB NOT NULL              -- consistency proof from the previous checkpoint (hashes)
);
"""

# The HTTP API's bearer tokens (schema version 3; migrate.py adds it to older databases). Only
# the SHA-256 of a token is kept: the database never holds what a client presents.
API_TOKENS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,              -- the operator's label: who or what holds it
    sha256 BLOB NOT NULL UNIQUE,     -- SHA-256 of the token (32 random bytes, base64url)
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER               -- refused from then on; NULL: in force
);
-- One token in force per name (a revoked name may be given a new token).
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_name ON api_tokens (name) WHERE revoked_ms IS NULL;
"""

SCHEMA: Final = (
    DEVICES_TABLE
    + CHALLENGES_TABLE
    + """
CREATE TABLE IF NOT EXISTS records (
    kid TEXT NOT NULL,
    n INTEGER NOT NULL,
    kind TEXT NOT NULL,
    b INTEGER NOT NULL,
    u INTEGER NOT NULL,
    t INTEGER,
    payload BLOB NOT NULL,           -- the signed payload bytes (p of the next record hashes them)
    raw BLOB NOT NULL,               -- the exact received COSE_Sign1 bytes (dataHash input)
    received_ms INTEGER NOT NULL,
    late INTEGER NOT NULL DEFAULT 0,
    future INTEGER NOT NULL DEFAULT 0,
    chain_break INTEGER NOT NULL DEFAULT 0,  -- 1: the link into this record is broken
    log_index INTEGER,               -- its leaf in the transparency log; NULL: not logged yet
    PRIMARY KEY (kid, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS findings (
    kid TEXT NOT NULL,               -- '' for input that names no enrolled device
    day TEXT NOT NULL,               -- 'YYYY-MM-DD', UTC, of the receive time
    finding TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (kid, day, finding)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seqstate (
    kid TEXT PRIMARY KEY,
    ack INTEGER NOT NULL,            -- ack(K) of PROTOCOL 6.5, never decreases
    highest INTEGER NOT NULL,        -- highest stored n (0: none)
    stored INTEGER NOT NULL,         -- number of stored records
    unused INTEGER NOT NULL          -- numbers <= highest declared unused and not stored
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unused (
    kid TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (kid, lo)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evidence (
    kid TEXT NOT NULL,
    n INTEGER NOT NULL,
    payload_sha256 BLOB NOT NULL,
    payload BLOB NOT NULL,
    raw BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (kid, n, payload_sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    kid TEXT NOT NULL,               -- the topic's device id if well-formed, else ''
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,           -- original size; raw may be cut to max_bytes_per_row
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""
    + LOG_TABLES
    + API_TOKENS_TABLE
)

SCHEMA_VERSION: Final = "3"


# SQLite's DDL as PostgreSQL's: the only differences the schema above has. INTEGER is 64-bit
# in SQLite (times in ms, counts): BIGINT. WITHOUT ROWID is SQLite's storage choice.
_PG_TYPES: Final = (
    (
        re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
)


def postgres_ddl(script: str) -> str:
    """A SQLite CREATE script of this schema's kind in PostgreSQL's types: one text of every
    table for both engines. Constraints, CHECKs, UNIQUE and partial indexes are written
    in SQL both accept and stay as they are."""
    for pattern, replacement in _PG_TYPES:
        script = pattern.sub(replacement, script)
    return script
