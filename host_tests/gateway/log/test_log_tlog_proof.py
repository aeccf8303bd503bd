"""The C2SP tlog-proof text: the spec's example, proofs from the tree, strict parsing.

The example is the one in https://c2sp.org/tlog-proof (its checkpoint signatures are
elided there with "[...]"; the checkpoint is opaque to this module, so it is kept as is).
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signet_gateway.log.merkle import leaf_hash
from signet_gateway.log.nodes import MemoryNodeStore
from signet_gateway.log.tlog_proof import (
    HEADER,
    TlogProof,
    TlogProofError,
    format_tlog_proof,
    parse_tlog_proof,
)
from signet_gateway.log.tree import MerkleTree
from signet_gateway.log.verification import verify_inclusion

SPEC_EXAMPLE = """\
c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u2014 example.com/fancylog hI2DJw[...]1roloI=
\u2014 witness1.example mJirIklj[...]qY9v2B/5bg==
\u2014 witness2.example TnKKVHLX[...]xwYwrSjgow==
\u2014 witness3.example S4X82uH5[...]3oEcROGLFQ==
""".encode()

CHECKPOINT = SPEC_EXAMPLE[SPEC_EXAMPLE.index(b"example.com/fancylog\n109482") :]


def test_the_spec_example_parses_and_formats_back_byte_for_byte() -> None:
    proof = parse_tlog_proof(SPEC_EXAMPLE)
    assert proof.index == 73894
    assert proof.extra is not None and proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert [base64.b64encode(h)[:6] for h in proof.hashes] == [
        b"gSKyXo",
        b"B95lDa",
        b"EKNzoD",
        b"RoopEk",
        b"AHCioX",
    ]
    assert proof.checkpoint == CHECKPOINT
    assert format_tlog_proof(proof) == SPEC_EXAMPLE


def test_a_proof_from_the_tree_round_trips_and_verifies() -> None:
    tree = MerkleTree(MemoryNodeStore())
    tree.append_many(leaf_hash(b"record %d" % i) for i in range(11))
    checkpoint = b"signet.example/gateway\n11\n" + base64.b64encode(tree.root()) + b"\n\n"
    text = format_tlog_proof(TlogProof(6, tuple(tree.inclusion_proof(6)), checkpoint))
    assert text.startswith(HEADER + b"\nindex 6\n")
    assert text.endswith(b"\n\n" + checkpoint)
    parsed = parse_tlog_proof(text)
    assert parsed.extra is None and parsed.checkpoint == checkpoint
    verify_inclusion(leaf_hash(b"record 6"), parsed.index, 11, parsed.hashes, tree.root())


def test_a_one_leaf_tree_has_no_proof_lines() -> None:
    text = format_tlog_proof(TlogProof(0, (), b"origin\n1\nAAAA\n"))
    assert text == HEADER + b"\nindex 0\n\norigin\n1\nAAAA\n"
    assert parse_tlog_proof(text) == TlogProof(0, (), b"origin\n1\nAAAA\n")


HASH_LINE = b"gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ="


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"c2sp.org/tlog-proof@v2\nindex 1\n\ncp\n", "the first line is not"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\ncp\n", "no empty line before the checkpoint"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n\n", "no checkpoint after the empty line"),
        (b"c2sp.org/tlog-proof@v1\n" + HASH_LINE + b"\n\ncp\n", "line 2 is not the index line"),
        (b"c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n", "line 2: the index is not a plain decimal"),
        (b"c2sp.org/tlog-proof@v1\nindex -1\n\ncp\n", "the index is not a plain decimal"),
        (b"c2sp.org/tlog-proof@v1\nindex  1\n\ncp\n", "the index is not a plain decimal"),
        (
            b"c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\ncp\n",
            "line 2 (extra) is not valid base64",
        ),
        (b"c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\ncp\n", "line 3: a proof hash of 3 bytes"),
        (
            b"c2sp.org/tlog-proof@v1\nindex 1\n" + HASH_LINE[:-2] + b"R=\n\ncp\n",
            "line 3 (proof hash) is not canonical base64",
        ),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n" + HASH_LINE[:-1] + b"\n\ncp\n", "not valid base64"),
        (b"c2sp.org/tlog-proof@v1\r\nindex 1\n\ncp\n", "the first line is not"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n\xff\n\ncp\n", "line 3 (proof hash) is not base64"),
    ],
)
def test_malformed_proofs_are_refused_with_the_place(text: bytes, reason: str) -> None:
    with pytest.raises(TlogProofError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_tlog_proof(text)


def test_formatting_refuses_what_is_not_a_proof() -> None:
    with pytest.raises(ValueError, match="not negative"):
        format_tlog_proof(TlogProof(-1, (), b"cp\n"))
    with pytest.raises(ValueError, match="a proof hash is 32 bytes"):
        format_tlog_proof(TlogProof(1, (b"short",), b"cp\n"))
    with pytest.raises(ValueError, match="needs its checkpoint"):
        format_tlog_proof(TlogProof(1, (), b""))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SPEC_EXAMPLE) - 1), st.integers(1, 255), st.booleans())
def test_any_altered_byte_is_refused_or_read_as_written(at: int, xor: int, cut: bool) -> None:
    """Strict parsing: a text that parses formats back to exactly itself."""
    text = (
        SPEC_EXAMPLE[:at]
        if cut
        else SPEC_EXAMPLE[:at] + bytes([SPEC_EXAMPLE[at] ^ xor]) + SPEC_EXAMPLE[at + 1 :]
    )
    try:
        proof = parse_tlog_proof(text)
    except TlogProofError:
        return
    assert format_tlog_proof(proof) == text
