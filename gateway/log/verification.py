"""Checking inclusion and consistency proofs against tree heads, as RFC 9162 specifies.

The algorithms are RFC 9162 section 2.1.3.2 (inclusion) and 2.1.4.2 (consistency), step
by step: they recompute the root(s) from the proof with no tree at hand, and reject a
proof of the wrong length through the ``sn`` counter rather than by a separate count.
Edge cases the RFC's algorithms assume away are refused explicitly: an index outside the
tree, a consistency proof from size 0 (section 2.1.4 defines proofs for 0 < m only), and
equal sizes (only an empty proof between equal tree heads is consistent).

Each check returns None or raises ``ProofError`` whose message is the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from .merkle import HASH_SIZE, node_hash


class ProofError(ValueError):
    """A proof that does not verify; ``str()`` says why."""


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Is ``leaf`` (a leaf hash) at ``index`` in the tree of ``size`` leaves, head ``root``?"""
    _check_hash_lengths(proof, leaf=leaf, root=root)
    # Step 1: the index must be inside the tree.
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    # Steps 2-3.
    fn, sn = index, size - 1
    r = leaf
    # Step 4.
    for p in proof:
        if sn == 0:
            raise ProofError(f"the inclusion proof has too many hashes ({len(proof)})")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # Step 5.
    if sn != 0:
        raise ProofError(f"the inclusion proof has too few hashes ({len(proof)})")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the tree head")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Is the tree of ``new_size`` (head ``new_root``) an extension of the one of ``old_size``?"""
    _check_hash_lengths(proof, old_root=old_root, new_root=new_root)
    if old_size < 1:
        raise ProofError(f"no consistency proof from a tree of {old_size} leaves (it must be >= 1)")
    if new_size < old_size:
        raise ProofError(f"the tree shrank from {old_size} to {new_size} leaves")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different tree heads for the same size {old_size}")
        return
    # Step 1.
    if not proof:
        raise ProofError("the consistency proof is empty")
    # Step 2: a perfect old tree is itself a node of the new one, and starts the path.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Steps 3-4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the consistency proof has too many hashes ({len(proof)})")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise ProofError(f"the consistency proof has too few hashes ({len(proof)})")
    if fr != old_root:
        raise ProofError("the consistency proof does not lead to the old tree head")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the new tree head")


def _shift_until_odd_or_zero(fn: int, sn: int) -> tuple[int, int]:
    """ "Right-shift both fn and sn equally until either LSB(fn) is set or fn is 0"."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def _check_hash_lengths(proof: Sequence[bytes], **hashes: bytes) -> None:
    for name, digest in hashes.items():
        if len(digest) != HASH_SIZE:
            label = name.replace("_", " ")
            raise ProofError(f"the {label} hash is {len(digest)} bytes, not {HASH_SIZE}")
    for position, digest in enumerate(proof):
        if len(digest) != HASH_SIZE:
            raise ProofError(f"proof hash {position} is {len(digest)} bytes, not {HASH_SIZE}")
