"""Where the log keeps its tree: hashes of perfect subtrees, addressed by (level, index).

The node at (level, index) is MTH of the 2**level leaves [index * 2**level, (index + 1) *
2**level): level 0 holds the leaf hashes. Those nodes never change once their last leaf is
appended, so a store only ever inserts, and every tree head and proof of any past size is
made of them (RFC 9162 section 2.1: MTH, PATH and SUBPROOF recurse into such subtrees and
into right-edge ranges folded from them).

``NodeStore`` is what the tree needs; the gateway's store implements it beside the records
so nodes commit in the same transaction as the records they hash. A store may keep only
some levels (level 0 is required): the tree recomputes a missing node from its children.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

Node = tuple[int, int, bytes]
"""(level, index, hash) of a perfect subtree."""


class NodeStore(Protocol):
    """Perfect-subtree hashes of one log."""

    def size(self) -> int:
        """How many leaves the log holds (the number of level-0 nodes)."""
        ...

    def get(self, level: int, index: int) -> bytes | None:
        """The node's hash, or None if the store does not keep that level."""
        ...

    def put(self, nodes: Sequence[Node]) -> None:
        """Adds the nodes one append completed (its leaf first); a store may drop levels > 0."""
        ...


class MemoryNodeStore:
    """A NodeStore in a dict, for tests, tools and an auditor rebuilding a tree in memory.

    ``level_stride`` keeps level 0 and every level that is a multiple of it (1 keeps all):
    a stride of 4 holds about 1.07 hashes per leaf instead of 2, and a missing node costs
    at most 2**3 - 1 hashes to recompute.
    """

    def __init__(self, level_stride: int = 1) -> None:
        if level_stride < 1:
            raise ValueError("level_stride must be at least 1")
        self._stride = level_stride
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0

    def size(self) -> int:
        return self._size

    def get(self, level: int, index: int) -> bytes | None:
        return self._nodes.get((level, index))

    def put(self, nodes: Sequence[Node]) -> None:
        for level, index, digest in nodes:
            if level == 0:
                if index != self._size:
                    raise ValueError(f"leaf {index} appended to a log of {self._size} leaves")
                self._size += 1
            if level % self._stride == 0:
                self._nodes[(level, index)] = digest

    def __len__(self) -> int:
        """How many hashes are held (to measure a stride's cost)."""
        return len(self._nodes)
