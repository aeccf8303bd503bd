# Stand-ins for the board-only modules `machine`, `network` and `ntptime`,
# with the API of MicroPython's ESP32 port, so that firmware/main.py and
# signet/board.py run unchanged under the unix port (board_main.py installs
# them in sys.modules). `world` records what the firmware did and lets a test
# act on the hardware: fire pin interrupts, send UART bytes, run code at each
# watchdog feed (that is, once per pass of the agent's main loop).


class World:
    def __init__(self):
        self.feeds = 0
        self.on_feed = None  # f(feeds), called at every WDT.feed()
        self.wdt_timeout = None
        self.pins = {}  # id -> Pin
        self.uarts = {}  # id -> UART
        self.reset_cause = 3  # WDT_RESET
        self.irq_disabled = 0
        self.wlan = None
        self.assoc_polls = 3  # isconnected() polls after connect() until associated
        self.ntp_calls = 0
        self.ntp_host = None


world = World()


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.handler = None
        self.trigger = None
        self.values = []
        world.pins[id] = self

    def irq(self, handler=None, trigger=3):
        self.handler = handler
        self.trigger = trigger

    def value(self, v=None):
        if v is None:
            return self.values[-1] if self.values else 0
        self.values.append(1 if v else 0)
        if len(self.values) > 8:
            self.values.pop(0)


class UART:
    def __init__(self, id, baudrate=115200, tx=None, rx=None):
        if not 0 <= id <= 2:
            raise ValueError("UART(%d) doesn't exist" % id)  # the ESP32 port's message
        self.id = id
        self.baudrate = baudrate
        self.tx_pin = tx.id if tx is not None else None
        self.rx_pin = rx.id if rx is not None else None
        self.rx = b""  # bytes the terminal sent, not yet read
        self.tx = []  # what the firmware wrote
        world.uarts[id] = self

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        data, self.rx = self.rx[:n], self.rx[n:]
        return data or None

    def write(self, data):
        self.tx.append(bytes(data))
        return len(data)


class WDT:
    def __init__(self, id=0, timeout=5000):
        world.wdt_timeout = timeout

    def feed(self):
        world.feeds += 1
        if world.on_feed is not None:
            world.on_feed(world.feeds)


class machine:
    Pin = Pin
    UART = UART
    WDT = WDT
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

    @staticmethod
    def reset_cause():
        return world.reset_cause

    @staticmethod
    def disable_irq():
        world.irq_disabled += 1
        return 1

    @staticmethod
    def enable_irq(state):
        pass


class WLAN:
    def __init__(self, interface):
        self.interface = interface
        self.is_active = False
        self.joined = None  # (ssid, password) of the last connect()
        self.connects = 0
        self._polls = None
        world.wlan = self

    def active(self, flag=None):
        if flag is not None:
            self.is_active = flag
        return self.is_active

    def connect(self, ssid, password):
        self.joined = (ssid, password)
        self.connects += 1
        self._polls = world.assoc_polls

    def disconnect(self):
        self._polls = None

    def isconnected(self):
        if self._polls is None or not self.is_active:
            return False
        if self._polls > 0:
            self._polls -= 1
            return False
        return True


class network:
    STA_IF = 0
    WLAN = WLAN


class ntptime:
    host = "pool.ntp.org"
    timeout = 1

    @staticmethod
    def settime():
        # The unix port's clock is the host's (already right): only record the call.
        world.ntp_calls += 1
        world.ntp_host = ntptime.host


class LoadedModules:
    """The signet modules a run loaded, sampled at every open() and every watchdog feed
    (call sample() from on_feed): main.py drops the modules it needs only at boot
    (config, devkey, keyfile, binding) before the first feed, and each of those reads
    a file while it is loaded, so sampling sys.modules then sees them too."""

    def __init__(self):
        import builtins
        import sys

        self.names = set()
        self._modules = sys.modules
        real_open = builtins.open

        def open_sampled(*args, **kwargs):
            self.sample()
            return real_open(*args, **kwargs)

        builtins.open = open_sampled

    def sample(self):
        for name in self._modules:
            if name == "signet" or name.startswith("signet."):
                self.names.add(name)


def install(fakeumqtt, machine_module=None):
    """Make this process look like a board to main.py: machine (or a subclass of ours),
    network, ntptime and umqtt.simple (the scripted broker) in sys.modules, and the
    signet modules the harness itself imported forgotten, so main.py loads what it
    needs. Returns the scripted broker."""
    import sys

    class umqtt:
        simple = fakeumqtt

    sys.modules["machine"] = machine_module or machine
    sys.modules["network"] = network
    sys.modules["ntptime"] = ntptime
    sys.modules["umqtt"] = umqtt
    sys.modules["umqtt.simple"] = fakeumqtt
    for name in list(sys.modules):
        if name == "signet" or name.startswith("signet."):
            del sys.modules[name]
    broker = fakeumqtt.Broker()
    fakeumqtt.broker = broker
    return broker


class Done(Exception):
    """Raised by a harness's on_feed to end main.py's endless loop."""


def run_main(main_py, on_feed):
    """Run main.py, unchanged, as a board boots it; on_feed(feeds) is called at every
    watchdog feed and ends the run by raising Done."""
    world.on_feed = on_feed
    with open(main_py) as f:
        code = f.read()
    try:  # noqa: SIM105 (no contextlib on MicroPython)
        exec(code, {"__name__": "__main__"})
    except Done:
        pass
