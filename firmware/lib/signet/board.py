# The MicroPython platform for ESP32 and rp2 (Pico W): Wi-Fi, watchdog, reset
# cause, NTP, ticks, LED, and the pulse/UART sources. Thin on purpose: all
# logic lives in the agent and is tested on the host; nothing runs at import.

import time

from .clock import epoch_offset_ms


def _reset_names(machine):
    names = {}
    for attr, name in (
        ("PWRON_RESET", "power_on"),
        ("HARD_RESET", "hard"),
        ("WDT_RESET", "wdt"),
        ("DEEPSLEEP_RESET", "deepsleep"),
        ("SOFT_RESET", "soft"),
        ("BROWNOUT_RESET", "brownout"),
    ):
        value = getattr(machine, attr, None)
        if value is not None:
            names[value] = name
    return names


def i2c_bus(spec):
    """machine.I2C for the secure element, from the config's key.i2c
    ({"id", "scl", "sda", "freq"}; no scl/sda: the port's default pins for that id)."""
    import machine

    kw = {"freq": spec["freq"]}
    if spec["scl"] is not None:
        kw["scl"] = machine.Pin(spec["scl"])
    if spec["sda"] is not None:
        kw["sda"] = machine.Pin(spec["sda"])
    return machine.I2C(spec["id"], **kw)


class Board:
    def __init__(self, config):
        import machine
        import network

        self._machine = machine
        self._cfg = config
        self._wlan = network.WLAN(network.STA_IF)
        self._connecting_since = None
        self._offset = epoch_offset_ms(time.gmtime(0)[0])
        self._wdt = machine.WDT(timeout=config.watchdog_ms) if config.watchdog_ms else None
        led = config.led
        self._led = None
        if led:
            self._led = machine.Pin(led["pin"], machine.Pin.OUT)
            self._led_low = led["active_low"]
            self.led(False)

    # -- the agent's platform interface ----------------------------------------

    ticks_ms = staticmethod(time.ticks_ms)
    ticks_diff = staticmethod(time.ticks_diff)
    sleep_ms = staticmethod(time.sleep_ms)

    def wall_ms(self):
        # time.time_ns() counts from the port's epoch (2000 on ESP32).
        return time.time_ns() // 1000000 + self._offset

    def sync_clock(self):
        host = self._cfg.time["ntp_host"]
        if not host or not self._wlan.isconnected():
            return False
        import ntptime  # its failures are caught and logged by WallClock.maybe_sync

        ntptime.host = host
        ntptime.timeout = 1
        ntptime.settime()  # sets the RTC to UTC
        return True

    def reset_cause(self):
        return _reset_names(self._machine).get(self._machine.reset_cause(), "unknown")

    def feed_watchdog(self):
        if self._wdt is not None:
            self._wdt.feed()

    def network_ready(self):
        ok = self._wlan.isconnected()
        self.led(ok)
        return ok

    def connect_network(self):
        # Non-blocking: start association and return; restarting it on every
        # call would never let a slow access point finish. Retry after 30 s.
        now = time.ticks_ms()
        if (
            self._connecting_since is not None
            and time.ticks_diff(now, self._connecting_since) < 30000
        ):
            return
        self._connecting_since = now
        wifi = self._cfg.wifi
        self._wlan.active(True)
        try:
            self._wlan.disconnect()
        except OSError:
            pass
        pw = wifi["password"]
        self._wlan.connect(wifi["ssid"], pw.reveal() if pw is not None else "")

    def urandom(self, n):
        import os

        return os.urandom(n)

    def log(self, msg):
        print(msg)

    def led(self, on):
        if self._led is not None:
            self._led.value(bool(on) != self._led_low)

    # -- sources ---------------------------------------------------------------------

    def make_sources(self):
        """(sources, errors): a source that cannot be built is reported, not fatal."""
        sources = []
        errors = []
        for i, spec in enumerate(self._cfg.sources):
            try:
                sources.append(self._source(spec))
            except Exception as e:
                errors.append("sources[%d] %s: %s" % (i, spec["type"], e))
        return sources, errors

    def _source(self, spec):
        machine = self._machine
        if spec["type"] == "pulse":
            from .pulse import PulseSource

            src = PulseSource(
                spec["value"],
                spec["currency"],
                time.ticks_ms,
                time.ticks_diff,
                spec["debounce_ms"],
                spec["flush_ms"],
                spec["src"],
                machine.disable_irq,
                machine.enable_irq,
            )
            pull = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}.get(spec["pull"])
            pin = machine.Pin(spec["pin"], machine.Pin.IN, pull)
            edge = machine.Pin.IRQ_FALLING if spec["edge"] == "falling" else machine.Pin.IRQ_RISING
            pin.irq(handler=src.handler, trigger=edge)
            src.pin = pin  # keep the Pin alive
            return src
        if spec["type"] == "uart":
            from .uartline import UartSource

            kw = {"baudrate": spec["baud"]}
            if spec["tx"] is not None:
                kw["tx"] = machine.Pin(spec["tx"])
            if spec["rx"] is not None:
                kw["rx"] = machine.Pin(spec["rx"])
            uart = machine.UART(spec["id"], **kw)
            return UartSource(uart, spec["src"], spec["silence_s"] * 1000, self.log)
        raise ValueError("not available on this board")
