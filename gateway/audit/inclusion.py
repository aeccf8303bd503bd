"""Inclusion proofs of many leaves of one tree, checked fast and exactly.

Every proof of a bundle leads to the same root, and neighbouring leaves share most of their
paths. Once a proof has been checked all the way to the checkpoint's root, every node it
computed and every sibling it carried is known to be that node of that tree (SHA-256 being
collision resistant). A later proof stops hashing when it computes a known node, and its
remaining siblings must then equal the known ones byte for byte: a proof that differs
anywhere, even above the shared node, is checked again by RFC 9162's algorithm
(log/verification.py), which refuses it with its reason. Nothing is accepted that the RFC's
check would refuse.

Positions follow the tree's bottom-up view (proofs.py): at a level of width w, node i's
sibling is i ^ 1 when that is below w, else node i is carried up unchanged.
"""

from __future__ import annotations

from signet_gateway.log.merkle import HASH_SIZE, node_hash
from signet_gateway.log.verification import ProofError, verify_inclusion

__all__ = ["InclusionChecker"]


class InclusionChecker:
    """Checks inclusion proofs against one (size, root); raises ProofError like the RFC's.

    A proof is given as its hashes concatenated (the bundle's form): comparing the rest of
    a proof with the known siblings above a node is then one comparison of bytes.

    What is known is one node per level: the last one a proof reached there. Leaves come in
    log order, and the paths of neighbouring leaves meet at the last node computed at some
    level, so that is all a later proof can use; older nodes would only cost memory (a
    bundle of 100,000 records would otherwise keep about 200,000 of them). Leaves out of
    order are still checked exactly, by hashing further up.
    """

    def __init__(self, size: int, root: bytes) -> None:
        self.size = size
        self.root = root
        # level -> (index, node hash, the proof that reached it, where its part above the
        # node starts): the siblings above a node are fixed by the tree, so a valid proof
        # through that node ends with exactly those bytes (a view: no copy per proof).
        self._known: list[tuple[int, bytes, memoryview] | None] = [None] * 64

    def check(self, leaf: bytes, index: int, proof: bytes) -> None:
        if not self._fast(leaf, index, proof):
            hashes = [proof[i : i + HASH_SIZE] for i in range(0, len(proof), HASH_SIZE)]
            verify_inclusion(leaf, index, self.size, hashes, self.root)
            raise ProofError("the inclusion proof does not match the tree's other proofs")

    def _fast(self, leaf: bytes, index: int, proof: bytes) -> bool:
        """True if the proof leads to the root; False if the RFC's check must decide."""
        if not 0 <= index < self.size or len(leaf) != HASH_SIZE or len(proof) % HASH_SIZE:
            return False
        known = self._known
        seen: list[tuple[int, int, bytes, int]] = []  # computed nodes: level, index, hash, offset
        node, i, width, level, at = leaf, index, self.size, 0, 0
        end = len(proof)
        while width > 1:
            have = known[level]
            if have is not None and have[0] == i:
                above = have[2]
                if have[1] != node or end - at != len(above) or not proof.endswith(above):
                    return False
                break
            seen.append((level, i, node, at))
            if i ^ 1 < width:
                if at >= end:
                    return False
                other = proof[at : at + HASH_SIZE]
                at += HASH_SIZE
                node = node_hash(other, node) if i & 1 else node_hash(node, other)
            i >>= 1
            width = (width + 1) >> 1
            level += 1
        else:
            if at != end or node != self.root:
                return False
        view = memoryview(proof)
        for level, i, digest, offset in seen:
            known[level] = (i, digest, view[offset:])
        return True
