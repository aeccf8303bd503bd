"""The enrolled keys as the running gateway sees them, and when a change takes effect.

`signet enroll` and `signet revoke` write the database from another process while the
gateway runs. The writer thread asks whether another connection committed since it last
looked before every commit, and once a second while idle, and reloads the keys when so:
SQLite's own counter (``PRAGMA data_version``: ~2 us, no I/O), or on PostgreSQL the write
generation every write transaction bumps (store/generation.py: one indexed read; a foreign
generation seen by the writer's own transaction counts too), and then the keys' own counter,
which only enrollments, rotations and revocations bump: other workers' batches are most of
the foreign writes and need no reload. So an enrollment or a
revocation takes effect for every record the gateway receives after the command returned:

- The verifier processes work on a snapshot of the keys and may refuse a record of a key
  enrolled after their snapshot as ``unknown_key``. Before such a refusal is committed,
  :meth:`Enrollment.now_enrolled` picks the messages whose device is enrolled and active
  now, and the writer verifies them again with the current keys. Only a dict lookup per
  refused message: a flood of records from unknown keys costs no database query each.
- Revoked and rotated keys stay in the key set: their records are verified, then the
  writer (``BatchWriter``'s ``key_limits``, which is :attr:`Enrollment.limits`) refuses those
  received at or after the revocation moment (``revoked``) and those numbered above the last
  n of a rotated key (``rotated``). The moment is compared with each record's receive time,
  so a revocation scheduled ahead takes effect while the gateway runs, with no reload; and a
  forged record of a revoked key is still refused for its signature, not for the revocation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from signet_gateway.store.generation import Generations, read
from signet_gateway.store.model import iso_ms
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.pubkeys import DevicePublicKey

from .writer import Message, Rejection

__all__ = ["UNKNOWN_KEY", "Enrollment"]

log = logging.getLogger("signet.gateway")

UNKNOWN_KEY = "unknown_key"


class Enrollment:
    """Keys of every enrolled device, their ids, and the limits of revoked and rotated keys;
    used by the writer thread.

    ``keys`` and ``limits`` are mutated in place, so a ``Verifier`` built on the one and a
    ``BatchWriter`` on the other stay current.
    """

    def __init__(self, store: Store, generations: Generations | None = None) -> None:
        self.store = store
        self.generations = Generations(store.conn) if generations is None else generations
        self._stale = False  # PostgreSQL: another process wrote since the last reload
        self.generations.on_foreign_write(self._another_wrote)
        # PostgreSQL: the keys' counter at the last reload (generation.KEYS_BUMP): another
        # worker's records change nothing here, and are most of what others write.
        self._keys_seen = read(store.conn, "keys") if self.generations.counts else 0
        self.reloads = 0  # the keys read again after the first time
        self.keys: dict[bytes, DevicePublicKey] = {}
        self.known: set[str] = set()  # every device id ever enrolled (revoked ones too)
        self.limits: dict[str, tuple[int | None, int | None]] = {}  # kid -> (revoked_ms, last_n)
        self._version = self._data_version()
        self._reload(initial=True)

    def _data_version(self) -> int:
        if self.generations.counts:
            return 0  # PostgreSQL: no data_version; the generation says it (refresh)
        return int(self.store.conn.execute("PRAGMA data_version").fetchone()[0])

    def _another_wrote(self) -> None:
        self._stale = True

    def refresh(self) -> bool:
        """Reload if another connection committed since the last look; True if the set of
        active keys changed (the caller then tells its verifiers)."""
        if self.generations.counts:
            self.generations.check()  # another process's write: _another_wrote
            if not self._stale:
                return False
            self._stale = False
            try:
                keys = read(self.store.conn, "keys")  # before the keys: a change between is
                if keys == self._keys_seen:  # seen at the next look, never lost
                    return False
                changed = self._reload(initial=False)
            except BaseException:
                self._stale = True  # a reload that failed (store busy) is done again
                raise
            self._keys_seen = keys
            return changed
        version = self._data_version()  # read before the data: a commit in between is seen
        if version == self._version:  # at the next look, never lost
            return False
        changed = self._reload(initial=False)
        self._version = version  # only now: a reload that failed (store busy) is done again
        return changed

    def _reload(self, initial: bool) -> bool:
        self.reloads += not initial
        fresh = self.store.all_keys()
        limits = self.store.key_limits()
        changed = False
        for kid in list(self.keys):
            if kid not in fresh:  # not done by any command; a database restored from a backup
                del self.keys[kid]
                changed = True
        for kid, key in fresh.items():
            if kid not in self.keys:
                self.keys[kid] = key
                changed = True
                if not initial:
                    log.info("device %s enrolled", kid.hex())
        for kid, (revoked_ms, last_n) in limits.items():
            before = self.limits.get(kid, (None, None))
            if not initial and revoked_ms != before[0] and revoked_ms is not None:
                log.info(
                    "device %s revoked from %s: records received from then on are refused",
                    kid,
                    iso_ms(revoked_ms),
                )
            if not initial and last_n != before[1] and last_n is not None:
                log.info(
                    "device %s rotated to a new key: its records above n=%d are refused",
                    kid,
                    last_n,
                )
        self.limits.clear()
        self.limits.update(limits)
        self.known |= {kid for (kid,) in self.store.conn.execute("SELECT kid FROM devices")}
        return changed

    def now_enrolled(self, messages: Iterable[Message]) -> list[Message]:
        """Messages with a record refused ``unknown_key`` whose device is enrolled and active
        now: verified with an older snapshot of the keys, they must be verified again."""
        keys = self.keys
        out = []
        for m in messages:
            if not m.kid or m.rejection is not None:
                continue  # refused as a whole (topic, size, framing): not a key question
            for item in m.results:
                if type(item) is Rejection and item.reason == UNKNOWN_KEY:
                    if bytes.fromhex(m.kid) in keys:
                        out.append(m)
                    break
        return out
