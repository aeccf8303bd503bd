"""C2SP tlog checkpoints (https://c2sp.org/tlog-checkpoint): the log's signed tree head.

A checkpoint body is a note text of at least three non-empty lines: the origin (the log's
identity), the tree size in decimal without leading zeros, the base64 RFC 6962 root hash;
then optional extension lines. Signed, it is a C2SP signed note (note.py) whose key name is
the origin.

:class:`CheckpointSigner` is the one way the gateway signs one: it refuses to sign a
checkpoint inconsistent with the last one it signed ("A log MUST not sign any checkpoint
which is inconsistent with any checkpoint it previously signed", tlog-checkpoint,
"Signatures").
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .merkle import EMPTY_ROOT, HASH_SIZE
from .note import Note, NoteError, Signer, Verifier, check_text, open_note, sign, strict_b64decode

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSigner",
    "InconsistentCheckpoint",
    "SignedCheckpoint",
    "open_checkpoint",
    "parse",
]

# Tree sizes are unsigned 64-bit in RFC 9162; the store keeps them as SQLite integers, which
# are signed 64-bit: a size beyond that is refused rather than wrapped.
MAX_TREE_SIZE = (1 << 63) - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # "no leading zeroes (unless the tree is empty)"


class CheckpointError(NoteError):
    """A checkpoint body that is not the format (one line naming what is wrong)."""


class InconsistentCheckpoint(CheckpointError):
    """A checkpoint the log must not sign: it contradicts the last one it signed."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError(f"origin {self.origin!r}: must be one non-empty line")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size!r}: must be an integer 0..2^63-1")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError(f"root hash is {len(self.root)} bytes, not {HASH_SIZE}")
        for line in self.extensions:
            if not line or "\n" in line:
                raise CheckpointError(f"extension line {line!r}: must be one non-empty line")

    def body(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending in newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return check_text("".join(line + "\n" for line in (*lines, *self.extensions)))


def parse(text: str) -> Checkpoint:
    """A checkpoint body, strictly ("Note text"): no line may be empty, the size has no sign,
    spaces or leading zeros, the root is canonical base64 of exactly 32 bytes."""
    check_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(
            f"a checkpoint has at least 3 lines (origin, size, root hash), got {len(lines)}"
        )
    for number, line in enumerate(lines, 1):
        if not line:
            raise CheckpointError(f"checkpoint line {number} is empty")
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError(
            f"tree size {size_text[:40]!r} is not a decimal number without leading zeros"
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError(f"tree size {size_text} is larger than 2^63-1")
    root = strict_b64decode(root_text, "the root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash is {len(root)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin, size, root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: Note


def open_checkpoint(
    data: bytes | str, verifiers: Iterable[Verifier], origin: str | None = None
) -> SignedCheckpoint:
    """Verify a signed checkpoint (note.open_note) and parse its body; with ``origin``, the
    checkpoint must be that log's. Raises :class:`NoteError` (a :class:`CheckpointError` for
    the body)."""
    note = open_note(data, verifiers)
    checkpoint = parse(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return SignedCheckpoint(checkpoint, note)


# A consistency check supplied by the caller: True if ``new`` extends ``old`` (an RFC 9162
# consistency proof from old.size to new.size exists and verifies). The signer cannot compute
# it: it holds no tree.
ConsistencyCheck = Callable[[Checkpoint, Checkpoint], bool]


class CheckpointSigner:
    """Signs the log's checkpoints, never two inconsistent ones.

    It is given the last checkpoint the log signed (None for a new log; the caller keeps it
    durably and must store each new one before publishing it) and refuses, with
    :class:`InconsistentCheckpoint`, a tree size smaller than the last one's, the same size
    with another root (a split view), or a larger size that ``is_consistent`` does not
    accept. Signing the same size and root again is allowed (a fresh copy of the same head).
    """

    def __init__(
        self,
        signer: Signer,
        last: Checkpoint | None,
        is_consistent: ConsistencyCheck,
    ) -> None:
        if last is not None and last.origin != signer.name:
            raise CheckpointError(
                f"the last checkpoint is for log {last.origin!r}, this key signs for"
                f" {signer.name!r}"
            )
        self._signer = signer
        self._last = last
        self._is_consistent = is_consistent
        self._lock = threading.Lock()  # a check and its update are one step

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def last(self) -> Checkpoint | None:
        return self._last

    def sign(self, size: int, root: bytes, extensions: tuple[str, ...] = ()) -> str:
        """The signed note of the checkpoint (origin, size, root); it becomes the last one."""
        checkpoint = Checkpoint(self.origin, size, root, tuple(extensions))
        with self._lock:
            self._check(checkpoint)
            note = sign(checkpoint.body(), self._signer)
            self._last = checkpoint
        return note

    def _check(self, new: Checkpoint) -> None:
        if new.size == 0 and new.root != EMPTY_ROOT:
            # RFC 9162 2.1.1: the hash of an empty list is SHA-256 of the empty string.
            raise InconsistentCheckpoint("tree size 0 with a root other than the empty tree's")
        last = self._last
        if last is None:
            return
        if new.size < last.size:
            raise InconsistentCheckpoint(
                f"tree size {new.size} is smaller than the last signed checkpoint's"
                f" ({last.size}): a log never shrinks"
            )
        if new.size == last.size:
            if new.root != last.root:
                raise InconsistentCheckpoint(
                    f"tree size {new.size} with a root other than the last signed checkpoint's"
                    " at that size (a split view)"
                )
            return
        if last.size == 0:
            return  # every tree extends the empty one (RFC 9162 defines no proof from size 0)
        if not self._is_consistent(last, new):
            raise InconsistentCheckpoint(
                f"the tree of size {new.size} does not extend the last signed checkpoint's"
                f" ({last.size}): no consistency proof verifies"
            )
