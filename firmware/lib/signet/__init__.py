# Signet device package: signed telemetry records (COSE_Sign1 over CBOR).
# Importing it does no work; modules are loaded on demand to save heap.

FIRMWARE_VERSION = "0.1.0"
