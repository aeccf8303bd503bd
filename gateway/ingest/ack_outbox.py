"""The devices' acks on their way to the broker, until the broker holds the latest of each.

An ack is retained and idempotent (PROTOCOL 7.3): what must hold, per device, is that the
last ack the broker processed on its topic is the device's latest committed ack. paho's
message infos are the wrong tool for that: ``is_published()`` and ``wait_for_publish()``
raise for any publish that did not go out at once (rc NO_CONN, when the connection had
dropped), even after paho has sent it on the next connection, and a broker restarted from
an older save holds older retained acks whatever paho confirmed. So no info is asked
anything here. A publish is tracked by its packet id (mid) alone, and the broker's PUBACKs,
which arrive in the order it processed the publishes, say which ack it now holds:

- Every committed ack becomes the device's ``wanted`` ack and is published while the link
  is up; while it is down it waits (nothing is handed to paho to queue).
- A publish paho accepted (sent, or queued while the connection was dropping: paho sends
  those after the reconnect) is in flight until its PUBACK; then the broker holds that value.
- A PUBACK for an older value than the device's wanted ack, once no publish of the wanted
  ack is still in flight, means the broker holds a stale ack (paho resent an old publish
  after a newer one, around a reconnect): the wanted ack is published again.
- After every (re)connect nothing the broker holds is known (a killed broker restores its
  last save): every device's committed ack is published again.
- A PUBACK with a failure reason (an ACL that does not let the gateway publish acks) is
  logged; that device's ack is published again only after the next connect.

Threads: the network thread only appends to a deque (:meth:`puback`, :meth:`connected`);
everything else runs in the thread that calls :meth:`publish` and :meth:`reconcile` (the
writer; the main thread at shutdown, after the writer ended).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Final

from .link_state import Throttle

__all__ = ["AckOutbox"]

log = logging.getLogger("signet.gateway")

_CONNECTED: Final = None  # deque marker: a connection was made


class AckOutbox:
    """``send(kid, n)`` publishes one ack and returns its mid, or None if paho did not take it;
    ``is_up()`` says whether the broker connection is up; ``committed()`` returns every
    device's committed ack (read after each connect)."""

    def __init__(
        self,
        send: Callable[[str, int], int | None],
        is_up: Callable[[], bool],
        committed: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self._send = send
        self._is_up = is_up
        self.committed = committed
        self.wanted: dict[str, int] = {}  # device -> latest committed ack
        self.held: dict[str, int] = {}  # device -> ack the broker confirmed last (this connection)
        self._in_flight: dict[int, tuple[str, int]] = {}  # mid -> (device, ack)
        self._last_mid: dict[str, int] = {}  # device -> mid of its newest publish
        self._due: set[str] = set()  # devices to publish at the next chance
        self._refused: set[str] = set()  # the broker refused their ack: wait for a reconnect
        self._events: collections.deque[tuple[int, bool, str] | None] = collections.deque()
        self._refusals = Throttle(burst=3, every_s=300)
        self._republish_all = False
        self.published = 0  # publishes handed to paho

    # -- network thread ------------------------------------------------------------------------

    def puback(self, mid: int, failed: bool, reason: str) -> None:
        self._events.append((mid, failed, reason))

    def connected(self) -> None:
        self._events.append(_CONNECTED)

    # -- the publishing thread -----------------------------------------------------------------

    def publish(self, acks: dict[str, int]) -> None:
        """Committed acks to publish (advanced, or to be sent again); published now if the
        link is up, else after the next connect."""
        wanted = self.wanted
        for kid, n in acks.items():
            if n >= wanted.get(kid, 0):  # committed acks never decrease
                wanted[kid] = n
        self._due.update(acks)
        self.reconcile()

    def reconcile(self) -> None:
        """Take in the PUBACKs and connects seen since the last call; publish what is due."""
        events = self._events
        while events:
            event = events.popleft()
            if event is _CONNECTED:
                self.held.clear()
                self._refused.clear()
                self._republish_all = True
                continue
            self._confirmed(*event)
        if not self._is_up():
            return
        if self._republish_all:
            self._republish_all = False
            try:
                committed = self.committed()
            except Exception as exc:  # the store cannot be read now: publish what is known
                log.warning("cannot read the committed acks (%s); republishing those known", exc)
                committed = {}
            for kid, n in committed.items():
                if n >= self.wanted.get(kid, 0):
                    self.wanted[kid] = n
            self._due.update(self.wanted)
            if self.wanted:
                log.info("republished the committed ack of %d devices", len(self.wanted))
        if self._due:
            due, self._due = self._due, set()
            for kid in due:
                if kid not in self._refused:
                    self._publish(kid, self.wanted[kid])

    def _confirmed(self, mid: int, failed: bool, reason: str) -> None:
        entry = self._in_flight.pop(mid, None)
        if entry is None:
            return  # not an ack of ours (or of a connection before a restart of this object)
        kid, n = entry
        if failed:
            self._refused.add(kid)
            held_back = self._refusals.allow()
            if held_back is not None:
                more = f" ({held_back} more like it not logged)" if held_back else ""
                log.error(
                    "the broker refused the ack of device %s (%s): check that its access"
                    " control lets the gateway publish signet/v1/+/ack%s",
                    kid,
                    reason,
                    more,
                )
            return
        self.held[kid] = n
        wanted = self.wanted.get(kid, 0)
        if n != wanted and self._last_mid.get(kid) not in self._in_flight:
            # The broker processed an older ack after the newest one: publish the newest again.
            self._due.add(kid)

    def _publish(self, kid: str, n: int) -> None:
        mid = self._send(kid, n)
        self.published += 1
        if mid is None:  # paho did not take it: try again at the next chance
            self._due.add(kid)
            return
        self._in_flight[mid] = (kid, n)
        self._last_mid[kid] = mid

    # -- state -----------------------------------------------------------------------------------

    def settled(self) -> bool:
        """Nothing in flight or due: the broker confirmed every ack published."""
        return not self._in_flight and not self._due and not self._events
