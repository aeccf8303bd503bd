"""The emulated ATECC608 served to the MicroPython unix port, which has no machine.I2C.

The unix port runs the real driver (firmware/lib/signet/atecc608.py) with a bus object
from mp_i2c_bridge.py (MicroPython code) that forwards every writeto / readfrom_into /
sleep_us over a loopback TCP connection to this server, which plays them on an
EmulatedATECC608 (a NACK comes back as OSError, as from machine.I2C). One line per request:

    W <addr> <hex>   writeto        ->  K <acks> | N <errno>
    R <addr> <n>     readfrom_into  ->  K <hex>  | N <errno>
    S <us>           sleep_us       ->  K          (time passes on the chip's virtual clock)
    C <json>         control        ->  K <json> | E <message>

Control requests, {"op": ...}: "new" (a fresh chip: kind "tng" = Trust&GO-shaped with
options address, slot, slot_config, key_config, lock, clock_divider; kind "blank"), "fault"
(missing, corrupt_reads, busy_extra_ms, high_s, fail_next), "advance" (us on the clock), "facts"
(serial, public key, counters, config, chip_time_us, bus_time_us, transfers), "verify" (an
r || s over a digest with the slot's key, by `cryptography`). LocalBus offers the same
methods in-process, so one test module runs under CPython and MicroPython alike.
"""

from __future__ import annotations

import json
import socketserver
import threading
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from .atecc608_emu import EmulatedATECC608, VirtualClock, blank_chip, trust_and_go

_FAULTS = ("missing", "corrupt_reads", "busy_extra_ms", "high_s", "fail_next")


class ChipControl:
    """One emulated chip and the control requests a test sends about it."""

    def __init__(self) -> None:
        self.chip: EmulatedATECC608 = blank_chip(clock=VirtualClock())
        self.slot = 0

    def handle(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        if op == "new":
            self._new(req)
            return self.facts()
        if op == "fault":
            for name, value in req.items():
                if name == "op":
                    continue
                if name not in _FAULTS:
                    raise ValueError(f"unknown fault {name!r} (known: {', '.join(_FAULTS)})")
                setattr(self.chip, name, value)
            return True
        if op == "advance":
            self.chip.clock.advance(int(req["us"]))
            return True
        if op == "facts":
            return self.facts()
        if op == "verify":
            return self._verify(int(req["slot"]), bytes.fromhex(req["digest"]), req["sig"])
        raise ValueError(f"unknown control op {op!r}")

    def _new(self, req: dict[str, Any]) -> None:
        kind = req.get("kind", "tng")
        address = int(req.get("address", 0x35 if kind == "tng" else 0x60))
        if kind == "tng":
            names = ("slot", "slot_config", "key_config", "clock_divider")
            opts = {k: int(req[k]) for k in names if k in req}
            made = trust_and_go(
                address=address, clock=VirtualClock(), lock=bool(req.get("lock", True)), **opts
            )
            self.chip, self.slot = made.chip, made.slot
        elif kind == "blank":
            self.chip, self.slot = blank_chip(address=address, clock=VirtualClock()), 0
        else:
            raise ValueError(f"unknown chip kind {kind!r}")

    def facts(self) -> dict[str, Any]:
        c = self.chip
        return {
            "address": c.address,
            "serial": c.serial.hex(),
            "slot": self.slot,
            "public_key": c.public_key_bytes(self.slot).hex() if self.slot in c.keys else None,
            "counters": list(c.counters),
            "config": bytes(c.config).hex(),
            "chip_time_us": c.chip_time_us,
            "bus_time_us": c.bus_time_us,
            "transfers": c.transfers,
            "commands": len(c.commands),
        }

    def _verify(self, slot: int, digest: bytes, sig_hex: str) -> bool:
        sig = bytes.fromhex(sig_hex)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self.chip.public_key(slot).verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            return False
        return True


class LocalBus:
    """In-process twin of the MicroPython BridgeI2C: the same methods, no socket."""

    def __init__(self) -> None:
        self.control_state = ChipControl()

    @property
    def chip(self) -> EmulatedATECC608:
        return self.control_state.chip

    def writeto(self, addr: int, buf: bytes) -> int:
        return self.chip.writeto(addr, buf)

    def readfrom_into(self, addr: int, buf: bytearray | memoryview) -> None:
        self.chip.readfrom_into(addr, buf)

    def sleep_us(self, us: int) -> None:
        self.chip.sleep_us(us)

    def control(self, op: str, **fields: Any) -> Any:
        return json.loads(json.dumps(self.control_state.handle({"op": op, **fields})))

    def close(self) -> None:
        pass


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        control = ChipControl()
        for raw in self.rfile:
            line = raw.decode().strip()
            if not line:
                continue
            self.wfile.write((self._answer(control, line) + "\n").encode())
            self.wfile.flush()

    @staticmethod
    def _answer(control: ChipControl, line: str) -> str:
        kind, _, rest = line.partition(" ")
        chip = control.chip
        try:
            if kind == "W":
                addr, _, data = rest.partition(" ")
                return f"K {chip.writeto(int(addr), bytes.fromhex(data))}"
            if kind == "R":
                addr, _, n = rest.partition(" ")
                buf = bytearray(int(n))
                chip.readfrom_into(int(addr), buf)
                return f"K {buf.hex()}"
            if kind == "S":
                chip.sleep_us(int(rest))
                return "K"
        except OSError as exc:
            return f"N {exc.errno}"
        if kind == "C":
            try:
                return "K " + json.dumps(control.handle(json.loads(rest)))
            except (ValueError, KeyError, TypeError) as exc:
                return f"E {exc}"
        return f"E unknown request {kind!r}"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class BridgeServer:
    """Serve emulated chips on a free loopback port (one fresh chip per connection)."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> BridgeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
