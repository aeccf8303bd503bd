"""Reading the rows of many keys in few statements: IN lists in groups of a few sizes.

A batch touches tens or hundreds of devices, and a worker on PostgreSQL whose caches were
dropped (another worker wrote: generation.py) reads each one's state again. One statement
per device costs a round trip each, most of it in the worker's own CPU; one statement per
group of up to ``GROUP`` keys instead. Each group is padded to a power of two by repeating
its last key (a repeated key in an IN list changes no result), so a query takes at most
seven texts, each parsed and planned once rather than once per batch size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

__all__ = ["GROUP", "groups", "marks"]

GROUP: Final = 64

K = TypeVar("K")


def groups(keys: Sequence[K]) -> Iterator[list[K]]:
    """``keys`` in groups of at most GROUP, each padded to a power of two."""
    for start in range(0, len(keys), GROUP):
        group = list(keys[start : start + GROUP])
        size = 1
        while size < len(group):
            size *= 2
        group.extend([group[-1]] * (size - len(group)))
        yield group


def marks(count: int, width: int = 1) -> str:
    """The placeholders of ``count`` keys: ``?, ?`` or, for composite keys, ``(?, ?), (?, ?)``."""
    one = "?" if width == 1 else "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * count)
