"""RFC 9162 Merkle tree hashing: leaf and node hashes, the tree head of a list of leaves.

The hashing is RFC 9162 section 2.1.1 (identical to RFC 6962 section 2.1): SHA-256 with a
one-byte domain separator, so that a leaf can never be passed off as an interior node
(section 2.1.1's second-preimage note):

    MTH({})       = SHA-256()                                  the empty tree
    MTH({d(0)})   = SHA-256(0x00 || d(0))                      a leaf
    MTH(D[n])     = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
                    with k the largest power of two smaller than n

Everything here takes *leaf hashes* (the output of ``leaf_hash``), not raw entries: the
log stores and proves leaf hashes, and an auditor hashes a record once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

HASH_SIZE = 32
"""SHA-256 output length: every leaf, node and root hash is this long."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}), the tree head of the empty tree (RFC 9162 section 2.1.1)."""


def leaf_hash(raw: bytes) -> bytes:
    """The hash of one log entry: SHA-256(0x00 || raw) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(LEAF_PREFIX + raw).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """k, the largest power of two smaller than n (n >= 2): where MTH(D[n]) splits."""
    if n < 2:
        raise ValueError(f"a tree of {n} leaves has no split point")
    return 1 << ((n - 1).bit_length() - 1)


def perfect_subtrees(begin: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees, as (level, index), whose leaves are [begin, end), largest first.

    Valid for the ranges RFC 9162's definitions recurse into: ``begin`` is a multiple of
    the largest power of two not exceeding ``end - begin`` (a subtree of the whole tree).
    Their hashes folded from the right (``fold_right``) are MTH(D[begin:end]): MTH splits
    at the largest power of two, and so does the binary decomposition of the size.
    """
    subtrees: list[tuple[int, int]] = []
    size = end - begin
    while size:
        level = size.bit_length() - 1
        subtrees.append((level, begin >> level))
        begin += 1 << level
        size -= 1 << level
    return subtrees


def fold_right(hashes: list[bytes]) -> bytes:
    """MTH of a range from its perfect subtrees' hashes, largest (leftmost) first."""
    if not hashes:
        return EMPTY_ROOT
    head = hashes[-1]
    for left in reversed(hashes[:-1]):
        head = node_hash(left, head)
    return head


class CompactRange:
    """The hashes of the perfect subtrees covering leaves [0, size): appends and the root.

    The binary decomposition of ``size`` names at most log2(size) + 1 subtrees, so an
    append is O(log n) hashes and the root O(log n), with O(log n) memory whatever the
    size of the log. ``append`` returns the interior nodes it completed, for a node store.
    """

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self._size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of {size} leaves has {size.bit_count()} subtree hashes, "
                f"got {len(self._hashes)}"
            )

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Adds one leaf hash; returns the new nodes as (level, index, hash), the leaf first."""
        index = self._size
        new_nodes = [(0, index, leaf)]
        head = leaf
        level = 0
        # Each trailing 1 bit of the old size is a perfect subtree of the new leaf's height
        # to its left: merge them, as a binary counter carries.
        while (index >> level) & 1:
            head = node_hash(self._hashes.pop(), head)
            level += 1
            new_nodes.append((level, index >> level, head))
        self._hashes.append(head)
        self._size += 1
        return new_nodes

    def root(self) -> bytes:
        """MTH(D[0:size])."""
        return fold_right(self._hashes)


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a list of leaf hashes (RFC 9162 section 2.1.1), in O(log n) memory."""
    compact = CompactRange()
    for leaf in leaf_hashes:
        compact.append(leaf)
    return compact.root()
