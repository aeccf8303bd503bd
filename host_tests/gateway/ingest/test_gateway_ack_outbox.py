"""AckOutbox: the broker ends up holding every device's latest committed ack, whatever order
paho's publishes reach it in around a reconnect, and nothing asks paho's message infos."""

from __future__ import annotations

import logging

import pytest

from signet_gateway.ingest.ack_outbox import AckOutbox


class FakeBroker:
    """paho and the broker as the outbox sees them: publishes get mids; the broker holds the
    last value it processed per device; PUBACKs come back when the test says so."""

    def __init__(self) -> None:
        self.up = True
        self.next_mid = 1
        self.sent: dict[int, tuple[str, int]] = {}  # mid -> (device, ack), not processed yet
        self.retained: dict[str, int] = {}
        self.outbox = AckOutbox(self.send, lambda: self.up, lambda: {"a": 7, "b": 3})

    def send(self, kid: str, n: int) -> int:
        mid = self.next_mid
        self.next_mid += 1
        self.sent[mid] = (kid, n)
        return mid

    def process(self, *mids: int, failed: bool = False) -> None:
        """The broker processes these publishes in this order and PUBACKs them."""
        for mid in mids:
            kid, n = self.sent.pop(mid)
            if not failed:
                self.retained[kid] = n
            self.outbox.puback(mid, failed, "Not authorized" if failed else "Success")

    def process_all(self, failed: bool = False) -> None:
        self.process(*sorted(self.sent), failed=failed)


def test_the_latest_ack_wins_when_paho_resends_an_old_publish_after_a_new_one() -> None:
    fake = FakeBroker()
    box = fake.outbox
    box.publish({"a": 5})  # mid 1
    fake.up = False  # the connection drops before the broker processed it: paho keeps mid 1
    box.publish({"a": 6})  # committed while down: not handed to paho, due after the connect
    assert set(fake.sent) == {1}
    fake.up = True
    box.connected()
    box.reconcile()  # republishes every committed ack: a=7 (mid 2), b=3 (mid 3)
    assert sorted(fake.sent.values()) == [("a", 5), ("a", 7), ("b", 3)]
    # paho sent the new publish before resending the old one: the broker ends with a=5 ...
    fake.process(2, 3, 1)
    assert fake.retained == {"a": 5, "b": 3}
    box.reconcile()  # ... which its PUBACK shows: the latest goes out again
    assert list(fake.sent.values()) == [("a", 7)]
    fake.process_all()
    box.reconcile()
    assert fake.retained == {"a": 7, "b": 3}
    assert box.settled() and not fake.sent


def test_acks_in_flight_in_order_cause_no_extra_publish() -> None:
    fake = FakeBroker()
    box = fake.outbox
    for n in range(1, 6):
        box.publish({"a": n})
    fake.process_all()
    box.reconcile()
    assert fake.retained == {"a": 5} and box.published == 5 and box.settled()


def test_after_a_connect_every_committed_ack_is_published_again() -> None:
    fake = FakeBroker()
    box = fake.outbox
    box.publish({"a": 7, "b": 3})
    fake.process_all()
    box.reconcile()
    fake.retained.clear()  # a broker killed before its autosave: its retained acks are gone
    box.connected()
    box.reconcile()
    fake.process_all()
    box.reconcile()
    assert fake.retained == {"a": 7, "b": 3} and box.settled()


def test_nothing_is_handed_to_paho_while_the_link_is_down() -> None:
    fake = FakeBroker()
    fake.up = False
    fake.outbox.publish({"a": 1, "b": 1})
    fake.outbox.reconcile()
    assert not fake.sent and not fake.outbox.settled()
    fake.up = True
    fake.outbox.reconcile()
    assert sorted(fake.sent.values()) == [("a", 1), ("b", 1)]


def test_an_ack_the_broker_refuses_is_logged_and_tried_again_after_the_next_connect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeBroker()
    box = fake.outbox
    with caplog.at_level(logging.ERROR, logger="signet.gateway"):
        box.publish({"a": 4})
        fake.process_all(failed=True)
        box.reconcile()
        box.publish({"a": 5})  # refused before: not published again on this connection
    assert not fake.sent
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("the broker refused the ack of device a (Not authorized)")
    box.connected()
    box.reconcile()
    fake.process_all()
    box.reconcile()
    assert fake.retained == {"a": 7, "b": 3}


def test_a_publish_paho_did_not_take_is_tried_again() -> None:
    taken: list[tuple[str, int]] = []
    refuse = [True]

    def send(kid: str, n: int) -> int | None:
        if refuse[0]:
            return None
        taken.append((kid, n))
        return len(taken)

    box = AckOutbox(send, lambda: True)
    box.publish({"a": 2})
    assert not taken and not box.settled()
    refuse[0] = False
    box.reconcile()
    assert taken == [("a", 2)]
