# Runs firmware/main.py, unchanged, on the MicroPython unix port as if on an ESP32
# (boardsim's machine, network and ntptime; the scripted broker as umqtt.simple)
# with whatever config.json and key file the board directory holds, and prints the
# signet modules it loaded: the frozen manifest of that config must hold them all.
# The coin on pin 4 and the terminal on UART 2, when configured, each make a sale;
# the run ends once the gateway acknowledged every record and the loop ran a while.
# Usage: micropython board_loads.py LIBDIR BOARD_DIR MAIN_PY UART_LINE (the terminal's
# sale, framed by the host: the harness must not load uartline itself)
# Prints "R loaded <names>" and "R revs <count>".

import os
import sys

FEEDS_AFTER_ACK = 50  # loop passes after the last ack: what runs later loads too


def main():
    sys.path.insert(0, sys.argv[1])
    os.chdir(sys.argv[2])
    import boardsim
    import fakeumqtt

    gw = boardsim.install(fakeumqtt).gateway
    world = boardsim.world
    loaded = boardsim.LoadedModules()
    sales = []
    acked_at = []

    def on_feed(feeds):
        loaded.sample()
        if feeds == 20:
            coin = world.pins.get(4)
            if coin is not None:
                coin.handler(coin)
                sales.append("pulse")
            uart = world.uarts.get(2)
            if uart is not None:
                uart.rx = sys.argv[4].encode()
                sales.append("uart")
        revs = [n for n in gw.kinds if gw.kinds[n] == "rev"]
        if feeds > 20 and len(revs) >= len(sales) and gw.records and gw.ack == max(gw.records):
            acked_at.append(feeds)
        if (acked_at and feeds - acked_at[0] >= FEEDS_AFTER_ACK) or feeds > 20000:
            raise boardsim.Done()

    boardsim.run_main(sys.argv[3], on_feed)
    loaded.sample()
    print("R loaded", " ".join(sorted(loaded.names)))
    print("R revs", len([n for n in gw.kinds if gw.kinds[n] == "rev"]))


main()
