# Signet device package: signed telemetry records (COSE_Sign1 over CBOR), the
# crash-safe journal and the agent. Imports only MicroPython's standard modules
# (never the host packages). Importing it does no work; modules load on demand.

import sys

FIRMWARE_VERSION = "0.1.0"


def forget(name):
    """Unload the submodule `name` (loaded for one job, such as a start-up step): once
    nothing else refers to it, its code leaves the heap. Imported again if needed."""
    sys.modules.pop(__name__ + "." + name, None)
    globals().pop(name, None)  # the package's attribute, set by the import
