"""From the broker to the disk and back: the MQTT link, wire framing, verifier workers, the
sequence rules, the batch writer, the acks and the service that wires them together.
May import mcr (the aggregation hook runs in the writer's transaction), store, verify, config.
"""
