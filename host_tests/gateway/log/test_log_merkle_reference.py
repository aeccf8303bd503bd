"""The incremental tree against the RFC's recursive definitions, size by size.

kit/merkle_reference.py is MTH, PATH and PROOF transcribed from RFC 9162; the gateway's
tree computes the same from stored subtree hashes. Every (m, n) up to 64 is compared, then
random larger sizes; and the node store's contract is checked: an append writes O(log n)
nodes and reads none, a store may keep only some levels, a reopened tree continues where
the store is, and a failed store write appends nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from kit import merkle_reference as reference
from signet_gateway.log.merkle import leaf_hash
from signet_gateway.log.nodes import MemoryNodeStore, Node
from signet_gateway.log.tree import MerkleTree
from signet_gateway.log.verification import verify_consistency, verify_inclusion

EXHAUSTIVE = 64


def entries(count: int) -> list[bytes]:
    return [b"record %d" % i for i in range(count)]


def grown(items: list[bytes], stride: int = 1) -> MerkleTree:
    tree = MerkleTree(MemoryNodeStore(level_stride=stride))
    tree.append_many(leaf_hash(e) for e in items)
    return tree


@pytest.mark.parametrize("stride", [1, 4])
def test_every_size_up_to_64_matches_the_rfc_definitions(stride: int) -> None:
    items = entries(EXHAUSTIVE)
    tree = grown(items, stride)
    for n in range(EXHAUSTIVE + 1):
        head = reference.mth(items[:n])
        assert tree.root(n) == head, n
        for m in range(n):
            path = tree.inclusion_proof(m, n)
            assert path == reference.path(m, items[:n]), (m, n)
            verify_inclusion(leaf_hash(items[m]), m, n, path, head)
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert proof == reference.proof(m, items[:n]), (m, n)
            verify_consistency(m, n, reference.mth(items[:m]), head, proof)


def test_random_larger_sizes_match_the_rfc_definitions() -> None:
    rng = random.Random(9162)
    items = entries(1500)
    tree = grown(items, stride=3)
    for _ in range(12):
        n = rng.randrange(EXHAUSTIVE + 1, len(items) + 1)
        head = reference.mth(items[:n])
        assert tree.root(n) == head
        for m in rng.sample(range(n), 4):
            assert tree.inclusion_proof(m, n) == reference.path(m, items[:n]), (m, n)
            old = m + 1
            assert tree.consistency_proof(old, n) == reference.proof(old, items[:n]), (old, n)
    assert tree.root() == reference.mth(items)


def test_the_tree_built_at_a_size_equals_the_grown_tree_queried_at_that_size() -> None:
    items = entries(100)
    big = grown(items)
    for n in (1, 2, 3, 31, 32, 33, 99):
        small = grown(items[:n])
        assert small.root() == big.root(n)
        assert small.inclusion_proof(n - 1) == big.inclusion_proof(n - 1, n)
        assert small.consistency_proof(1) == big.consistency_proof(1, n)


class CountingStore(MemoryNodeStore):
    def __init__(self, level_stride: int = 1) -> None:
        super().__init__(level_stride)
        self.reads = 0
        self.written: list[Node] = []

    def get(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return super().get(level, index)

    def put(self, nodes: Sequence[Node]) -> None:
        self.written = list(nodes)
        super().put(nodes)


def test_an_append_reads_nothing_and_writes_the_nodes_it_completes() -> None:
    store = CountingStore()
    tree = MerkleTree(store)
    for index in range(1, 1025):
        tree.append(leaf_hash(b"%d" % index))
        assert store.reads == 0
        # The leaf, then one node per trailing 1 bit of its index: at most log2(n) + 1.
        trailing_ones = ((index - 1) ^ index).bit_length() - 1
        assert len(store.written) == 1 + trailing_ones
        assert [(level, i) for level, i, _ in store.written] == [
            (level, (index - 1) >> level) for level in range(1 + trailing_ones)
        ]
    assert store.written[-1] == (10, 0, tree.root())


def test_proofs_read_logarithmically_many_nodes() -> None:
    store = CountingStore()
    tree = MerkleTree(store)
    tree.append_many(leaf_hash(e) for e in entries(5000))
    store.reads = 0
    tree.inclusion_proof(1234)
    tree.consistency_proof(1234)
    tree.root(4321)
    assert 0 < store.reads < 3 * 13**2


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_a_reopened_tree_continues_from_its_store(stride: int) -> None:
    items = entries(77)
    store = MemoryNodeStore(level_stride=stride)
    first = MerkleTree(store)
    first.append_many(leaf_hash(e) for e in items[:50])
    reopened = MerkleTree(store)
    assert reopened.size == 50
    assert reopened.root() == reference.mth(items[:50])
    reopened.append_many(leaf_hash(e) for e in items[50:])
    assert reopened.root() == reference.mth(items)
    assert reopened.inclusion_proof(3) == reference.path(3, items)


def test_a_sparse_store_holds_fewer_hashes_and_proves_the_same() -> None:
    items = entries(4096)
    every_level, sparse = MemoryNodeStore(level_stride=1), MemoryNodeStore(level_stride=4)
    full_tree, sparse_tree = MerkleTree(every_level), MerkleTree(sparse)
    full_tree.append_many(leaf_hash(e) for e in items)
    sparse_tree.append_many(leaf_hash(e) for e in items)
    assert len(every_level) == 2 * 4096 - 1
    assert len(sparse) < 1.07 * 4096
    assert sparse_tree.inclusion_proof(2999, 4000) == full_tree.inclusion_proof(2999, 4000)
    assert sparse_tree.consistency_proof(1001, 4000) == full_tree.consistency_proof(1001, 4000)


class FailingStore(MemoryNodeStore):
    def put(self, nodes: Sequence[Node]) -> None:
        if len(nodes) > 3:
            raise OSError("disk full")
        super().put(nodes)


def test_a_failed_store_write_appends_nothing() -> None:
    tree = MerkleTree(FailingStore())
    tree.append_many([leaf_hash(b"a"), leaf_hash(b"b")])
    head = tree.root()
    with pytest.raises(OSError):
        tree.append_many([leaf_hash(b"c"), leaf_hash(b"d")])
    assert tree.size == 2
    assert tree.root() == head
    tree.append(leaf_hash(b"c"))
    assert tree.root() == reference.mth([b"a", b"b", b"c"])


def test_requests_outside_the_tree_are_refused() -> None:
    tree = grown(entries(5))
    with pytest.raises(ValueError, match="leaf 5 is not in a tree of 5"):
        tree.inclusion_proof(5)
    with pytest.raises(ValueError, match="the log has 5 leaves, not 6"):
        tree.inclusion_proof(0, 6)
    with pytest.raises(ValueError, match="the old size must be at least 1"):
        tree.consistency_proof(0, 5)
    with pytest.raises(ValueError, match="the old size must be at least 1"):
        tree.consistency_proof(4, 3)
    with pytest.raises(ValueError, match="not 6"):
        tree.root(6)
    with pytest.raises(ValueError, match="a leaf hash is 32 bytes"):
        tree.append(b"raw record, not its hash")
    assert tree.size == 5
