"""The shapes of the API's answers (pydantic models): FastAPI validates every answer against
them and writes them into the OpenAPI document, so a client (and the fuzzing test) knows each
field. views.py builds the dicts; a field added there and not here is an error, not a leak."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["DeviceDetail", "Fleet", "Health", "Ready", "Records", "Refusals"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Strict):
    status: Literal["ok"]


class Ready(_Strict):
    ready: bool
    problems: list[str]


class FleetDevice(_Strict):
    device: str
    name: str | None
    machine: str
    tier: Literal["software", "hardware"]
    status: Literal["active", "rotated", "revoked"]
    flagged: bool
    enrolled_ms: int
    revoked_ms: int | None
    ack: int
    highest: int
    stored: int
    missing: int
    refused: int
    last_received_ms: int | None
    last_received: str | None
    online: bool | None  # the device's last word on its status topic; None: not heard
    status_ms: int | None  # when the gateway received that word


class Fleet(_Strict):
    as_of_ms: int | None
    devices: list[FleetDevice]
    refused_unattributed: int


class DeviceDetail(FleetDevice):
    curve: str
    public_key: str
    evidence_kind: str | None
    evidence_summary: dict[str, Any] | None
    evidence_bytes: int
    replaces: str | None
    last_n: int | None
    machine_keys: list[str]
    findings: dict[str, int]
    chain_breaks: list[int]
    equivocating_ns: list[int]


class StoredItem(_Strict):
    verdict: Literal["stored"]
    n: int
    kind: str
    b: int
    u: int
    t: int | None
    received_ms: int
    received: str
    late: bool
    future: bool
    chain_break: bool
    log_index: int | None
    fields: dict[str, Any]
    payload_hex: str
    raw_hex: str


class RefusedItem(_Strict):
    verdict: Literal["refused"]
    id: int
    device: str | None
    topic: str
    reason: str
    reason_text: str | None
    detail: str
    received_ms: int
    received: str
    size: int
    raw_hex: str


class Records(_Strict):
    device: str
    stored: list[StoredItem]
    next_after_n: int | None
    refused: list[RefusedItem]
    next_refused_before_id: int | None


class ReasonCount(_Strict):
    reason: str
    reason_text: str | None
    count: int


class Refusals(_Strict):
    by_reason: list[ReasonCount]
    items: list[RefusedItem]
    next_before_id: int | None
