"""The one device resolver (gateway/store/lookup.py), on device lists no real key could give:
shared prefixes, names that look like ids, duplicate names from before names were unique."""

from __future__ import annotations

import dataclasses

import pytest

from signet_gateway.store.lookup import MIN_PREFIX, resolve
from signet_gateway.store.model import Device, DeviceLookupError


def _device(kid: str, name: str | None = None, revoked: bool = False) -> Device:
    return Device(kid=kid, public_key=b"", curve="p256", tier="software", name=name,
                  evidence=None, enrolled_ms=0, revoked_ms=1 if revoked else None,
                  flagged=False)  # fmt: skip


A = "a" * 8 + "0" * 24
B = "a" * 8 + "1" * 24
C = "c" * 32


def test_full_id_unique_prefix_and_name() -> None:
    devices = [_device(A, "left"), _device(B, "right"), _device(C)]
    assert resolve(devices, C).kid == C
    assert resolve(devices, C.upper()).kid == C
    assert resolve(devices, "a" * 8 + "1").kid == B
    assert resolve(devices, "right").kid == B
    assert resolve(devices, " right ").kid == B  # blanks around a token are not part of it


def test_a_prefix_shorter_than_the_minimum_is_not_an_id() -> None:
    devices = [_device(C)]
    assert MIN_PREFIX == 8
    with pytest.raises(DeviceLookupError, match="at least 8 hex digits"):
        resolve(devices, "c" * (MIN_PREFIX - 1))
    assert resolve(devices, "c" * MIN_PREFIX).kid == C


def test_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(DeviceLookupError) as err:
        resolve([_device(A, "left"), _device(B)], "a" * 8)
    assert str(err.value) == (
        f"'aaaaaaaa' matches 2 devices: {A} ('left', active), {B} (active); give the full device id"
    )


def test_a_name_that_is_also_another_devices_prefix_is_ambiguous() -> None:
    with pytest.raises(DeviceLookupError, match="matches 2 devices"):
        resolve([_device(A), _device(C, name="aaaaaaaa")], "aaaaaaaa")


def test_a_name_means_its_active_holder_then_its_one_revoked_holder() -> None:
    old, new = _device(A, "sim-01", revoked=True), _device(C, "sim-01")
    assert resolve([old, new], "sim-01").kid == C
    assert resolve([old], "sim-01").kid == A
    with pytest.raises(DeviceLookupError, match="matches 2 devices"):
        resolve([old, _device(B, "sim-01", revoked=True)], "sim-01")


def test_duplicate_active_names_from_an_old_database_are_refused() -> None:
    devices = [_device(f"{i:032x}", "sim-01") for i in range(12)]
    with pytest.raises(DeviceLookupError) as err:
        resolve(devices, "sim-01")
    text = str(err.value)
    assert text.startswith("'sim-01' matches 12 devices: ") and text.count("'sim-01', active") == 10
    assert "and 2 more; give the full device id" in text


def test_nothing_given_or_nothing_found() -> None:
    with pytest.raises(DeviceLookupError, match="no device given"):
        resolve([_device(A)], "  ")
    with pytest.raises(DeviceLookupError, match="no device 'nobody' is enrolled"):
        resolve([_device(A)], "nobody")


def test_a_name_goes_with_the_newest_key_of_a_rotated_machine() -> None:
    old = Device(kid=A, public_key=b"", curve="p256", tier="software", name="kiosk",
                 evidence=None, enrolled_ms=0, revoked_ms=None, flagged=False, machine=A,
                 last_n=41)  # fmt: skip
    new = Device(kid=C, public_key=b"", curve="p256", tier="software", name="kiosk",
                 evidence=None, enrolled_ms=1, revoked_ms=None, flagged=False, machine=A,
                 replaces=A)  # fmt: skip
    assert resolve([old, new], "kiosk").kid == C
    revoked = dataclasses.replace(new, revoked_ms=1)
    assert resolve([old, revoked], "kiosk").kid == C  # revoked successor, not the rotated key
