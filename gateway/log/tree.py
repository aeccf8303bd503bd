"""The log's append-only Merkle tree over a node store: appends, tree heads and proofs.

Appending costs O(log n) hashes and writes (a compact range of the perfect subtrees
covering the log is kept in memory); a tree head of any past size, an inclusion proof and
a consistency proof cost O(log n) node reads each, plus O(log n) more per right-edge
range: none of them reads the leaves. The definitions followed are RFC 9162 section 2.1.1
(MTH), 2.1.3.1 (PATH, the inclusion proof) and 2.1.4.1 (PROOF and SUBPROOF, the
consistency proof), written as loops over the range [begin, end) the recursion is in.
"""

from __future__ import annotations

from collections.abc import Iterable

from .merkle import HASH_SIZE, CompactRange, fold_right, node_hash, perfect_subtrees, split_point
from .nodes import Node, NodeStore


class MerkleTree:
    """The tree of the leaves a NodeStore holds.

    The compact range in memory follows the store: if the store's transaction is rolled
    back after an append, call ``reload`` before using the tree again.
    """

    def __init__(self, store: NodeStore) -> None:
        self._store = store
        self._compact = self._load_compact_range()

    @property
    def size(self) -> int:
        return self._compact.size

    def reload(self) -> None:
        """Re-reads the compact range from the store (after a rollback, or another writer)."""
        self._compact = self._load_compact_range()

    def append(self, leaf: bytes) -> int:
        """Adds one leaf hash (``merkle.leaf_hash`` of the entry); returns its index."""
        return self.append_many([leaf])

    def append_many(self, leaves: Iterable[bytes]) -> int:
        """Adds leaf hashes in order, their nodes in one ``put``; returns the first index."""
        first = self._compact.size
        nodes: list[Node] = []
        try:
            for leaf in leaves:
                if len(leaf) != HASH_SIZE:
                    raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
                nodes.extend(self._compact.append(leaf))
            self._store.put(nodes)
        except BaseException:
            # Nothing appended unless the store took it: the compact range follows the store.
            self.reload()
            raise
        return first

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (the whole log if None), RFC 9162 section 2.1.1."""
        if size is None or size == self.size:
            return self._compact.root()
        self._check_size(size)
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 section 2.1.3.1): the audit path, leaf's sibling first."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
        siblings: list[bytes] = []
        begin, end = 0, size
        # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])        if m < k
        #               = PATH(m - k, D[k:n]) : MTH(D[0:k])    if m >= k
        # Walked from the root down, so the path is the siblings in reverse.
        while end - begin > 1:
            middle = begin + split_point(end - begin)
            if index < middle:
                siblings.append(self._range_hash(middle, end))
                end = middle
            else:
                siblings.append(self._range_hash(begin, middle))
                begin = middle
        siblings.reverse()
        return siblings

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) (RFC 9162 section 2.1.4.1), for 0 < old_size <= new_size."""
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 < old_size <= new_size:
            raise ValueError(
                f"no consistency proof from size {old_size} to size {new_size} "
                "(the old size must be at least 1 and at most the new size)"
            )
        hashes: list[bytes] = []
        begin, end = 0, new_size
        old_end = old_size
        whole_old_tree = True  # SUBPROOF's b: is D[begin:old_end] the entire old tree?
        # SUBPROOF(m, D[m], true) = {};  SUBPROOF(m, D[m], false) = {MTH(D[m])}
        # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])           if m <= k
        #                      = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])   if m > k
        while old_end != end:
            middle = begin + split_point(end - begin)
            if old_end <= middle:
                hashes.append(self._range_hash(middle, end))
                end = middle
            else:
                hashes.append(self._range_hash(begin, middle))
                begin = middle
                whole_old_tree = False
        if not whole_old_tree:
            hashes.append(self._range_hash(begin, end))
        hashes.reverse()
        return hashes

    def _node(self, level: int, index: int) -> bytes:
        """A perfect subtree's hash, recomputed from its children if the store dropped it."""
        digest = self._store.get(level, index)
        if digest is not None:
            return digest
        if level == 0:
            raise LookupError(f"the node store has no leaf {index}")
        return node_hash(self._node(level - 1, 2 * index), self._node(level - 1, 2 * index + 1))

    def _range_hash(self, begin: int, end: int) -> bytes:
        """MTH(D[begin:end]) for a subtree RFC 9162's recursion reaches."""
        return fold_right([self._node(level, i) for level, i in perfect_subtrees(begin, end)])

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"the log has {self.size} leaves, not {size}")

    def _load_compact_range(self) -> CompactRange:
        size = self._store.size()
        hashes = [self._node(level, i) for level, i in perfect_subtrees(0, size)]
        return CompactRange(size, hashes)
