# An I2C bus to an emulated ATECC608 for the firmware tests (MicroPython-compatible).
#
# CPython: tools/runners/i2c_bridge.LocalBus, the emulator in-process. MicroPython
# (the unix port has no machine.I2C): tools/runners/mp_i2c_bridge.BridgeI2C, the
# same methods over loopback TCP to the emulator in the pytest process, whose
# port is in SIGNET_I2C_BRIDGE (host_tests/firmware/test_se_micropython.py).
# control(op, ...) sets the chip up, injects faults and reports facts.

import sys

from signet.atecc608 import ATECC608

_bus = None


def bus():
    global _bus
    if _bus is None:
        if sys.implementation.name == "micropython":
            import os

            from mp_i2c_bridge import BridgeI2C

            _bus = BridgeI2C(int(os.getenv("SIGNET_I2C_BRIDGE")))
        else:
            from signet_tools.runners.i2c_bridge import LocalBus

            _bus = LocalBus()
    return _bus


def chip(kind="tng", **opts):
    """A fresh emulated chip; returns (driver, bus, facts)."""
    b = bus()
    facts = b.control("new", kind=kind, **opts)
    return ATECC608(b, facts["address"], sleep_us=b.sleep_us), b, facts


def hexlify(b):
    return "".join("%02x" % x for x in b)


def unhex(s):
    import binascii

    return binascii.unhexlify(s)
