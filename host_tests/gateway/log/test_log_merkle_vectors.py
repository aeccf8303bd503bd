"""The log's Merkle tree against the published RFC 6962 / RFC 9162 test vectors.

The vectors are the certificate-transparency ones (merkle_tree_test.cc, reused by
transparency-dev/merkle and other implementations): eight entries, the tree heads of sizes
0..8, and inclusion and consistency proofs in the tree of eight. The test case indices
there are 1-based leaf numbers; here they are the 0-based log indices. They were checked
against the independent recursive implementation in kit/merkle_reference.py as well.
"""

from __future__ import annotations

import pytest

from kit import merkle_reference as reference
from signet_gateway.log.merkle import EMPTY_ROOT, leaf_hash, node_hash, root
from signet_gateway.log.nodes import MemoryNodeStore
from signet_gateway.log.tree import MerkleTree
from signet_gateway.log.verification import verify_consistency, verify_inclusion

ENTRIES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
"""ROOTS[n]: the tree head of the first n entries."""


def hexes(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


INCLUSION = [  # (index, size, audit path)
    (0, 1, []),
    (
        0,
        8,
        hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        hexes(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, hexes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        hexes(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        hexes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        hexes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        hexes(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda s: f"stride{s}")
def tree(request: pytest.FixtureRequest) -> MerkleTree:
    """The eight entries' tree, over stores keeping every level or only some."""
    log = MerkleTree(MemoryNodeStore(level_stride=request.param))
    for entry in ENTRIES:
        log.append(leaf_hash(entry))
    return log


def test_empty_tree_head_is_sha256_of_nothing() -> None:
    assert ROOTS[0] == EMPTY_ROOT
    assert root([]) == ROOTS[0]
    assert MerkleTree(MemoryNodeStore()).root() == ROOTS[0]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    # RFC 9162 2.1.1: 0x00 before a leaf, 0x01 before two children.
    assert leaf_hash(b"") == ROOTS[1]
    assert node_hash(leaf_hash(ENTRIES[0]), leaf_hash(ENTRIES[1])) == ROOTS[2]
    assert leaf_hash(leaf_hash(ENTRIES[0]) + leaf_hash(ENTRIES[1])) != ROOTS[2]


@pytest.mark.parametrize("size", range(9))
def test_tree_heads_of_every_size(tree: MerkleTree, size: int) -> None:
    assert root([leaf_hash(e) for e in ENTRIES[:size]]) == ROOTS[size]
    assert tree.root(size) == ROOTS[size]
    assert reference.mth(ENTRIES[:size]) == ROOTS[size]


def test_tree_head_as_it_grows() -> None:
    log = MerkleTree(MemoryNodeStore())
    for size, entry in enumerate(ENTRIES, start=1):
        assert log.append(leaf_hash(entry)) == size - 1
        assert log.size == size
        assert log.root() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_vectors(tree: MerkleTree, index: int, size: int, expected: list[bytes]) -> None:
    assert tree.inclusion_proof(index, size) == expected
    assert reference.path(index, ENTRIES[:size]) == expected
    verify_inclusion(leaf_hash(ENTRIES[index]), index, size, expected, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY)
def test_consistency_vectors(tree: MerkleTree, old: int, new: int, expected: list[bytes]) -> None:
    assert tree.consistency_proof(old, new) == expected
    assert reference.proof(old, ENTRIES[:new]) == expected
    verify_consistency(old, new, ROOTS[old], ROOTS[new], expected)
