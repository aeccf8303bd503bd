"""MQTT message framing (PROTOCOL 7): topics, batches and the ack payload.

Pure functions, no I/O: the ingest pipeline calls them in its verifier threads.
"""

from __future__ import annotations

from typing import Final

from signet_gateway.verify.refusals import Refused

__all__ = [
    "ACK_TOPIC_FMT",
    "MAX_BATCH_BYTES",
    "REC_SUBSCRIPTION",
    "STATUS_SUBSCRIPTION",
    "BadTopic",
    "ack_payload",
    "ack_topic",
    "device_of_status_topic",
    "device_of_topic",
    "parse_ack",
    "split_message",
]

REC_SUBSCRIPTION: Final = "signet/v1/+/rec"
STATUS_SUBSCRIPTION: Final = "signet/v1/+/status"  # PROTOCOL 7.4: online / offline, retained
ACK_SUBSCRIPTION: Final = "signet/v1/+/ack"
ACK_TOPIC_FMT: Final = "signet/v1/{}/ack"
MAX_BATCH_BYTES: Final = 65536

_PREFIX: Final = b"signet/v1/"
_SUFFIX: Final = b"/rec"
_TOPIC_LEN: Final = len(_PREFIX) + 32 + len(_SUFFIX)
_HEX: Final = frozenset(b"0123456789abcdef")


class BadTopic(Exception):
    """The topic is not ``signet/v1/<32 lowercase hex>/rec`` (refusal reason ``bad_topic``)."""

    reason: Final = "bad_topic"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def device_of_topic(topic: bytes) -> str:
    """The device id in a ``rec`` topic, or :class:`BadTopic`.

    Subscribing to ``signet/v1/+/rec`` already fixes the shape, but ``+`` matches any
    level: ``signet/v1/NOT-A-KID/rec`` arrives too and must not reach the verifier.
    """
    if (
        len(topic) == _TOPIC_LEN
        and topic.startswith(_PREFIX)
        and topic.endswith(_SUFFIX)
        and _HEX.issuperset(topic[10:42])
    ):
        return topic[10:42].decode("ascii")
    shown = topic[:120].decode("utf-8", "replace")
    raise BadTopic(f"topic {shown!r} is not signet/v1/<device id: 32 lowercase hex digits>/rec")


_STATUS_SUFFIX: Final = b"/status"


def device_of_status_topic(topic: bytes) -> str | None:
    """The device id in a ``signet/v1/<id>/status`` topic, or None for any other topic."""
    if (
        len(topic) == len(_PREFIX) + 32 + len(_STATUS_SUFFIX)
        and topic.startswith(_PREFIX)
        and topic.endswith(_STATUS_SUFFIX)
        and _HEX.issuperset(topic[10:42])
    ):
        return topic[10:42].decode("ascii")
    return None


def _head(data: bytes, pos: int, major: int, what: str) -> tuple[int, int]:
    """Decode a definite, shortest-form CBOR head of the given major type at pos."""
    if pos >= len(data):
        raise Refused("malformed", f"batch truncated at offset {pos}: {what} expected")
    ib = data[pos]
    if ib >> 5 != major:
        raise Refused(
            "malformed", f"batch offset {pos}: {what} expected, found initial byte 0x{ib:02x}"
        )
    ai = ib & 0x1F
    if ai < 24:
        return ai, pos + 1
    size = {24: 1, 25: 2, 26: 4}.get(ai)
    if size is None:
        raise Refused(
            "malformed",
            f"batch offset {pos}: {what} must have a definite length that fits the 64 KiB limit",
        )
    end = pos + 1 + size
    if end > len(data):
        raise Refused("malformed", f"batch truncated at offset {pos}: {what} length cut off")
    value = int.from_bytes(data[pos + 1 : end], "big")
    if value < (24, 0x100, 0x10000)[size >> 1]:
        raise Refused(
            "malformed", f"batch offset {pos}: {what} length {value} not in shortest form"
        )
    return value, end


def split_message(payload: bytes) -> list[bytes]:
    """One ``rec`` message -> the records in it (PROTOCOL 7.2).

    First byte 0xd2: a single record (returned as is; the verifier checks it).
    Otherwise a definite CBOR array of byte strings, at most 64 KiB in all; any
    problem with the batch as a whole refuses the whole message.
    """
    size = len(payload)
    if size and payload[0] == 0xD2:
        if size > MAX_BATCH_BYTES:
            raise Refused("too_large", f"message of {size} bytes is over the 64 KiB limit")
        return [payload]
    if size > MAX_BATCH_BYTES:
        raise Refused(
            "too_large", f"batch of {size} bytes is over the {MAX_BATCH_BYTES}-byte limit"
        )
    if not size:
        raise Refused("malformed", "empty message: neither a record nor a batch")
    if payload[0] >> 5 != 4:
        raise Refused(
            "malformed",
            f"message starts with 0x{payload[0]:02x}: neither a record (0xd2) nor a batch "
            "(a definite-length CBOR array)",
        )
    count, pos = _head(payload, 0, 4, "array")
    if count == 0:
        raise Refused("malformed", "empty batch: a batch holds at least one record")
    records: list[bytes] = []
    for i in range(count):
        length, pos = _head(payload, pos, 2, f"element {i} (a byte string)")
        end = pos + length
        if end > size:
            raise Refused("malformed", f"batch element {i} of {length} bytes is cut off")
        records.append(payload[pos:end])
        pos = end
    if pos != size:
        raise Refused(
            "malformed", f"{size - pos} trailing bytes after the batch's {count} elements"
        )
    return records


def rec_topic(device_id: str) -> str:
    return f"signet/v1/{device_id}/rec"


def ack_topic(device_id: str) -> str:
    return ACK_TOPIC_FMT.format(device_id)


def ack_payload(n: int) -> bytes:
    """Deterministic CBOR ``{"n": n}``: a1 61 6e, then n as a shortest-form uint."""
    if n < 0 or n > 2**53 - 1:
        raise ValueError(f"ack {n} out of range")
    if n < 24:
        head = bytes((n,))
    elif n < 0x100:
        head = bytes((0x18, n))
    elif n < 0x10000:
        head = b"\x19" + n.to_bytes(2, "big")
    elif n < 0x100000000:
        head = b"\x1a" + n.to_bytes(4, "big")
    else:
        head = b"\x1b" + n.to_bytes(8, "big")
    return b"\xa1\x61\x6e" + head


def parse_ack(payload: bytes) -> int | None:
    """The n of an ack payload, or None if it is not exactly a deterministic {"n": uint}."""
    if not payload.startswith(b"\xa1\x61\x6e") or len(payload) < 4:
        return None
    body = payload[3:]
    ib = body[0]
    if ib < 24:
        n, used = ib, 1
    else:
        size = {0x18: 1, 0x19: 2, 0x1A: 4, 0x1B: 8}.get(ib)
        if size is None or len(body) < 1 + size:
            return None
        n, used = int.from_bytes(body[1 : 1 + size], "big"), 1 + size
    if used != len(body) or n > 2**53 - 1 or ack_payload(n) != payload:
        return None
    return n
