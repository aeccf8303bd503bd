# Runs firmware/main.py, unchanged, on the MicroPython unix port as if on an ESP32
# whose key is in an ATECC608: machine.I2C is the I2C bridge to the emulated chip
# (tools/runners/mp_i2c_bridge.py, the chip in the pytest process), machine,
# network and ntptime are boardsim's stand-ins, umqtt.simple the scripted broker.
# The harness provisions the chip the way `signet device provision --se` leaves a
# board (config.json, the binding file) and lets main.py open the key.
# Usage: micropython board_chip.py LIBDIR RUNNERS BOARD_DIR MAIN_PY SCENARIO PORT
# SCENARIO: ok | swapped_fallback | slot_config (no fallback) | swapped (no fallback).
# Prints "R <name> <value>" lines for the host test.

import json
import os
import sys


def main():
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    os.chdir(sys.argv[3])
    scenario = sys.argv[5]
    import boardsim
    import fakeumqtt
    from mp_i2c_bridge import BridgeI2C

    bus = BridgeI2C(int(sys.argv[6]))
    opts = {"kind": "tng", "address": 0x35}
    if scenario == "slot_config":
        opts["slot_config"] = 0x2083 | 1 << 14  # Trust&GO slot 0, but PrivWrite allowed
    facts = bus.control("new", **opts)
    bound = facts
    if scenario.startswith("swapped"):
        bound = facts
        facts = bus.control("new", **opts)  # another chip in the socket
    import binascii

    from signet import binding

    xy = binascii.unhexlify(bound["public_key"])
    pub = bytes((3 if xy[63] & 1 else 2,)) + xy[:32]
    with open("chip.json", "w") as f:
        f.write(binding.dumps("ATECC608B", binascii.unhexlify(bound["serial"]), 0, pub))
    key = {
        "type": "atecc608",
        "path": "chip.json",
        "address": 0x35,
        "i2c": {"id": 0, "scl": 22, "sda": 21},
    }
    if scenario.endswith("fallback"):
        from signet import keyfile
        from signet.signer import SoftwareSigner

        with open("fallback.key", "w") as f:
            f.write(keyfile.dumps(SoftwareSigner.generate("p256")))
        key["fallback_path"] = "fallback.key"
    config = {
        "wifi": {"ssid": "cafe", "password": "pw-123"},
        "mqtt": {"host": "broker.test", "timeout_ms": 2000, "ack_wait_ms": 0},
        "key": key,
        "journal": {"dir": sys.argv[3] + "/journal"},
        "intervals": {"heartbeat_s": 60, "loop_ms": 1},
        "time": {"ntp_host": "ntp.test"},
    }
    if scenario in ("ok", "swapped_fallback"):  # the agent runs: the feed ends the run
        config["watchdog_ms"] = 8000
    with open("config.json", "w") as f:
        f.write(json.dumps(config))
    i2c_made = []

    class machine(boardsim.machine):
        @staticmethod
        def I2C(id, scl=None, sda=None, freq=400000):
            i2c_made.append("%d/%s/%s/%d" % (id, scl.id, sda.id, freq))
            return bus

    gw = boardsim.install(fakeumqtt, machine).gateway
    loaded = boardsim.LoadedModules()  # every signet module main.py loads, dropped ones too

    def on_feed(feeds):
        loaded.sample()
        if (gw.records and gw.ack == max(gw.records)) or feeds > 20000:
            raise boardsim.Done()

    boardsim.run_main(sys.argv[4], on_feed)
    loaded.sample()
    r = print
    r("R loaded", " ".join(sorted(loaded.names)))
    r("R i2c", " ".join(i2c_made))
    r("R counters", bus.control("facts")["counters"])
    r("R kid", gw.kid)
    r("R bound", binascii.hexlify(pub).decode())
    for n in sorted(gw.records):
        f = gw.fields(n)
        r("R rec", "%d/%s/%s/%s" % (n, f["k"], f.get("ev"), f.get("msg")))
        r("R raw", binascii.hexlify(gw.raw[n]).decode())


main()
