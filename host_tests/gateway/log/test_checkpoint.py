"""C2SP tlog checkpoints (gateway/log/checkpoint.py): the spec's example body, real signed
checkpoints of the Go checksum database, strict parsing, and a signer that never signs two
inconsistent checkpoints."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kit.paths import REPO
from signet_gateway.log import merkle
from signet_gateway.log.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    InconsistentCheckpoint,
    open_checkpoint,
    parse,
)
from signet_gateway.log.note import NoteError, Signer, Verifier, open_note

# c2sp.org/tlog-checkpoint, the example at the top of the spec (its key is not published:
# the body is what can be checked).
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

# The Go checksum database signs its tree heads as tlog checkpoints; its verifier key is the
# one built into the go command (cmd/go: knownGOSUMDB). Two real signed heads: their
# signatures verify with that key, so they are genuine whatever copy they were taken from.
# The key's name (sum.golang.org) is not the origin (go.sum database tree): the spec only
# recommends that they match.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_HEADS = [
    (
        "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
        "\u2014 sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7"
        "l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
        65209736,
    ),
    (
        "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
        "\u2014 sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C"
        "3YI8oW9/C8DJ87F61QqspBYwM=\n",
        31700353,
    ),
]

ORIGIN = "gw.example/signet"
ROOT = bytes(range(32))


def test_the_spec_example_body_parses_and_is_rebuilt_byte_for_byte() -> None:
    checkpoint = parse(SPEC_BODY)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.body() == SPEC_BODY


@pytest.mark.parametrize(("signed", "size"), SUMDB_HEADS)
def test_real_signed_checkpoints_of_the_go_checksum_database_open(signed: str, size: int) -> None:
    verifier = Verifier.from_vkey(SUMDB_VKEY)
    opened = open_checkpoint(signed.encode(), [verifier], origin="go.sum database tree")
    assert opened.checkpoint.size == size and len(opened.checkpoint.root) == 32
    assert opened.checkpoint.body() + "\n" + opened.note.verified[0].line == signed
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(signed.replace(str(size), str(size + 1)), [verifier])
    with pytest.raises(CheckpointError, match=r"not 'gw\.example/signet'"):
        open_checkpoint(signed, [verifier], origin=ORIGIN)


def test_build_sign_open_round_trip_with_extension_lines() -> None:
    signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
    checkpoint = Checkpoint(ORIGIN, 7, ROOT, ("ext one", "\u2014 two"))
    body = checkpoint.body()
    assert body == f"{ORIGIN}\n7\n{base64.b64encode(ROOT).decode()}\next one\n\u2014 two\n"
    signed = CheckpointSigner(signer, None, lambda old, new: True).sign(7, ROOT, ("ext one",))
    opened = open_checkpoint(signed, [signer.verifier], origin=ORIGIN)
    assert opened.checkpoint == Checkpoint(ORIGIN, 7, ROOT, ("ext one",))
    assert parse(body) == checkpoint


B64_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (f"o\n7\n{B64_ROOT}", "does not end with a newline"),
        ("o\n7\n", "at least 3 lines"),
        (f"\n7\n{B64_ROOT}\n", "line 1 is empty"),
        (f"o\n\n{B64_ROOT}\n", "line 2 is empty"),
        ("o\n7\n\n", "line 3 is empty"),
        (f"o\n7\n{B64_ROOT}\n\n", "line 4 is empty"),
        (f"o\n7\n{B64_ROOT}\next\n\n", "line 5 is empty"),
        (f"o\n07\n{B64_ROOT}\n", "without leading zeros"),
        (f"o\n00\n{B64_ROOT}\n", "without leading zeros"),
        (f"o\n+7\n{B64_ROOT}\n", "not a decimal number"),
        (f"o\n-7\n{B64_ROOT}\n", "not a decimal number"),
        (f"o\n 7\n{B64_ROOT}\n", "not a decimal number"),
        (f"o\n7 \n{B64_ROOT}\n", "not a decimal number"),
        (f"o\n7.0\n{B64_ROOT}\n", "not a decimal number"),
        (f"o\n0x7\n{B64_ROOT}\n", "not a decimal number"),
        (f"o\n1_000\n{B64_ROOT}\n", "not a decimal number"),
        (f"o\n\uff17\n{B64_ROOT}\n", "not a decimal number"),  # a full-width digit
        (f"o\n{1 << 63}\n{B64_ROOT}\n", "larger than 2^63-1"),
        ("o\n7\n" + base64.b64encode(bytes(31)).decode() + "\n", "31 bytes, not 32"),
        ("o\n7\n" + base64.b64encode(bytes(33)).decode() + "\n", "33 bytes, not 32"),
        ("o\n7\n" + B64_ROOT.rstrip("=") + "\n", "not valid base64"),
        ("o\n7\n" + B64_ROOT[:-2] + "9=\n", "not canonical base64"),
        ("o\n7\n" + base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n", "not valid base64"),
        (f"o\r\n7\n{B64_ROOT}\n", "U+000D"),
    ],
)
def test_a_malformed_checkpoint_body_is_refused_with_its_reason(body: str, reason: str) -> None:
    with pytest.raises(NoteError) as refused:
        parse(body)
    assert reason in str(refused.value)


def test_tree_size_edge_values() -> None:
    assert parse(f"o\n0\n{B64_ROOT}\n").size == 0
    assert parse(f"o\n{MAX_TREE_SIZE}\n{B64_ROOT}\n").size == MAX_TREE_SIZE
    for bad in (-1, MAX_TREE_SIZE + 1, True, 1.0):
        with pytest.raises(CheckpointError, match="tree size"):
            Checkpoint("o", bad, ROOT)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="origin"):
        Checkpoint("a\nb", 1, ROOT)
    with pytest.raises(CheckpointError, match="extension line"):
        Checkpoint("o", 1, ROOT, ("",))


# -- never two inconsistent checkpoints -------------------------------------------------------


class Log:
    """A test log: leaves in a list, roots computed from them, and consistency decided by
    recomputing the old root from the new tree's first leaves (what a verified consistency
    proof establishes)."""

    def __init__(self) -> None:
        self.leaves: list[bytes] = []

    def add(self, *records: bytes) -> None:
        self.leaves.extend(merkle.leaf_hash(r) for r in records)

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.leaves[: len(self.leaves) if size is None else size])

    def is_consistent(self, old: Checkpoint, new: Checkpoint) -> bool:
        return new.root == self.root(new.size) and old.root == self.root(old.size)


def test_the_signer_signs_a_growing_log_and_refuses_what_contradicts_it() -> None:
    log = Log()
    key = Signer(ORIGIN, Ed25519PrivateKey.generate())
    signer = CheckpointSigner(key, None, log.is_consistent)
    first = signer.sign(0, merkle.EMPTY_ROOT)
    assert open_checkpoint(first, [key.verifier]).checkpoint.size == 0
    log.add(b"r1", b"r2", b"r3")
    signed = signer.sign(3, log.root())
    assert signer.last == Checkpoint(ORIGIN, 3, log.root())
    assert signer.sign(3, log.root()) == signed  # the same head again: allowed, deterministic
    log.add(b"r4")
    signer.sign(4, log.root())

    with pytest.raises(InconsistentCheckpoint, match="smaller than the last signed checkpoint's"):
        signer.sign(3, log.root(3))
    with pytest.raises(InconsistentCheckpoint, match="split view"):
        signer.sign(4, bytes(32))
    # A larger tree that does not contain the signed one (a rewritten history).
    forked = Log()
    forked.add(b"r1", b"r2", b"r3", b"rX", b"r5")
    log.add(b"r5")
    with pytest.raises(InconsistentCheckpoint, match="does not extend"):
        signer.sign(5, forked.root())
    assert signer.last == Checkpoint(ORIGIN, 4, log.root(4))  # refusals change nothing
    assert open_note(signer.sign(5, log.root()), [key.verifier]).text.startswith(ORIGIN)


def test_the_signer_starts_from_the_last_checkpoint_it_is_given() -> None:
    log = Log()
    log.add(b"a", b"b")
    key = Signer(ORIGIN, Ed25519PrivateKey.generate())
    restarted = CheckpointSigner(key, Checkpoint(ORIGIN, 2, log.root()), log.is_consistent)
    with pytest.raises(InconsistentCheckpoint, match="smaller"):
        restarted.sign(1, log.root(1))
    with pytest.raises(InconsistentCheckpoint, match="split view"):
        restarted.sign(2, log.root(1))
    with pytest.raises(CheckpointError, match=r"this key signs for 'gw\.example/signet'"):
        CheckpointSigner(key, Checkpoint("other.example/log", 2, log.root()), log.is_consistent)


def test_an_empty_tree_has_the_empty_root() -> None:
    signer = CheckpointSigner(
        Signer(ORIGIN, Ed25519PrivateKey.generate()), None, lambda old, new: True
    )
    with pytest.raises(InconsistentCheckpoint, match="tree size 0"):
        signer.sign(0, bytes(32))


def test_the_example_in_audit_md_verifies_with_the_vkey_it_shows() -> None:
    section = (
        (REPO / "docs" / "AUDIT.md")
        .read_text()
        .split("## The gateway key, signed notes and checkpoints")[1]
    )
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    vkey = blocks[0].strip()
    signed = next(b for b in blocks if "\n\n\u2014 " in b)
    opened = open_checkpoint(signed, [Verifier.from_vkey(vkey)], origin="gw.example.com/signet")
    assert opened.checkpoint.size == 1042
    assert opened.checkpoint.root == merkle.root(
        merkle.leaf_hash(b"record %d" % i) for i in range(1042)
    )
