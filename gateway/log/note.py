"""C2SP signed notes (https://c2sp.org/signed-note, v1.0.0): sign a text, open a signed one.

A signed note is a text ending in a newline, a blank line, then one or more signature lines
``— <key name> <base64(4-byte key ID || signature)>``. Only Ed25519 (signature type 0x01)
is implemented: the gateway signs with one Ed25519 key, and a signature of any other type
is, to this code, a signature from an unknown key, which the spec says to ignore.

Opening is strict: anything the spec does not allow is refused with a :class:`NoteError`
whose message is one line naming the problem; nothing is repaired or skipped silently.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "EM_DASH",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "SIG_ED25519",
    "Note",
    "NoteError",
    "Signature",
    "Signer",
    "Verifier",
    "check_key_name",
    "check_text",
    "key_id",
    "open_note",
    "sign",
    "split",
    "strict_b64decode",
]

EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "
SIG_ED25519 = 0x01  # signed-note "Signature types"
ED25519_PUBLIC_SIZE = 32
ED25519_SIGNATURE_SIZE = 64

# The spec: verifiers SHOULD bound the number of signatures or the note's size and MUST accept
# at least 16 signatures, which may be post-quantum ones of nearly 5 kB each. 100 signatures is
# the bound of the Go reference implementation (golang.org/x/mod/sumdb/note); 256 KiB holds 16
# such signatures with room to spare and keeps a hostile note from costing more than that.
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 256 * 1024


class NoteError(ValueError):
    """A note or a key that is malformed, or a note that does not verify (one-line reason)."""


# -- names, key IDs, texts -------------------------------------------------------------------


def check_key_name(name: str, what: str = "key name") -> str:
    """Refuse a name the spec forbids: empty, a Unicode space, a plus sign ("Format")."""
    if not name:
        raise NoteError(f"{what} is empty")
    if not name.isascii() and not _encodable(name):
        raise NoteError(f"{what} is not valid Unicode (a lone surrogate)")
    for char in name:
        if char == "+" or char.isspace():  # str.isspace: every Unicode space (category Zs too)
            raise NoteError(f"{what} {name!r} contains {_describe(char)}: not allowed in a name")
        if _is_control(char):
            raise NoteError(f"{what} {name!r} contains {_describe(char)}")
    return name


def key_id(name: str, public_key: bytes) -> int:
    """The Ed25519 key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian
    ("Ed25519 signatures")."""
    if len(public_key) != ED25519_PUBLIC_SIZE:
        raise NoteError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([SIG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_control(char: str) -> bool:
    return ord(char) < 0x20  # the spec forbids "ASCII control characters (below U+0020)"


def _describe(char: str) -> str:
    label = unicodedata.name(char, "").lower() or "a control character"
    return f"U+{ord(char):04X} ({label})"


def check_text(text: str) -> str:
    """A note text the spec allows: it ends in a newline and holds no control character other
    than newline ("Format"). It MAY contain empty lines: the signatures start after the last
    blank line of the note, which is the one this code adds."""
    if not text.endswith("\n"):
        raise NoteError("the note text does not end with a newline")
    for pos, char in enumerate(text):
        if char != "\n" and _is_control(char):
            raise NoteError(f"the note text has {_describe(char)} at character {pos}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise NoteError("the note text is not valid Unicode (a lone surrogate)") from None
    if size > MAX_NOTE_BYTES:
        raise NoteError(f"the note text is {size} bytes, more than {MAX_NOTE_BYTES}")
    return text


def strict_b64decode(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 section 4), padded and canonical: one spelling per value, so
    that a note or key means exactly one thing."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64: {text[:60]!r}") from None
    if base64.b64encode(data).decode() != text:
        raise NoteError(f"{what} is not canonical base64: {text[:60]!r}")
    return data


# -- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """A known key: its name, its ID and its Ed25519 public key."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey | bytes) -> Verifier:
        raw = public_key if isinstance(public_key, bytes) else _raw_public(public_key)
        check_key_name(name)
        return cls(name, key_id(name, raw), raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<8 lowercase hex key ID>+<base64(0x01 || public key)>`` ("Verifier
        keys"); the ID must be the one the name and key give."""
        vkey = vkey.strip()
        name, plus1, rest = vkey.partition("+")
        hex_id, plus2, b64 = rest.partition("+")
        if not (plus1 and plus2):
            raise NoteError(f"verifier key {vkey[:80]!r} is not <name>+<key id>+<key>")
        check_key_name(name, "verifier key name")
        if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
            raise NoteError(f"verifier key {name}: key id {hex_id!r} is not 8 lowercase hex digits")
        material = strict_b64decode(b64, f"verifier key {name}: the key")
        if not material or material[0] != SIG_ED25519:
            kind = f"0x{material[0]:02x}" if material else "none"
            raise NoteError(f"verifier key {name}: signature type {kind}, not Ed25519 (0x01)")
        if len(material) != 1 + ED25519_PUBLIC_SIZE:
            raise NoteError(
                f"verifier key {name}: an Ed25519 key is 32 bytes, got {len(material) - 1}"
            )
        verifier = cls.from_public_key(name, material[1:])
        if f"{verifier.key_id:08x}" != hex_id:
            raise NoteError(
                f"verifier key {name}: key id {hex_id} does not match the key"
                f" ({verifier.key_id:08x})"
            )
        return verifier

    @property
    def vkey(self) -> str:
        material = base64.b64encode(bytes([SIG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{material}"

    @property
    def label(self) -> str:
        """How messages name a key: ``name+keyid``, as the Go implementation does."""
        return f"{self.name}+{self.key_id:08x}"

    def verifies(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class Signer:
    """An Ed25519 private key with the name its signatures carry."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.verifier = Verifier.from_public_key(name, private_key.public_key())
        self._private_key = private_key

    @property
    def name(self) -> str:
        return self.verifier.name

    def signature(self, text: str) -> Signature:
        sig = self._private_key.sign(check_text(text).encode())
        return Signature(self.name, self.verifier.key_id, sig)

    def __repr__(self) -> str:  # never the private key
        return f"Signer({self.verifier.label})"


# -- notes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """One signature line: the key's name and ID and the signature bytes after the ID."""

    name: str
    key_id: int
    signature: bytes

    @property
    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True)
class Note:
    """A note as opened: its text, the signatures that verified and those from unknown keys."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def sign(text: str, *signers: Signer) -> str:
    """The signed note of ``text`` with one signature line per signer, in the order given."""
    if not signers:
        raise NoteError("a signed note needs at least one signature")
    check_text(text)
    note = text + "\n" + "".join(s.signature(text).line for s in signers)
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise NoteError(f"the signed note would be more than {MAX_NOTE_BYTES} bytes")
    return note


def split(data: bytes | str) -> tuple[str, tuple[Signature, ...]]:
    """A signed note's text and signature lines, parsed strictly and verified against nothing.
    Use :func:`open_note` to trust a note: its text means nothing before that."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_NOTE_BYTES:
        raise NoteError(f"the note is {size} bytes, more than {MAX_NOTE_BYTES}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"the note is not UTF-8 (byte {exc.start})") from None
    for pos, char in enumerate(data):
        if char != "\n" and _is_control(char):
            raise NoteError(f"the note has {_describe(char)} at character {pos}")
    # The text runs to the last blank line ("Format"); it may hold blank lines of its own.
    cut = data.rfind("\n\n")
    if cut < 0:
        raise NoteError("the note has no blank line before its signatures")
    text, block = data[: cut + 1], data[cut + 2 :]
    if not block:
        raise NoteError("the note has no signature lines after its last blank line")
    if not block.endswith("\n"):
        raise NoteError("the note's last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    return check_text(text), tuple(_signature(i, line) for i, line in enumerate(lines, 1))


def _signature(number: int, line: str) -> Signature:
    where = f"signature line {number}"
    if not line.startswith(_SIG_PREFIX):
        raise NoteError(f"{where} does not start with an em dash and a space: {line[:60]!r}")
    name, space, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not space:
        raise NoteError(f"{where} is not '{EM_DASH} <key name> <signature>': {line[:60]!r}")
    if " " in b64:
        problem = "ends with a space" if b64.endswith(" ") else "has a space in its key name"
        raise NoteError(f"{where} {problem}: {line[:60]!r}")
    check_key_name(name, f"{where}: key name")
    blob = strict_b64decode(b64, f"{where} ({name}): the signature")
    if len(blob) < 5:
        raise NoteError(f"{where} ({name}): {len(blob)} bytes, not a key ID and a signature")
    return Signature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def open_note(data: bytes | str, verifiers: Iterable[Verifier]) -> Note:
    """Parse a signed note and check its signatures against the known keys ("Signatures"):
    a signature from an unknown key (a name or an ID no known key has) is ignored; one from a
    known key must verify or the whole note is refused; and at least one must be from a known
    key. Raises :class:`NoteError`."""
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        other = known.setdefault((verifier.name, verifier.key_id), verifier)
        if other != verifier:
            # Two keys with the same name and ID: which one a signature is from is unknowable.
            raise NoteError(f"two different known keys are both {verifier.label}")
    text, signatures = split(data)
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        # Every signature from a known key is checked, repeats too: one that does not verify
        # means someone altered the note or holds a key that collides with ours.
        if len(sig.signature) != ED25519_SIGNATURE_SIZE or not verifier.verifies(
            text.encode(), sig.signature
        ):
            raise NoteError(f"the signature of known key {verifier.label} does not verify")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        names = ", ".join(sorted({f"{s.name}+{s.key_id:08x}" for s in signatures}))
        expected = ", ".join(sorted(v.label for v in known.values())) or "none given"
        raise NoteError(f"no signature from a known key (signed by {names}; known: {expected})")
    return Note(text, tuple(verified), tuple(unverified))
