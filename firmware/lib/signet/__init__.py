# Signet device package: signed telemetry records (COSE_Sign1 over CBOR), the
# crash-safe journal and the agent. Imports only MicroPython's standard modules
# (never the host packages). Importing it does no work; modules load on demand.

FIRMWARE_VERSION = "0.1.0"
