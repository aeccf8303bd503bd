"""The transparency log of accepted records: its Merkle tree, proofs, checkpoints and key.

Pure code over bytes (no MQTT, no SQL: the ``log-pure`` contract); it imports only the
layers below it (``trust``, ``verify``, ``config``), and ``store`` persists its nodes.

Names other modules use (import them from their module):
  merkle.leaf_hash(raw: bytes) -> bytes              SHA-256(0x00 || raw), RFC 9162 2.1.1
  merkle.node_hash(left: bytes, right: bytes) -> bytes   SHA-256(0x01 || left || right)
  merkle.root(leaf_hashes: Iterable[bytes]) -> bytes MTH of leaf hashes (EMPTY_ROOT if none)
  merkle.EMPTY_ROOT, merkle.HASH_SIZE
"""
