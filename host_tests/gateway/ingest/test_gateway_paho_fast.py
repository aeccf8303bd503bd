"""gateway/ingest/paho_fast.py replaces a private paho decoder: it must agree with paho's own.

Differential: for any PUBLISH body (well formed or not), the patched decoder and
paho's original return equal packets or raise the same kind of error.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion

from signet_gateway.ingest import paho_fast

ORIGINAL = _packet.decode_publish
paho_fast.install()
FAST = _packet.decode_publish
V5 = MQTTProtocolVersion.MQTTv5


def _outcome(decode, header: int, body: bytes):
    try:
        p = decode(header, body, V5)
    except Exception as exc:  # paho raises several types: compare the type
        return ("error", type(exc).__name__)
    props = p.properties.json() if p.properties is not None else None
    return (p.dup, p.qos, p.retain, bytes(p.topic), p.mid, props, bytes(p.payload))


def test_install_is_active_and_idempotent() -> None:
    assert FAST is not ORIGINAL
    assert paho_fast.install() is True
    assert _packet.decode_publish is FAST


@given(
    topic=st.binary(max_size=80),
    qos=st.integers(0, 2),
    dup=st.booleans(),
    retain=st.booleans(),
    mid=st.integers(1, 65535),
    props=st.sampled_from([b"\x00", b"\x02\x01\x01", b"\x05\x02\x00\x00\x00\x3c"]),
    payload=st.binary(max_size=300),
)
def test_well_formed_publish_decodes_identically(
    topic: bytes, qos: int, dup: bool, retain: bool, mid: int, props: bytes, payload: bytes
) -> None:
    header = 0x30 | (dup << 3) | (qos << 1) | retain
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    body += props + payload
    assert _outcome(FAST, header, body) == _outcome(ORIGINAL, header, body)


@given(header=st.integers(0x30, 0x3F), body=st.binary(max_size=64))
def test_arbitrary_bytes_decode_identically(header: int, body: bytes) -> None:
    assert _outcome(FAST, header, body) == _outcome(ORIGINAL, header, body)
