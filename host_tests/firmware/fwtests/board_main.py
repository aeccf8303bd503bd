# Runs firmware/main.py, unchanged, on the MicroPython unix port as if on an
# ESP32: machine, network and ntptime are boardsim's stand-ins, umqtt.simple
# is the scripted broker/gateway (fakeumqtt). The working directory is the
# board's "/" (config.json, the key, the journal).
# Usage: micropython board_main.py LIBDIR BOARD_DIR MAIN_PY
# Scenario: a coin acceptor on pin 4 gives 3 pulses, the payment terminal on
# UART 2 sends one sale; the run ends once the gateway acked every record.
# Without UART 2 in the config, the pulses alone. Prints "R <name> <value>" lines
# for the host test to check, among them the firmware modules loaded at the end.

import os
import sys


def _held(name):
    # The classes and functions a loaded signet module holds (module.name, and
    # module.Class.name for a class's functions): the code a config keeps in the heap.
    out = []
    for attr, v in sys.modules[name].__dict__.items():
        if isinstance(v, type):
            out.append("%s.%s" % (name, attr))
            for sub, f in v.__dict__.items():
                if type(f).__name__ in ("function", "bound_method", "staticmethod"):
                    out.append("%s.%s.%s" % (name, attr, sub))
        elif type(v).__name__ == "function":
            out.append("%s.%s" % (name, attr))
    return out


def main():
    sys.path.insert(0, sys.argv[1])
    os.chdir(sys.argv[2])
    import boardsim
    import fakeumqtt

    broker = boardsim.install(fakeumqtt)
    gw = broker.gateway
    world = boardsim.world

    def on_feed(feeds):
        if feeds == 20:
            coin = world.pins[4]
            for _ in range(3):
                coin.handler(coin)
            if 2 in world.uarts:
                from signet.uartline import frame  # here: a pulse-only board never loads it

                world.uarts[2].rx = frame(b"REV,250,EUR,T-1")
        revs = [n for n in gw.kinds if gw.kinds[n] == "rev"]
        want = 2 if 2 in world.uarts else 1
        if (len(revs) >= want and gw.ack == max(gw.records)) or feeds > 20000:
            raise boardsim.Done()

    boardsim.run_main(sys.argv[3], on_feed)
    r = print
    r("R feeds", world.feeds)
    r("R wdt_timeout", world.wdt_timeout)
    r("R wifi", "%s/%s" % world.wlan.joined if world.wlan and world.wlan.joined else None)
    r("R ntp", "%s/%d" % (world.ntp_host, world.ntp_calls))
    led = world.pins.get(2)
    r("R led", "".join(str(v) for v in led.values) if led else None)
    coin = world.pins.get(4)
    if coin:
        r("R coin", "%d/%d/%d" % (coin.mode, coin.pull, coin.trigger))
    uart = world.uarts.get(2)
    if uart:
        r("R uart", "%d/%s/%s" % (uart.baudrate, uart.tx_pin, uart.rx_pin))
        r("R uart_tx", b"|".join(uart.tx).decode())
    r("R ack", gw.ack)
    r("R loaded", " ".join(sorted(m for m in sys.modules if m.startswith("signet"))))
    for name in [m for m in sys.modules if m.startswith("signet.")]:
        r("R held", " ".join(_held(name)))  # a line a module: the heap may be cut up by now
    ec = sys.modules.get("signet.ec")
    if ec:  # the curves it holds, as module attributes or in its cache
        held = []
        for v in ec.__dict__.values():
            held += v.values() if isinstance(v, dict) else [v]
        r("R curves", " ".join(sorted(c.name for c in held if isinstance(c, ec.Curve))))
    for n in sorted(gw.records):
        f = gw.fields(n)
        if f["k"] == "boot":
            r("R boot", "%s/%s" % (f["rc"], f["fw"]))
        elif f["k"] == "rev":
            r("R rev", "%d/%s/%s/%s/%s" % (n, f["am"], f["cur"], f["src"], f["t"] is not None))
        elif f["k"] == "evt":
            r("R evt", "%s/%s" % (f["ev"], f.get("msg")))


main()
