"""While the store is full or cannot be written: how long to wait between tries, what to log.

The writer keeps the batch it could not commit and tries the same batch again, first after
``RETRY_FIRST_S``, then doubling up to ``RETRY_MAX_S``; nothing of it is acknowledged
meanwhile (no PUBACK, no ack: the broker and the devices keep the records). The outage is
logged when it starts, once a minute while it lasts, and when it ends; these lines are
stable (docs/GATEWAY.md, "Faults"):

    store full, not acknowledging until it can be written (devices keep their records): CAUSE
    store still full after 60 s, not acknowledging (812 messages waiting): CAUSE
    store writable again after 75 s; storing and acknowledging

(``unwritable`` in place of ``full`` for a read-only file or filesystem, an I/O error, a
write lock held elsewhere: gateway/store/faults.py.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = ["LOG_EVERY_S", "RETRY_FIRST_S", "RETRY_MAX_S", "StoreOutage"]

log = logging.getLogger("signet.gateway")

RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 5.0
LOG_EVERY_S: Final = 60.0


class StoreOutage:
    """The store's state as the writer last found it; used by the writer thread (``problem``
    is read by others: a single attribute, replaced whole)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.fault: str | None = None  # "full" or "unwritable" while it lasts
        self.problem: str | None = None  # "store full: CAUSE", for the readiness
        self._since = 0.0
        self._logged = 0.0
        self._delay = RETRY_FIRST_S

    def failed(self, fault: str, cause: str, waiting: int) -> float:
        """A commit failed for ``fault``; log as due; returns the seconds to wait."""
        now = self._clock()
        if self.fault is None:
            self._since = self._logged = now
            self._delay = RETRY_FIRST_S
            log.warning(
                "store %s, not acknowledging until it can be written (devices keep their"
                " records): %s",
                fault,
                cause,
            )
        elif now - self._logged >= LOG_EVERY_S or fault != self.fault:
            self._logged = now
            log.warning(
                "store still %s after %.0f s, not acknowledging (%d messages waiting): %s",
                fault,
                now - self._since,
                waiting,
                cause,
            )
        self.fault = fault
        self.problem = f"store {fault}: {cause}"
        delay, self._delay = self._delay, min(self._delay * 2, RETRY_MAX_S)
        return delay

    def recovered(self) -> None:
        """A commit succeeded: if the store was unavailable, say that it is back."""
        if self.fault is None:
            return
        log.info(
            "store writable again after %.0f s; storing and acknowledging",
            self._clock() - self._since,
        )
        self.fault = None
        self.problem = None
