"""Inclusion proofs for many leaves of one tree at once.

A bundle needs one proof per record: with MerkleTree.inclusion_proof each costs O(log n)
node reads, most of them recomputed from stored levels (the store keeps every eighth
level), and 100,000 proofs share nearly all of those nodes. This builds the tree of the
first ``size`` leaves once, level by level, in memory (O(size) hashes: the leaves are
read from the node store, never from the records), then a proof is log2(size) list reads.

RFC 9162's tree (split at the largest power of two below n) is the tree built bottom-up
by hashing pairs left to right and carrying an unpaired last node up unchanged: so a
leaf's audit path is its sibling at each level where it has one.
"""

from __future__ import annotations

from signet_gateway.log.merkle import EMPTY_ROOT, node_hash
from signet_gateway.log.nodes import NodeStore

__all__ = ["TreeLevels"]


class TreeLevels:
    """Every level of the tree of the first ``size`` leaves of a node store."""

    def __init__(self, nodes: NodeStore, size: int) -> None:
        if not 0 <= size <= nodes.size():
            raise ValueError(f"the log has {nodes.size()} leaves, not {size}")
        leaves: list[bytes] = []
        for i in range(size):
            leaf = nodes.get(0, i)
            if leaf is None:
                raise LookupError(f"the node store has no leaf {i}")
            leaves.append(leaf)
        self.size = size
        self.levels = [leaves]
        level = leaves
        while len(level) > 1:
            up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])  # carried up: RFC 9162's right-hand subtree is smaller
            self.levels.append(up)
            level = up

    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """PATH(index, D[size]): the leaf's sibling first."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf {index} is not in a tree of {self.size} leaves")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path
