"""The enrolled keys as the running gateway sees them, and when a change takes effect.

`signet enroll` and `signet revoke` write the database from another process while the
gateway runs. The writer thread asks SQLite whether another connection committed since it
last looked (``PRAGMA data_version``: a counter, ~2 us, no I/O) before every commit, and
once a second while idle, and reloads the keys when so. So an enrollment or a revocation
takes effect for every record the gateway receives after the command returned:

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

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys: dict[bytes, DevicePublicKey] = {}
        self.known: set[str] = set()  # every device id ever enrolled (revoked ones too)
        self.limits: dict[str, tuple[int | None, int | None]] = {}  # kid -> (revoked_ms, last_n)
        self._version = self._data_version()
        self._reload(initial=True)

    def _data_version(self) -> int:
        return int(self.store.conn.execute("PRAGMA data_version").fetchone()[0])

    def refresh(self) -> bool:
        """Reload if another connection committed since the last look; True if the set of
        active keys changed (the caller then tells its verifiers)."""
        version = self._data_version()  # read before the data: a commit in between is seen
        if version == self._version:  # at the next look, never lost
            return False
        changed = self._reload(initial=False)
        self._version = version  # only now: a reload that failed (store busy) is done again
        return changed

    def _reload(self, initial: bool) -> bool:
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
