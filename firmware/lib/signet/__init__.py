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


# The agent's modules, each after the ones it imports (main.py loads them with load()).
AGENT_MODULES = (
    "record",
    "cbor",
    "cose",
    "builder",
    "journal",
    "state",
    "recorder",
    "clock",
    "link",
    "fsio",
    "agent",
)


def load(*names):
    """Import the submodules `names` in the order given (each after the ones it imports),
    collecting after each. Loading a module leaves garbage between the code it keeps
    (its top-level code; from a .mpy, a 16-byte block per function): freed before the
    next module loads, those holes take that module's small objects instead of staying
    between long-lived code, too small for a signature's bigints."""
    import gc

    for name in names:
        __import__(__name__ + "." + name)
        gc.collect()
