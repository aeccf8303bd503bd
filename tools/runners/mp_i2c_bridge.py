# MicroPython side of the I2C bridge (tools/runners/i2c_bridge.py): a machine.I2C
# stand-in for the unix port, which has no I2C. Each writeto / readfrom_into /
# sleep_us is one request line over loopback TCP to the CPython process that
# holds the emulated ATECC608; a NACK comes back as OSError, as from
# machine.I2C. Used by the firmware tests and `signet bench sign`; `spent_us`
# adds up the time spent inside the bridge, so a benchmark can take it out.
#
# MicroPython only (its sockets have write/readline); CPython tests use
# i2c_bridge.LocalBus, the same methods in-process.

import binascii
import json
import socket
from time import ticks_diff as _ticks_diff
from time import ticks_us as _ticks_us


class BridgeI2C:
    def __init__(self, port, host="127.0.0.1"):
        self._sock = socket.socket()
        self._sock.connect(socket.getaddrinfo(host, port)[0][-1])
        self.spent_us = 0
        self.transfers = 0
        self._owed = False  # a request was sent and its reply not read yet

    def _ask(self, line):
        if self._owed:
            # A MemoryError (a heap probe) struck between a request and its reply:
            # drop that reply, else every later answer would be the one before it.
            self._sock.readline()
            self._owed = False
        start = _ticks_us()
        data = line.encode() + b"\n"
        self._sock.write(data)
        self._owed = True
        reply = self._sock.readline()
        self._owed = False
        reply = reply.decode().strip()
        self.spent_us += _ticks_diff(_ticks_us(), start)
        if reply[:1] == "N":
            raise OSError(int(reply[2:]))
        if reply[:1] != "K":
            raise RuntimeError("I2C bridge: " + reply)
        return reply[2:]

    def writeto(self, addr, buf, stop=True):
        self.transfers += 1
        return int(self._ask("W %d %s" % (addr, binascii.hexlify(buf).decode())))

    def readfrom_into(self, addr, buf, stop=True):
        self.transfers += 1
        data = binascii.unhexlify(self._ask("R %d %d" % (addr, len(buf))))
        buf[:] = data

    def readfrom(self, addr, n, stop=True):
        buf = bytearray(n)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def sleep_us(self, us):
        self._ask("S %d" % us)

    def control(self, op, **fields):
        fields["op"] = op
        return json.loads(self._ask("C " + json.dumps(fields)))

    def close(self):
        self._sock.close()
