"""Audit bundles: a machine's records, proofs, checkpoint and signed period report in one
file, and the checks that re-derive every figure from it (docs/AUDIT.md). The top layer of
the gateway: it replays records through ingest's own sequencer and mcr's aggregator.
"""
