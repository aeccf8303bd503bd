"""Sequence rules (PROTOCOL 6.4) and the acknowledged sequence (PROTOCOL 6.5).

The :class:`Sequencer` classifies each *verified* record of a key K as new,
duplicate or equivocation, stores new ones, keeps the hash chain checked and
maintains ``ack(K)``. It works inside the caller's open transaction on the
caller's connection: nothing here commits. The caller commits, then calls
:meth:`Sequencer.committed` to learn which acks advanced (those are published),
or :meth:`Sequencer.rolled_back` after a failed commit (in-memory state is then
reloaded from the database, which is the truth).

Cost per record: the common case (records of a device arriving in order) needs
no database read at all: the next record is new because its n is above the
highest stored one, its chain link is checked against the payload hash of that
highest record kept in memory, and ack advances by one. Inserts are buffered
and written with ``executemany``; the buffer is flushed before any read, so
reads always see every record applied so far. Out-of-order records (late,
gap-filling, boot records declaring unused ranges) take indexed point queries.
The ack walk visits each stored number at most once (amortised O(1)).

Order independence: a chain link (P, R) is checked when both ends are stored
and every number between them is declared unused - whichever end arrives last
triggers the check (a new record checks its predecessor *and*, when it is
late, its successor). Each record carries a ``chain_break`` flag set at most
once, so a break is counted once however the records arrive.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Final

from signet_gateway.store.model import StoredRecord
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.payload_schema import decode_payload
from signet_gateway.verify.verifier import VerifiedRecord

__all__ = [
    "DUPLICATE",
    "EQUIVOCATION",
    "NEW",
    "UNATTRIBUTED",
    "Findings",
    "HookFailed",
    "Sequencer",
]

NEW: Final = "new"
DUPLICATE: Final = "duplicate"
EQUIVOCATION: Final = "equivocation"

ZERO_HASH: Final = bytes(32)
EVIDENCE_PER_DEVICE: Final = 100  # equivocation evidence rows kept per device (a bound)
UNATTRIBUTED: Final = -1  # HookFailed.tag when a batched hook failed without naming a record
_NOTHING_STORED: Final = (0, 0, 0, 0, None)  # a device's state before its first record
_WALK: Final = 512  # rows fetched per step of an ack walk over out-of-order records

_sha256 = hashlib.sha256


class HookFailed(Exception):
    """The aggregation hook raised for a record; ``tag`` says which input it came from."""

    def __init__(self, tag: int, exc: BaseException) -> None:
        super().__init__(tag, exc)
        self.tag = tag
        self.exc = exc


class Findings:
    """Counters per (device, UTC day, finding), added to the findings table at flush."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: defaultdict[tuple[str, str, str], int] = defaultdict(int)

    def add(self, kid: str, day: str, finding: str, k: int = 1) -> None:
        self.counts[(kid, day, finding)] += k

    def flush(self, conn: sqlite3.Connection) -> None:
        if self.counts:
            conn.executemany(
                "INSERT INTO findings (kid, day, finding, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kid, day, finding) DO UPDATE SET"
                " count = findings.count + excluded.count",  # PostgreSQL: qualified
                [(*key, count) for key, count in self.counts.items()],
            )
            self.counts.clear()

    def clear(self) -> None:
        self.counts.clear()


class _Dev:
    """In-memory sequence state of one device (a cache of its seqstate row)."""

    __slots__ = ("ack", "head_hash", "highest", "kid", "ranges", "stored", "unused")

    def __init__(self, kid: str, ack: int, highest: int, stored: int, unused: int) -> None:
        self.kid = kid
        self.ack = ack
        self.highest = highest
        self.stored = stored
        self.unused = unused
        self.head_hash: bytes | None = None  # SHA-256 of the highest record's payload, lazily
        self.ranges: list[list[int]] = []  # declared-unused [lo, hi] with hi > ack, sorted


class Sequencer:
    """Apply PROTOCOL 6.4 to verified records and maintain ack(K) (6.5)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        findings: Findings,
        *,
        max_future_skew_ms: int = 300_000,
        on_stored: Callable[[StoredRecord], None] | None = None,
        evidence_per_device: int = EVIDENCE_PER_DEVICE,
        on_stored_many: Callable[[list[StoredRecord]], None] | None = None,
        record_log: RecordLog | None = None,
    ) -> None:
        self.conn = conn
        # The transparency log (None: records are stored unlogged, [log] enabled = false).
        self.record_log = record_log
        self._store = Store.over(conn)
        self.findings = findings
        self.max_future_skew_ms = max_future_skew_ms
        self.on_stored = on_stored
        # The batch form of the hook (same effect, fewer statements); off for a retry after a
        # failure it could not attribute to one record, so that on_stored can.
        self.on_stored_many = on_stored_many
        self.unbatched = False
        # Called before the first log append of a transaction (the writer's commit lock).
        self.before_append: Callable[[], None] | None = None
        self.evidence_per_device = evidence_per_device
        self._devs: dict[str, _Dev] = {}
        self._dirty: set[str] = set()
        self._inserts: list[tuple[Any, ...]] = []
        self._new: list[tuple[int, StoredRecord]] = []
        self.tag = 0  # set by the caller: which input the next records come from
        self._changed: dict[str, int] = {}
        self._republish: set[str] = set()
        self.events: list[str] = []  # notable events for the log (equivocation, chain break)

    # -- public API ------------------------------------------------------------------------

    def apply(self, rec: VerifiedRecord, received_ms: int, day: str, kid: str | None = None) -> str:
        """Classify and (if new) store one verified record; returns NEW/DUPLICATE/EQUIVOCATION.

        For callers holding a ``VerifiedRecord`` (the writer has parts: :meth:`apply_parts`).
        ``kid`` is the record's device id (hex) if the caller has it already.
        """
        return self.apply_parts(
            rec.kid.hex() if kid is None else kid,
            rec.payload,
            rec.payload_bytes,
            None,
            rec.raw,
            received_ms,
            day,
        )

    def apply_parts(
        self,
        kid: str,
        p: dict[str, Any],
        payload_bytes: bytes,
        payload_hash: bytes | None,
        raw: bytes,
        received_ms: int,
        day: str,
    ) -> str:
        """:meth:`apply` for a record given as its parts (what ``verify_pool.verify_chunk``
        returns: no ``VerifiedRecord`` needs building); ``payload_hash`` is computed if None."""
        n: int = p["n"]
        dev = self._devs.get(kid) or self._load(kid)
        late = False
        if n <= dev.highest:
            self._flush_inserts()
            stored = self._store.payload(kid, n)
            if stored is not None:
                if stored == payload_bytes:
                    self.findings.add(kid, day, "duplicate")
                    if n <= dev.ack:
                        # The device resends what we acked: it has not seen our ack (a lost
                        # publish, a broker that lost its retained messages). Say it again.
                        self._republish.add(kid)
                    return DUPLICATE
                self._equivocation(kid, n, payload_bytes, raw, received_ms, day)
                return EQUIVOCATION
            late = True
        t = p["t"]
        future = t is not None and t > received_ms + self.max_future_skew_ms
        if payload_hash is None:
            payload_hash = _sha256(payload_bytes).digest()
        prev: bytes = p["p"]
        kind: str = p["k"]
        b: int = p["b"]
        u: int = p["u"]
        if kind == "boot":
            ls: int = p["ls"]
            if ls + 1 <= n - 1:
                self._declare_unused(dev, ls + 1, n - 1)
        if late and self._in_unused(kid, n):
            dev.unused -= 1  # signed after all: stored now, no longer counted as unused
        broken = self._link_broken(dev, n, prev, late)
        self._inserts.append(
            (kid, n, kind, b, u, t, payload_bytes, raw, received_ms, late, future, broken)
        )
        dev.stored += 1
        if n > dev.highest:
            dev.highest = n
            dev.head_hash = payload_hash
        self._dirty.add(kid)
        if self.on_stored is not None or self.on_stored_many is not None:
            self._new.append(
                (self.tag, StoredRecord(kid, n, kind, b, u, t, p, raw, received_ms, late, future))
            )
        findings = self.findings
        findings.add(kid, day, "verified")
        if late:
            findings.add(kid, day, "late")
            self._check_successor(kid, n, payload_hash, day)
        if future:
            findings.add(kid, day, "future_time")
        if broken:
            findings.add(kid, day, "chain_break")
            self.events.append(f"chain break: device {kid} record {n}")
        if n == dev.ack + 1 or (dev.ranges and dev.ranges[0][0] <= dev.ack + 1):
            self._advance(dev, n)
        return NEW

    def flush(self) -> None:
        """Write everything buffered (records, sequence state, findings) into the open
        transaction and run the aggregation hook for the new records. Call before COMMIT."""
        self._flush_inserts()
        if self._dirty:
            devs = self._devs
            self.conn.executemany(
                "INSERT INTO seqstate (kid, ack, highest, stored, unused) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (kid) DO UPDATE SET ack = excluded.ack, highest = excluded.highest,"
                " stored = excluded.stored, unused = excluded.unused",
                [
                    (kid, d.ack, d.highest, d.stored, d.unused)
                    for kid in self._dirty
                    for d in (devs[kid],)
                ],
            )
            self._dirty.clear()
        self.findings.flush(self.conn)

    def committed(self) -> tuple[dict[str, int], set[str]]:
        """After COMMIT: (acks that advanced, kids whose unchanged ack should be republished)."""
        changed, self._changed = self._changed, {}
        republish, self._republish = self._republish - changed.keys(), set()
        return changed, republish

    def rolled_back(self) -> None:
        """After ROLLBACK: forget everything not committed (state reloads from the database
        when next needed: nothing is read here, the session may be lost)."""
        self._devs.clear()
        self._dirty.clear()
        self._inserts.clear()
        self._new.clear()
        self._changed.clear()
        self._republish.clear()
        self.findings.clear()
        self.events.clear()
        if self.record_log is not None:
            self.record_log.rolled_back()

    def forget(self) -> None:
        """Another process wrote since this one's last transaction (several gateway workers on
        one PostgreSQL database): drop the cached state of every device, and the log's
        tree's edge, before applying anything; both reload from the database under the lock."""
        self._devs.clear()
        if self.record_log is not None:
            self.record_log.another_wrote()

    def ack(self, kid: str) -> int:
        dev = self._devs.get(kid) or self._load(kid)
        return dev.ack

    def all_acks(self) -> dict[str, int]:
        """Committed acks of every device (> 0), e.g. to republish after a reconnect."""
        acks = self._store.acks()
        for kid, dev in self._devs.items():
            # The larger: another worker on the same PostgreSQL database may have committed
            # a higher ack than this one's cache holds (generation.py).
            if kid not in self._dirty and dev.ack > acks.get(kid, 0):
                acks[kid] = dev.ack
        return acks

    # -- internals ---------------------------------------------------------------------------

    def preload(self, kids: Iterable[str]) -> None:
        """Load the state of each device in ``kids`` not held yet, in a few statements: a
        batch's devices at once rather than each on its first record (after another worker's
        write every device's state is dropped: ``forget``). Call before applying the batch."""
        devs = self._devs
        missing = [kid for kid in dict.fromkeys(kids) if kid not in devs]
        if not missing:
            return
        # No flush first: a device not held has nothing buffered (its records are buffered
        # only once it is loaded, and its state is dropped only between transactions).
        store = self._store
        states = store.seq_states(missing)
        for kid in missing:
            ack, highest, stored, unused, head = states.get(kid, _NOTHING_STORED)
            dev = devs[kid] = _Dev(kid, ack, highest, stored, unused)
            if head is not None:
                dev.head_hash = _sha256(head).digest()
        for kid, ranges in store.unused_above_ack(missing).items():
            devs[kid].ranges = [[lo, hi] for lo, hi in ranges]

    def _load(self, kid: str) -> _Dev:
        self.preload((kid,))
        return self._devs[kid]

    def fold(self) -> None:
        """Run the aggregation hook for the records applied since the last flush (before
        they are inserted: the aggregates read no record rows). The writer does this before
        it takes the commit lock: it concerns the batch's devices alone."""
        new, self._new = self._new, []
        if not new:
            return
        many = self.on_stored_many
        if many is not None and not self.unbatched:
            try:
                many([rec for _, rec in new])
            except Exception as exc:
                index = getattr(exc, "index", None)
                if type(index) is int and 0 <= index < len(new):
                    cause = getattr(exc, "exc", exc)
                    raise HookFailed(new[index][0], cause) from cause
                raise HookFailed(UNATTRIBUTED, exc) from exc
            return
        hook = self.on_stored
        assert hook is not None
        for tag, rec in new:
            try:
                hook(rec)
            except Exception as exc:
                raise HookFailed(tag, exc) from exc

    def _flush_inserts(self) -> None:
        self.fold()
        if self._inserts:
            inserts = self._inserts
            columns = "kid, n, kind, b, u, t, payload, raw, received_ms, late, future, chain_break"
            if self.record_log is not None:
                # Appended in the order the records are stored, in their transaction.
                if self.before_append is not None:
                    self.before_append()
                first = self.record_log.append([row[7] for row in inserts])
                inserts = [(*row, first + i) for i, row in enumerate(inserts)]
                columns += ", log_index"
            marks = ", ".join("?" * len(inserts[0]))
            self.conn.executemany(f"INSERT INTO records ({columns}) VALUES ({marks})", inserts)
            self._inserts.clear()

    def _head_hash(self, dev: _Dev) -> bytes | None:
        if dev.head_hash is None and dev.highest > 0:
            self._flush_inserts()
            payload = self._store.payload(dev.kid, dev.highest)
            if payload is not None:
                dev.head_hash = _sha256(payload).digest()
        return dev.head_hash

    def _no_gap(self, kid: str, lower: int, upper: int) -> bool:
        """True if every number strictly between lower and upper is declared unused."""
        if upper == lower + 1:
            return True
        lo, hi = lower + 1, upper - 1
        # CASE for the scalar min/max: SQLite has no LEAST/GREATEST, PostgreSQL no min(a, b).
        covered = self.conn.execute(
            "SELECT coalesce(sum((CASE WHEN hi < ? THEN hi ELSE ? END)"
            " - (CASE WHEN lo > ? THEN lo ELSE ? END) + 1), 0) FROM unused"
            " WHERE kid = ? AND lo <= ? AND hi >= ?",
            (hi, hi, lo, lo, kid, hi, lo),
        ).fetchone()[0]
        return int(covered) == hi - lo + 1

    def _link_broken(self, dev: _Dev, n: int, prev: bytes, late: bool) -> bool:
        """Is the link from R's predecessor into R (not yet stored) broken?"""
        if n == 1:
            return prev != ZERO_HASH
        if not late and dev.highest == n - 1:  # the in-order case: no database read
            head = self._head_hash(dev)
            return head is not None and prev != head
        if dev.highest == 0 and not late:
            return False  # nothing stored below: the link cannot be checked yet
        self._flush_inserts()
        row = self.conn.execute(
            "SELECT n, payload FROM records WHERE kid = ? AND n < ? ORDER BY n DESC LIMIT 1",
            (dev.kid, n),
        ).fetchone()
        if row is None:
            return False
        if self._no_gap(dev.kid, row[0], n):
            return prev != _sha256(row[1]).digest()
        return prev == ZERO_HASH  # a genesis p although an earlier record exists

    def _check_successor(self, kid: str, n: int, payload_hash: bytes, day: str) -> None:
        """R arrived late: check the link from R to the next stored record S."""
        self._flush_inserts()
        row = self.conn.execute(
            "SELECT n, payload FROM records WHERE kid = ? AND n > ? ORDER BY n LIMIT 1", (kid, n)
        ).fetchone()
        if row is None:
            return
        s_n, s_payload = row
        s_prev = decode_payload(s_payload)["p"]
        broken = s_prev != payload_hash if self._no_gap(kid, n, s_n) else s_prev == ZERO_HASH
        if broken:
            cur = self.conn.execute(
                "UPDATE records SET chain_break = 1 WHERE kid = ? AND n = ? AND chain_break = 0",
                (kid, s_n),
            )
            if cur.rowcount:
                self.findings.add(kid, day, "chain_break")
                self.events.append(f"chain break: device {kid} record {s_n}")

    def _in_unused(self, kid: str, n: int) -> bool:
        row = self.conn.execute(
            "SELECT hi FROM unused WHERE kid = ? AND lo <= ? ORDER BY lo DESC LIMIT 1", (kid, n)
        ).fetchone()
        return row is not None and row[0] >= n

    def _declare_unused(self, dev: _Dev, lo: int, hi: int) -> None:
        """A boot record says lo..hi were never signed: add the part not already declared."""
        self._flush_inserts()
        kid = dev.kid
        overlaps = self.conn.execute(
            "SELECT lo, hi FROM unused WHERE kid = ? AND lo <= ? AND hi >= ? ORDER BY lo",
            (kid, hi, lo),
        ).fetchall()
        pieces: list[tuple[int, int]] = []
        cursor = lo
        for a, b in overlaps:
            if a > cursor:
                pieces.append((cursor, a - 1))
            cursor = max(cursor, b + 1)
        if cursor <= hi:
            pieces.append((cursor, hi))
        for a, b in pieces:
            stored = self.conn.execute(
                "SELECT count(*) FROM records WHERE kid = ? AND n BETWEEN ? AND ?", (kid, a, b)
            ).fetchone()[0]
            dev.unused += (b - a + 1) - int(stored)
            self.conn.execute("INSERT INTO unused (kid, lo, hi) VALUES (?, ?, ?)", (kid, a, b))
            if b > dev.ack:
                dev.ranges.append([a, b])
        dev.ranges.sort()
        self._dirty.add(kid)

    def _advance(self, dev: _Dev, just_stored: int) -> None:
        """Move ack(K) up over stored and declared-unused numbers."""
        start = dev.ack
        while True:
            nxt = dev.ack + 1
            ranges = dev.ranges
            while ranges and ranges[0][1] <= dev.ack:
                ranges.pop(0)
            if ranges and ranges[0][0] <= nxt:
                dev.ack = ranges.pop(0)[1]
                continue
            if nxt > dev.highest:
                break
            if nxt == just_stored or nxt == dev.highest:
                dev.ack = nxt
                continue
            self._flush_inserts()
            limit = ranges[0][0] - 1 if ranges else dev.highest
            progressed = False
            for (m,) in self.conn.execute(
                "SELECT n FROM records WHERE kid = ? AND n >= ? AND n <= ? ORDER BY n LIMIT ?",
                (dev.kid, nxt, limit, _WALK),
            ):
                if m != dev.ack + 1:
                    break
                dev.ack = m
                progressed = True
            if not progressed:
                break
        if dev.ack != start:
            self._changed[dev.kid] = dev.ack
            self._dirty.add(dev.kid)

    def _equivocation(
        self, kid: str, n: int, payload_bytes: bytes, raw: bytes, received_ms: int, day: str
    ) -> None:
        digest = _sha256(payload_bytes).digest()
        kept = self.conn.execute("SELECT count(*) FROM evidence WHERE kid = ?", (kid,)).fetchone()
        if int(kept[0]) < self.evidence_per_device:
            cur = self.conn.execute(
                "INSERT INTO evidence (kid, n, payload_sha256, payload, raw, received_ms)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (kid, n, digest, payload_bytes, raw, received_ms),
            )
            if not cur.rowcount:
                return  # this very equivocating record was seen before: counted then
        self.findings.add(kid, day, "equivocation")
        cur = self.conn.execute(
            "UPDATE devices SET flagged = 1 WHERE kid = ? AND flagged = 0", (kid,)
        )
        self.events.append(
            f"equivocation: device {kid} signed two different payloads with n={n}"
            + ("; device flagged" if cur.rowcount else "")
        )
