"""The C2SP tlog-proof text of an inclusion proof: index, proof hashes, then the checkpoint.

Format (https://c2sp.org/tlog-proof, version ``c2sp.org/tlog-proof@v1``), lines separated
by U+000A:

    c2sp.org/tlog-proof@v1
    extra <base64>          optional, unauthenticated application data
    index <decimal>         zero-based, no leading zeroes
    <base64 hash>           zero or more: the RFC 6962 2.1.1 audit path, leaf's sibling first
                            (an empty line)
    <checkpoint>            the log's signed checkpoint, verbatim

Base64 is RFC 4648 section 4 (standard alphabet, padded). The checkpoint is opaque here:
a signed note in the C2SP tlog-checkpoint format, made and checked by ``checkpoint``;
this module only places it after the proof and hands it back. Parsing is strict (one
encoding per proof) so that a proof file either re-formats to the same bytes or is
refused with the reason.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .merkle import HASH_SIZE
from .note import NoteError, strict_b64decode

HEADER = b"c2sp.org/tlog-proof@v1"
FILE_EXTENSION = ".tlog-proof"
"""C2SP tlog-proof: proofs SHOULD be stored with this extension."""

_DECIMAL = re.compile(rb"0|[1-9][0-9]*")


class TlogProofError(ValueError):
    """A tlog-proof text that is not well formed; ``str()`` says where."""


@dataclass(frozen=True)
class TlogProof:
    """An inclusion proof with the checkpoint it leads to."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    """The signed checkpoint note, verbatim (ends with a newline)."""
    extra: bytes | None = None


def format_tlog_proof(proof: TlogProof) -> bytes:
    """The tlog-proof text of ``proof``."""
    if proof.index < 0:
        raise ValueError(f"a log index is not negative, got {proof.index}")
    for hash_ in proof.hashes:
        if len(hash_) != HASH_SIZE:
            raise ValueError(f"a proof hash is {HASH_SIZE} bytes, got {len(hash_)}")
    if not proof.checkpoint:
        raise ValueError("a tlog proof needs its checkpoint")
    lines = [HEADER]
    if proof.extra is not None:
        lines.append(b"extra " + base64.b64encode(proof.extra))
    lines.append(b"index %d" % proof.index)
    lines.extend(base64.b64encode(hash_) for hash_ in proof.hashes)
    lines.append(b"")
    return b"\n".join(lines) + b"\n" + proof.checkpoint


def parse_tlog_proof(text: bytes) -> TlogProof:
    """The proof in a tlog-proof text; raises TlogProofError naming the first problem."""
    head, separator, checkpoint = text.partition(b"\n\n")
    if not separator:
        raise TlogProofError("no empty line before the checkpoint")
    if not checkpoint:
        raise TlogProofError("no checkpoint after the empty line")
    lines = head.split(b"\n")
    if lines[0] != HEADER:
        raise TlogProofError(f"the first line is not {HEADER.decode()}")
    position = 1
    extra = None
    if position < len(lines) and lines[position].startswith(b"extra "):
        extra = _base64(lines[position][len(b"extra ") :], f"line {position + 1} (extra)")
        position += 1
    if position >= len(lines) or not lines[position].startswith(b"index "):
        raise TlogProofError(f"line {position + 1} is not the index line")
    digits = lines[position][len(b"index ") :]
    if not _DECIMAL.fullmatch(digits):
        raise TlogProofError(f"line {position + 1}: the index is not a plain decimal")
    index = int(digits)
    hashes = []
    for number, line in enumerate(lines[position + 1 :], start=position + 2):
        hash_ = _base64(line, f"line {number} (proof hash)")
        if len(hash_) != HASH_SIZE:
            raise TlogProofError(f"line {number}: a proof hash of {len(hash_)} bytes, not 32")
        hashes.append(hash_)
    return TlogProof(index=index, hashes=tuple(hashes), checkpoint=checkpoint, extra=extra)


def _base64(encoded: bytes, where: str) -> bytes:
    """Strict RFC 4648 section 4 base64 (standard alphabet, padded, canonical), as in notes."""
    try:
        return strict_b64decode(encoded.decode("ascii"), where)
    except UnicodeDecodeError:
        raise TlogProofError(f"{where} is not base64") from None
    except NoteError as err:
        raise TlogProofError(str(err)) from None
