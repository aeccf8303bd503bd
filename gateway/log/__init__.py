"""The transparency log of accepted records: its Merkle tree, proofs, checkpoints and key.

Pure code over bytes (no MQTT, no SQL: the ``log-pure`` contract); it imports only the
layers below it (``trust``, ``verify``, ``config``), and ``store`` persists its nodes.

  merkle.py        RFC 9162 hashing, the tree head of a list of leaf hashes, compact ranges
  nodes.py         NodeStore: perfect-subtree hashes by (level, index); MemoryNodeStore
  tree.py          MerkleTree over a NodeStore: O(log n) appends, heads of past sizes, proofs
  verification.py  RFC 9162 2.1.3.2 / 2.1.4.2 proof checks (ProofError says why)
  tlog_proof.py    the C2SP tlog-proof text: index, proof hashes, the checkpoint verbatim
  note.py, checkpoint.py, key.py   C2SP signed notes, tlog checkpoints, the log's key

Names other modules use (import them from their module):
  merkle.leaf_hash(raw: bytes) -> bytes              SHA-256(0x00 || raw), RFC 9162 2.1.1
  merkle.node_hash(left: bytes, right: bytes) -> bytes   SHA-256(0x01 || left || right)
  merkle.root(leaf_hashes: Iterable[bytes]) -> bytes MTH of leaf hashes (EMPTY_ROOT if none)
  merkle.EMPTY_ROOT, merkle.HASH_SIZE
  tree.MerkleTree(store).append(leaf_hash) / .root(size) / .inclusion_proof(index, size)
      / .consistency_proof(old_size, new_size)
  verification.verify_inclusion(leaf_hash, index, size, proof, root)
  verification.verify_consistency(old_size, new_size, old_root, new_root, proof)
"""
