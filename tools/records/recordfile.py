"""The record file `signet sign --out` appends to: read and checked under a lock, then appended.

A record is appended only to a file that every reader can still read to the end afterwards, and
only if it does not contradict what the file already holds. Refused, with the file untouched:

- a file that ends in bytes that are not a complete CBOR item (a write cut short): readers
  stop at the first unreadable item, so a record appended after it could never be read back;
- a file holding anything that is not a Signet COSE_Sign1 record (a PEM, a key file, a JSON
  document): appending binary would damage it, and it is not a record file anyway;
- a record whose key and n the file already holds: a second, different record with the same n
  is an equivocation (the gateway flags the device for it), and the same record again only
  duplicates it.

The file is locked (flock) from the first read to the append, so two `signet sign --out` on the
same file cannot both take the same n or chain to the same previous record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cbor2

from signet.record import GENESIS_HASH
from signet_gateway.verify.cose_decode import decode_envelope
from signet_gateway.verify.refusals import Refused

from . import cborseq

# Every record begins with tag 18 (COSE_Sign1) and its 4-element array: bytes that do not
# are not a record cut short but something else.
_RECORD_START = b"\xd2\x84"


class RecordFileError(Exception):
    """The file cannot take the record; the message says why and what to do."""


@dataclass(frozen=True)
class Held:
    """One record already in the file."""

    kid: bytes
    n: int | None  # None: the payload does not decode (still a record, refused by verify)
    payload: bytes
    raw: bytes


def _held(item: bytes) -> Held:
    envelope = decode_envelope(item)  # raises Refused
    try:
        payload = cbor2.loads(envelope.payload)
    except (cbor2.CBORDecodeError, ValueError):
        payload = None
    n = payload.get("n") if isinstance(payload, dict) else None
    return Held(envelope.kid, n if type(n) is int else None, envelope.payload, item)


def read_records(path: Path, data: bytes) -> list[Held]:
    """The records in `data` (the content of `path`); RecordFileError if it is not a record
    file that can be appended to."""
    held: list[Held] = []
    offset = 0
    for item in cborseq.split(data):
        if isinstance(item, cborseq.UnreadableTail):
            if not _RECORD_START.startswith(data[offset : offset + len(_RECORD_START)]):
                raise _not_a_record_file(path, offset, "not a complete CBOR item")
            raise RecordFileError(
                f"{path}: its last {item.size} bytes (from offset {item.offset}) are not a"
                f" complete record ({item.reason}), so a record appended after them could not"
                f" be read back; refusing to append. Keep the complete records with"
                f" `head -c {item.offset}` and try again"
            )
        try:
            held.append(_held(item))
        except Refused as exc:
            raise _not_a_record_file(path, offset, exc.reason) from None
        offset += len(item)
    return held


def _not_a_record_file(path: Path, offset: int, why: str) -> RecordFileError:
    return RecordFileError(
        f"{path} is not a Signet record file (the item at offset {offset} is not a COSE_Sign1"
        f" record: {why}); refusing to append a record to it"
    )


class RecordFile:
    """A record file opened for one append: its records, and the append itself."""

    def __init__(self, path: Path, f: BinaryIO | None, records: list[Held]) -> None:
        self.path = path
        self._f = f  # None: the file does not exist yet; it is created by the append
        self.records = records

    def last_hash(self, kid: bytes) -> bytes:
        """SHA-256 of this key's last payload in the file: the `p` of its next record."""
        last = GENESIS_HASH
        for rec in self.records:
            if rec.kid == kid:
                last = hashlib.sha256(rec.payload).digest()
        return last

    def check_new(self, kid: bytes, n: int, record: bytes) -> None:
        """RecordFileError if the file already holds this key's n."""
        same_key = [rec for rec in self.records if rec.kid == kid]
        for rec in same_key:
            if rec.n != n:
                continue
            if rec.raw == record:
                raise RecordFileError(
                    f"{self.path} already holds this record (n={n} of device {kid.hex()}):"
                    " not appended again"
                )
            following = max(r.n for r in same_key if r.n is not None) + 1
            raise RecordFileError(
                f"{self.path} already holds a different record n={n} of device {kid.hex()}:"
                " a second record with the same n is an equivocation (the gateway flags the"
                f" device for it); refusing to sign it. The next free n is {following}"
            )

    def append(self, kid: bytes, n: int, record: bytes) -> None:
        """Check, then append `record` and make it durable before returning."""
        self.check_new(kid, n, record)
        if self._f is None:
            try:  # O_EXCL: a file that appeared since it was read is not overwritten
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise RecordFileError(
                    f"{self.path} was created by another program while signing: run again"
                ) from None
            except OSError as exc:
                raise RecordFileError(f"cannot create {self.path}: {exc.strerror}") from None
            with os.fdopen(fd, "wb") as f:
                _write(f, record)
        else:
            self._f.seek(0, os.SEEK_END)
            _write(self._f, record)


def _write(f: BinaryIO, record: bytes) -> None:
    f.write(record)
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def open_for_append(path: Path) -> Iterator[RecordFile]:
    """The record file at `path`, locked against another writer until the block ends.

    A missing file is fine (the append creates it) if its directory exists. Raises
    RecordFileError naming the problem, before anything is written.
    """
    if not path.exists():
        if not path.parent.is_dir():
            why = "is not a directory" if path.parent.exists() else "does not exist"
            raise RecordFileError(f"cannot write {path}: {path.parent} {why}")
        yield RecordFile(path, None, [])
        return
    if path.is_dir():
        raise RecordFileError(f"cannot write {path}: it is a directory, not a record file")
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise RecordFileError(f"cannot open {path}: {exc.strerror}") from None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecordFileError(
                f"{path} is being written by another program (another `signet sign`?):"
                " try again when it is done"
            ) from None
        yield RecordFile(path, f, read_records(path, f.read()))
