"""C2SP signed notes (gateway/log/note.py) against the spec's example, the Go reference
implementation's published vectors, and an independent implementation written here from the
spec text; every malformed note refused with its reason."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from signet_gateway.log import note
from signet_gateway.log.note import NoteError, Signer, Verifier, open_note, sign, split

# c2sp.org/signed-note, "Verifier keys" / "Example" (C2SP/C2SP signed-note.md).
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3"
    "mFXmRKuwHjG1Yu72IneyaQM=\n"
)

# The Go reference implementation (golang.org/x/mod/sumdb/note, note_test.go): the key pair
# (the private key is "PRIVATE+KEY+<name>+<id>+base64(0x01 || Ed25519 seed)"), a second key,
# and their signatures of one text. Ed25519 is deterministic (RFC 8032), so signing the text
# with the seed must give the published note byte for byte.
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)

PETER = Verifier.from_vkey(GO_PETER_VKEY)
ENOCH = Verifier.from_vkey(GO_ENOCH_VKEY)


def _refused(data: bytes | str, verifiers: list[Verifier], reason: str) -> None:
    with pytest.raises(NoteError) as refused:
        open_note(data, verifiers)
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)


# -- independent implementation, from the spec text alone -------------------------------------


def reference_sign(text: str, name: str, seed: bytes) -> str:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes_raw()
    kid = hashlib.sha256(name.encode() + b"\x0a\x01" + public).digest()[:4]
    sig = base64.b64encode(kid + key.sign(text.encode())).decode()
    return f"{text}\n\u2014 {name} {sig}\n"


def reference_open(signed: str, vkey: str) -> str:
    """The note's text if one signature line is from vkey's key and verifies; else raises."""
    name, hex_id, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 1 and hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == hex_id
    text, _, block = signed.rpartition("\n\n")
    text += "\n"
    for line in block.splitlines():
        _, sig_name, b64 = line.split(" ")
        blob = base64.b64decode(b64)
        if sig_name == name and blob[:4].hex() == hex_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text.encode())
            return text
    raise InvalidSignature("no signature from the key")


# -- the spec's example and the Go reference vectors ---------------------------------------------


def test_the_spec_example_note_verifies_with_the_spec_example_key() -> None:
    verifier = Verifier.from_vkey(SPEC_VKEY)
    assert (verifier.name, f"{verifier.key_id:08x}") == ("example.com/foo", "530d903a")
    assert verifier.vkey == SPEC_VKEY
    opened = open_note(SPEC_NOTE.encode(), [verifier])
    assert opened.text == "This is an example message.\n"
    assert [s.name for s in opened.verified] == ["example.com/foo"] and not opened.unverified


def test_signing_with_the_go_reference_key_reproduces_its_published_note() -> None:
    signer = Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(GO_SKEY_SEED))
    assert signer.verifier.vkey == GO_PETER_VKEY
    assert note.key_id("PeterNeumann", signer.verifier.public_key) == 0xC74F20A3
    assert sign(GO_TEXT, signer) == GO_TEXT + "\n" + GO_PETER_SIG


def test_go_reference_open_cases() -> None:
    both = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    one = open_note(both, [PETER])
    assert one.text == GO_TEXT
    assert [s.name for s in one.verified] == ["PeterNeumann"]
    assert [(s.name, s.key_id) for s in one.unverified] == [("EnochRoot", 0xAF0CFE78)]
    two = open_note(both, [PETER, ENOCH])
    assert [s.name for s in two.verified] == ["PeterNeumann", "EnochRoot"] and not two.unverified
    _refused(both, [], "no signature from a known key")
    # Repeated identical signatures are one signature.
    repeated = open_note(GO_TEXT + "\n" + GO_PETER_SIG * 2 + GO_ENOCH_SIG * 2, [PETER])
    assert len(repeated.verified) == 1 and len(repeated.unverified) == 1
    # The same verifier twice is fine; two different keys with one name and ID are not.
    assert open_note(GO_TEXT + "\n" + GO_PETER_SIG, [PETER, PETER]).text == GO_TEXT
    impostor = Verifier(PETER.name, PETER.key_id, ENOCH.public_key)
    _refused(GO_TEXT + "\n" + GO_PETER_SIG, [PETER, impostor], "two different known keys")


def test_a_known_keys_bad_signature_refuses_the_note_even_beside_a_good_one() -> None:
    bad = GO_PETER_SIG[:60] + "ABCD" + GO_PETER_SIG[60:]  # Go's "invalid signature" case
    _refused(GO_TEXT + "\n" + bad, [PETER], "signature of known key PeterNeumann+c74f20a3")
    tampered_enoch = GO_ENOCH_SIG.replace("Za0", "Zb0")  # same key ID, another signature
    _refused(
        GO_TEXT + "\n" + GO_PETER_SIG + tampered_enoch,
        [PETER, ENOCH],
        "signature of known key EnochRoot+af0cfe78 does not verify",
    )
    # The same bad signature from a key nobody configured is ignored.
    assert open_note(GO_TEXT + "\n" + GO_PETER_SIG + tampered_enoch, [PETER]).text == GO_TEXT


def test_a_signature_sharing_only_a_name_or_only_an_id_with_a_known_key_is_ignored() -> None:
    # Spec: "Verifiers MUST ignore signatures from unknown keys, even if they share a name or
    # ID (but not both) with a known key."
    other = Signer("PeterNeumann", Ed25519PrivateKey.generate())  # same name, other key ID
    same_name = other.signature(GO_TEXT).line
    same_id = GO_ENOCH_SIG.replace("rwz+eB", "x08go/", 1).replace("EnochRoot", "Somebody")
    assert split(GO_TEXT + "\n" + same_id)[1][0].key_id == PETER.key_id
    opened = open_note(GO_TEXT + "\n" + same_name + same_id + GO_PETER_SIG, [PETER])
    assert len(opened.verified) == 1 and len(opened.unverified) == 2
    _refused(GO_TEXT + "\n" + same_name + same_id, [PETER], "no signature from a known key")


def test_the_go_reference_malformed_messages_are_refused_each_with_its_reason() -> None:
    cases = [
        (GO_TEXT, "no blank line before its signatures"),
        (GO_TEXT + "\n", "no signature lines"),
        (GO_TEXT + "\n" + GO_PETER_SIG[:-1], "does not end with a newline"),
        ("\x01" + GO_TEXT + "\n" + GO_PETER_SIG, "U+0001 (a control character) at character 0"),
        (b"\xff" + (GO_TEXT + "\n" + GO_PETER_SIG).encode(), "not UTF-8 (byte 0)"),
        (
            GO_TEXT + "\n" + GO_PETER_SIG.replace("PeterNeumann", "Bad Name"),
            "has a space in its key name",
        ),
        (GO_TEXT + "\n" + GO_PETER_SIG + "Unexpected line.\n", "signature line 2 does not start"),
        (GO_TEXT + "\n" + GO_PETER_SIG * 101, "101 signatures, more than 100"),
    ]
    for data, reason in cases:
        _refused(data, [PETER], reason)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (GO_TEXT.replace("\n", "\r\n") + "\r\n" + GO_PETER_SIG, "U+000D (a control character)"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("\u2014", "-"), "does not start with an em dash"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("\u2014", "\u2013"), "does not start with an em"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("\u2014 ", "\u2014"), "does not start with an em"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace(" x08", "x08"), "is not '\u2014 <key name>"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("Peter", "Peter+"), "contains U+002B (plus sign)"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("PeterNeumann", ""), "key name is empty"),
        (
            GO_TEXT + "\n" + GO_PETER_SIG.replace("PeterNeumann", "Peter\u00a0Neumann"),
            "U+00A0 (no-break space)",
        ),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("AM=", "AM"), "not valid base64"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("AM=", "AN="), "not canonical base64"),
        (GO_TEXT + "\n" + GO_PETER_SIG.replace("AM=\n", "AM= \n"), "ends with a space"),
        (GO_TEXT + "\n" + "\u2014 PeterNeumann AAAAAA==\n", "4 bytes, not a key ID and a sig"),
        (GO_TEXT + "\n" + GO_PETER_SIG + "\n", "no signature lines after its last blank line"),
        (GO_TEXT + "\x00\n" + GO_PETER_SIG, "U+0000"),
        (GO_TEXT + "\t\n" + GO_PETER_SIG, "U+0009"),
    ],
    ids=[
        "crlf",
        "hyphen",
        "en-dash",
        "no-space-after-dash",
        "no-space-after-name",
        "plus-in-name",
        "empty-name",
        "nbsp-in-name",
        "unpadded-base64",
        "non-canonical-base64",
        "trailing-space",
        "short-signature",
        "blank-line-after-signatures",
        "nul",
        "tab",
    ],
)
def test_every_malformed_note_is_refused_with_its_reason(data: str, reason: str) -> None:
    _refused(data, [PETER], reason)


def test_a_note_over_the_size_bound_is_refused_before_it_is_parsed() -> None:
    big = "x" * note.MAX_NOTE_BYTES + "\n\n" + GO_PETER_SIG
    _refused(big, [PETER], f"more than {note.MAX_NOTE_BYTES}")
    _refused(big.encode(), [PETER], f"more than {note.MAX_NOTE_BYTES}")
    # The spec: verifiers MUST accept at least 16 signatures.
    sixteen = [Signer(f"k{i}.example/log", Ed25519PrivateKey.generate()) for i in range(16)]
    signed = sign(GO_TEXT, *sixteen)
    assert len(open_note(signed, [s.verifier for s in sixteen]).verified) == 16


def test_every_single_bit_change_to_the_spec_example_is_refused() -> None:
    verifier = Verifier.from_vkey(SPEC_VKEY)
    data = SPEC_NOTE.encode()
    for i in range(len(data)):
        for bit in (0x01, 0x20, 0x80):
            changed = bytearray(data)
            changed[i] ^= bit
            with pytest.raises(NoteError):
                open_note(bytes(changed), [verifier])


# -- signing ---------------------------------------------------------------------------------


def test_texts_the_spec_allows_round_trip_including_empty_lines() -> None:
    signer = Signer("gw.example/signet", Ed25519PrivateKey.generate())
    texts = ["a\n", "\n", "a\n\nb\n", "a\n\n\n", "\u00e8 \u2014 \U0001f600\n", "x" * 1000 + "\n"]
    for text in texts:
        signed = sign(text, signer)
        assert open_note(signed, [signer.verifier]).text == text
        assert reference_open(signed, signer.verifier.vkey) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no newline", "does not end with a newline"),
        ("", "does not end with a newline"),
        ("a\rb\n", "U+000D"),
        ("a\x7f\n".replace("\x7f", "\x1b"), "U+001B"),
        ("\ud800\n", "not valid Unicode"),
        ("x" * note.MAX_NOTE_BYTES + "\n", "more than"),
    ],
    ids=["no-newline", "empty", "cr", "escape", "lone-surrogate", "too-big"],
)
def test_sign_refuses_a_text_the_spec_does_not_allow(text: str, reason: str) -> None:
    signer = Signer("gw.example/signet", Ed25519PrivateKey.generate())
    with pytest.raises(NoteError) as refused:
        sign(text, signer)
    assert reason in str(refused.value)


def test_sign_refuses_no_signer_and_a_bad_name() -> None:
    with pytest.raises(NoteError, match="at least one signature"):
        sign("a\n")
    for name in ("", "a b", "a+b", "a\tb", "a\u2003b", "a\ud800"):
        with pytest.raises(NoteError):
            Signer(name, Ed25519PrivateKey.generate())


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs",), blacklist_characters="\r\t\x0b\x0c"
        ).filter(lambda c: c == "\n" or ord(c) >= 0x20),
        max_size=200,
    ),
    seed=st.binary(min_size=32, max_size=32),
    name=st.from_regex(r"[a-z0-9.\-/]{1,30}", fullmatch=True),
)
def test_this_code_and_the_reference_agree_both_ways(text: str, seed: bytes, name: str) -> None:
    text += "\n"
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(seed))
    ours = sign(text, signer)
    assert ours == reference_sign(text, name, seed)
    assert reference_open(ours, signer.verifier.vkey) == text
    assert open_note(reference_sign(text, name, seed), [signer.verifier]).text == text


# -- verifier keys -------------------------------------------------------------------------------


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    """Go's TestNewVerifier: every proper substring and every one-character change fails."""
    b = GO_PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(NoteError):
                    Verifier.from_vkey(b[i:j])
    for i in range(len(b)):
        with pytest.raises(NoteError):
            Verifier.from_vkey(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        ("PeterNeumann+c74f20a3", "is not <name>+<key id>+<key>"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "U+0020"),
        # Go's own: a wrong key length, and an unknown signature type, each with its key ID.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not canonical base64",
        ),
        (
            "PeterNeumann+26162e3b+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADK",
            "an Ed25519 key is 32 bytes, got 35",
        ),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "type 0x65"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
    ],
)
def test_a_malformed_verifier_key_is_refused_with_its_reason(vkey: str, reason: str) -> None:
    with pytest.raises(NoteError) as refused:
        Verifier.from_vkey(vkey)
    assert reason in str(refused.value)
