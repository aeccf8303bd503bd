"""The devices' online/offline words (PROTOCOL 7.4) as the gateway keeps them for the console:
only a device's status topic and one of the two words count, and memory stays bounded."""

from __future__ import annotations

import pytest

from signet_gateway.ingest import device_status
from signet_gateway.ingest.device_status import DeviceStatus

KID = "0123456789abcdef0123456789abcdef"


def test_the_last_word_of_each_device_counts() -> None:
    status = DeviceStatus()
    status.seen(f"signet/v1/{KID}/status".encode(), b"online", 10)
    status.seen(f"signet/v1/{KID}/status".encode(), b"offline", 20)
    assert status.snapshot() == {KID: (False, 20)}
    for topic, word in (
        (f"signet/v1/{KID}/status", b"Online"),  # the protocol's words are lowercase ASCII
        (f"signet/v1/{KID}/status", b""),  # a cleared retained message
        (f"signet/v1/{KID.upper()}/status", b"online"),
        ("signet/v1/not-a-device/status", b"online"),
        (f"signet/v1/{KID}/rec", b"online"),
    ):
        status.seen(topic.encode(), word, 30)
    assert status.snapshot() == {KID: (False, 20)} and status.ignored == 5


def test_a_flood_of_made_up_devices_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_status, "MAX_DEVICES", 3)
    status = DeviceStatus()
    kids = [f"{i:032x}" for i in range(5)]
    for kid in kids:
        status.seen(f"signet/v1/{kid}/status".encode(), b"online", 1)
    assert set(status.snapshot()) == set(kids[:3]) and status.ignored == 2
    status.seen(f"signet/v1/{kids[0]}/status".encode(), b"offline", 2)  # known: still updated
    assert status.snapshot()[kids[0]] == (False, 2)
