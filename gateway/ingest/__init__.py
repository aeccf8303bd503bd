"""From the broker to the disk and back: the MQTT link (and what it logs about the connection),
wire framing, verifier workers, the sequence rules, the batch writer, the acks on their way
to the broker (ack_outbox.py), waiting out a full or unwritable store (store_outage.py), the
enrolled keys as the writer sees them, the one-gateway-per-database lock (which also carries
the readiness) and the service that wires them together.
May import mcr (the aggregation hook runs in the writer's transaction), store, verify, config.
"""
