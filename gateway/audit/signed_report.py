"""Signed period reports: a machine's MCR figures bound to a checkpoint of the log.

A report is a C2SP signed note (gateway/log/note.py) made with the log's key whose text is
exactly three lines: the log's origin, ``signet-period-report/1`` (not a decimal number, so
no tool can take it for a checkpoint), and one line of canonical JSON (``canonical_json``).
The JSON object's fields are listed in docs/AUDIT.md, "The signed period report".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Final

from signet_gateway.log.note import NoteError, Signer, Verifier, open_note, sign

__all__ = [
    "REPORT_LINE",
    "ReportNoteError",
    "canonical_json",
    "open_report",
    "receipts_digest",
    "sign_report",
]

REPORT_LINE: Final = "signet-period-report/1"
REQUIRED: Final = ("as_of_ms", "checkpoint", "device", "period", "records", "report", "rules")


class ReportNoteError(NoteError):
    """A report note that does not verify or is not a period report (one line)."""


def canonical_json(value: Any) -> str:
    """One spelling for a JSON value: sorted keys, no spaces, ASCII only, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)  # fmt: skip


def receipts_digest(pairs: Iterable[tuple[int, int]]) -> str:
    """Hex SHA-256 over (log index, receive time) pairs, each two 8-byte big-endian integers,
    in bundle order: the receive times are the gateway's word, and the report signs them."""
    digest = hashlib.sha256()
    for index, received_ms in pairs:
        digest.update(index.to_bytes(8, "big") + received_ms.to_bytes(8, "big"))
    return digest.hexdigest()


def sign_report(signer: Signer, content: dict[str, Any]) -> str:
    """The signed note of a period report (``content`` must hold every REQUIRED field)."""
    missing = [name for name in REQUIRED if name not in content]
    if missing:
        raise ValueError(f"a period report needs {', '.join(missing)}")
    return sign(f"{signer.name}\n{REPORT_LINE}\n{canonical_json(content)}\n", signer)


def open_report(data: bytes | str, verifier: Verifier) -> dict[str, Any]:
    """Verify a report note with the log's key and return its JSON object (strictly: the
    three lines, this log's origin, canonical JSON with every REQUIRED field)."""
    text = open_note(data, [verifier]).text
    lines = text[:-1].split("\n")
    if len(lines) != 3:
        raise ReportNoteError(f"a period report has 3 lines of text, this one {len(lines)}")
    origin, kind, body = lines
    if origin != verifier.name:
        raise ReportNoteError(f"the report is for log {origin!r}, not {verifier.name!r}")
    if kind != REPORT_LINE:
        raise ReportNoteError(f"line 2 is {kind[:40]!r}, not {REPORT_LINE!r}")
    try:
        content = json.loads(body)
    except ValueError as exc:
        raise ReportNoteError(f"the report's JSON does not parse: {exc}") from None
    if not isinstance(content, dict) or canonical_json(content) != body:
        raise ReportNoteError("the report's JSON is not one canonical JSON object")
    missing = [name for name in REQUIRED if name not in content]
    if missing:
        raise ReportNoteError(f"the report has no {', '.join(missing)}")
    return content
