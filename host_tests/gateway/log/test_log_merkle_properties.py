"""Property tests: every proof the tree makes verifies, and no altered proof does.

For random tree sizes and positions: the inclusion proof of every leaf and the consistency
proof between any two sizes verify (RFC 9162 2.1.3.2 and 2.1.4.2); flipping any bit of a
proof hash, of the leaf or of a tree head, dropping or adding a hash, or claiming another
index or size makes verification fail with ``ProofError``, never another exception.

One claim is not the proof's to refuse: a tree size paired with the head of a *different*
size. The audit path of leaf 0 is two hashes in trees of 3 and 4 leaves alike, so a proof
checks against (size 3, head of size 4). The signed checkpoint binds a size to its head;
an auditor takes both from it (``test_the_checkpoint_not_the_proof_binds_size_to_head``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signet_gateway.log.merkle import EMPTY_ROOT, leaf_hash
from signet_gateway.log.nodes import MemoryNodeStore
from signet_gateway.log.tree import MerkleTree
from signet_gateway.log.verification import ProofError, verify_consistency, verify_inclusion

MAX_SIZE = 300
ENTRIES = [b"entry %d" % i for i in range(MAX_SIZE)]
TREE = MerkleTree(MemoryNodeStore(level_stride=2))
TREE.append_many(leaf_hash(e) for e in ENTRIES)
HEADS = [TREE.root(n) for n in range(MAX_SIZE + 1)]

EXAMPLES = int(os.environ.get("SIGNET_FUZZ_EXAMPLES", "400"))
PROPERTIES = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def leaf_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, new)), new


def flip(data: bytes, bit: int) -> bytes:
    bit %= 8 * len(data)
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def refused(check: Callable[..., None], *args: object) -> bool:
    try:
        check(*args)
    except ProofError:
        return True
    return False


@PROPERTIES
@given(leaf_in_tree())
def test_every_inclusion_proof_verifies(position: tuple[int, int]) -> None:
    index, size = position
    verify_inclusion(
        leaf_hash(ENTRIES[index]), index, size, TREE.inclusion_proof(index, size), HEADS[size]
    )


@PROPERTIES
@given(two_sizes())
def test_every_consistency_proof_verifies(sizes: tuple[int, int]) -> None:
    old, new = sizes
    verify_consistency(old, new, HEADS[old], HEADS[new], TREE.consistency_proof(old, new))


@PROPERTIES
@given(leaf_in_tree(), st.integers(0, 2**20), st.data())
def test_an_altered_inclusion_proof_fails(
    position: tuple[int, int], bit: int, data: st.DataObject
) -> None:
    index, size = position
    leaf, proof, head = leaf_hash(ENTRIES[index]), TREE.inclusion_proof(index, size), HEADS[size]
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert refused(verify_inclusion, leaf, index, size, bad, head)
        assert refused(verify_inclusion, leaf, index, size, proof[:at] + proof[at + 1 :], head)
    assert refused(verify_inclusion, flip(leaf, bit), index, size, proof, head)
    assert refused(verify_inclusion, leaf, index, size, proof, flip(head, bit))
    assert refused(verify_inclusion, leaf, index, size, [*proof, head], head)
    assert refused(verify_inclusion, leaf, index, size, [*proof, b"\0" * 31], head)


@PROPERTIES
@given(leaf_in_tree(), st.integers(-3, MAX_SIZE + 3))
def test_another_index_fails(position: tuple[int, int], claimed: int) -> None:
    index, size = position
    assume(claimed != index)
    proof = TREE.inclusion_proof(index, size)
    assert refused(verify_inclusion, leaf_hash(ENTRIES[index]), claimed, size, proof, HEADS[size])


@PROPERTIES
@given(leaf_in_tree(), st.integers(1, MAX_SIZE))
def test_another_size_fails_unless_its_proof_is_the_same(
    position: tuple[int, int], claimed: int
) -> None:
    """With the true head of the claimed size: refused, unless the proof is that size's too."""
    index, size = position
    assume(claimed != size)
    proof = TREE.inclusion_proof(index, size)
    leaf = leaf_hash(ENTRIES[index])
    also_valid = index < claimed and TREE.inclusion_proof(index, claimed) == proof
    assert refused(verify_inclusion, leaf, index, claimed, proof, HEADS[claimed]) != also_valid


@PROPERTIES
@given(two_sizes(), st.integers(0, 2**20), st.data())
def test_an_altered_consistency_proof_fails(
    sizes: tuple[int, int], bit: int, data: st.DataObject
) -> None:
    old, new = sizes
    proof = TREE.consistency_proof(old, new)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert refused(verify_consistency, old, new, HEADS[old], HEADS[new], bad)
        shorter = proof[:at] + proof[at + 1 :]
        assert refused(verify_consistency, old, new, HEADS[old], HEADS[new], shorter)
    assert refused(verify_consistency, old, new, flip(HEADS[old], bit), HEADS[new], proof)
    assert refused(verify_consistency, old, new, HEADS[old], flip(HEADS[new], bit), proof)
    longer = [*proof, HEADS[new]]
    assert refused(verify_consistency, old, new, HEADS[old], HEADS[new], longer)


@PROPERTIES
@given(two_sizes(), st.integers(1, MAX_SIZE), st.booleans())
def test_other_sizes_fail_unless_the_proof_is_theirs_too(
    sizes: tuple[int, int], claimed: int, claim_old: bool
) -> None:
    """Claiming another old (or new) size, with that size's true head."""
    old, new = sizes
    proof = TREE.consistency_proof(old, new)
    claimed_old, claimed_new = (claimed, new) if claim_old else (old, claimed)
    assume((claimed_old, claimed_new) != (old, new))
    also_valid = (
        claimed_old <= claimed_new and TREE.consistency_proof(claimed_old, claimed_new) == proof
    )
    outcome = refused(
        verify_consistency, claimed_old, claimed_new, HEADS[claimed_old], HEADS[claimed_new], proof
    )
    assert outcome != also_valid


def test_the_checkpoint_not_the_proof_binds_size_to_head() -> None:
    proof = TREE.inclusion_proof(0, 4)
    assert proof[0] == leaf_hash(ENTRIES[1])
    verify_inclusion(leaf_hash(ENTRIES[0]), 0, 3, proof, HEADS[4])  # size 3, head of 4


def test_edge_cases_named_by_the_rfc() -> None:
    leaf = leaf_hash(ENTRIES[0])
    with pytest.raises(ProofError, match="outside a tree of 0 leaves"):
        verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="outside a tree of 5 leaves"):
        verify_inclusion(leaf, 5, 5, TREE.inclusion_proof(4, 5), HEADS[5])
    with pytest.raises(ProofError, match="leaf index -1"):
        verify_inclusion(leaf, -1, 5, TREE.inclusion_proof(0, 5), HEADS[5])
    verify_inclusion(leaf, 0, 1, [], leaf)  # a one-leaf tree's head is its leaf
    with pytest.raises(ProofError, match="too many hashes"):
        verify_inclusion(leaf, 0, 1, [leaf], leaf)
    with pytest.raises(ProofError, match="too few hashes"):
        verify_inclusion(leaf, 0, 2, [], HEADS[2])
    with pytest.raises(ProofError, match="proof hash 1 is 31 bytes"):
        verify_inclusion(leaf, 0, 4, [HEADS[1], HEADS[2][:31]], HEADS[4])
    with pytest.raises(ProofError, match="from a tree of 0 leaves"):
        verify_consistency(0, 5, EMPTY_ROOT, HEADS[5], [])
    with pytest.raises(ProofError, match="shrank from 5 to 4"):
        verify_consistency(5, 4, HEADS[5], HEADS[4], [])
    verify_consistency(7, 7, HEADS[7], HEADS[7], [])
    with pytest.raises(ProofError, match="different tree heads for the same size 7"):
        verify_consistency(7, 7, HEADS[7], HEADS[6], [])
    with pytest.raises(ProofError, match="between equal sizes must be empty"):
        verify_consistency(7, 7, HEADS[7], HEADS[7], [HEADS[1]])
    with pytest.raises(ProofError, match="the consistency proof is empty"):
        verify_consistency(4, 8, HEADS[4], HEADS[8], [])
    with pytest.raises(ProofError, match="the old root hash is 0 bytes"):
        verify_consistency(4, 8, b"", HEADS[8], TREE.consistency_proof(4, 8))
