"""`signet audit records`: a machine's stored records as the bytes `signet verify` reads.

A CBOR sequence (RFC 8742) is records written one after the other, exactly as received:
each key of the machine oldest first, its records in sequence order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from signet_gateway.mcr.report import resolve_devices

__all__ = ["machine_records"]


def machine_records(conn: sqlite3.Connection, device: str) -> tuple[str, Iterator[bytes]]:
    """(machine id, its raw records); ReportError if ``device`` names no single device."""
    machine = resolve_devices(conn, device)[0]

    def raws() -> Iterator[bytes]:
        for kid in machine.kids:
            for (raw,) in conn.execute("SELECT raw FROM records WHERE kid = ? ORDER BY n", (kid,)):
                yield bytes(raw)

    return machine.machine, raws()
