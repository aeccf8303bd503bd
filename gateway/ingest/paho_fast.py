"""A faster PUBLISH decoder for paho-mqtt 2.x under MQTT v5 (measured: the gateway's hottest
Python code after OpenSSL).

paho builds a fresh ``Properties`` object for every v5 PUBLISH it receives, and
``Properties.unpack`` starts by ``clear()``-ing it: about 30 ``str.replace`` and
``hasattr`` calls per message, ~20 us, a quarter of paho's receive cost and as
much as the gateway's whole storage step. Devices send no PUBLISH properties,
so the property block is the single byte 0x00. For exactly that case this
decoder returns the same ``PublishPacket`` with one shared, empty, never-mutated
``Properties``; every other packet (properties present, anything unexpected)
goes to paho's own decoder unchanged, which also raises paho's errors.

Installed once by :func:`install` (idempotent). If paho's internals are not
the ones this was written against (``_packet.decode_publish`` and
``PublishPacket`` missing), nothing is patched and paho runs as shipped.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]

_installed = False


def install() -> bool:
    """Patch paho's PUBLISH decoder; True if the fast path is active."""
    global _installed
    if _installed:
        return True
    try:
        from paho.mqtt import _packet
        from paho.mqtt.enums import MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
    except ImportError:
        return False
    original = getattr(_packet, "decode_publish", None)
    packet_type = getattr(_packet, "PublishPacket", None)
    if original is None or packet_type is None:
        return False
    v5 = MQTTProtocolVersion.MQTTv5
    empty = Properties(PacketTypes.PUBLISH)

    def decode_publish(header: int, packet: bytes | bytearray, protocol: Any) -> Any:
        if protocol == v5:
            size = len(packet)
            if size >= 3:
                slen = (packet[0] << 8) | packet[1]
                pos = 2 + slen
                qos = (header & 0x06) >> 1
                mid = 0
                if qos and pos + 2 <= size:
                    mid = (packet[pos] << 8) | packet[pos + 1]
                    pos += 2
                if 0 < qos < 3 and pos < size and packet[pos] == 0:
                    return packet_type(
                        dup=bool(header & 0x08),
                        qos=qos,
                        retain=bool(header & 0x01),
                        topic=bytes(packet[2 : 2 + slen]),
                        mid=mid,
                        properties=empty,
                        payload=bytes(packet[pos + 1 :]),
                    )
        return original(header, packet, protocol)

    _packet.decode_publish = decode_publish
    _installed = True
    return True
