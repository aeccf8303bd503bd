# Microchip ATECC608 (A and B) secure element over I2C: what Signet needs, nothing more.
#
# The private key is born in a slot (GenKey) and never leaves the chip; the
# device asks for its public key, loads a digest into TempKey (Nonce
# pass-through) and has it signed (Sign, external message). Counter gives the
# monotonic counter the sequence lease is bound to (docs/JOURNAL.md).
#
# Bus: any object with machine.I2C's writeto(addr, buf) and
# readfrom_into(addr, buf) (a board's machine.I2C, tools/pi/i2c_linux.py on a
# Pi), where a NACK raises OSError. Every public method wakes the chip, runs
# its command and puts it back to idle (idle keeps TempKey, so a Nonce and the
# Sign after it may be two calls; sleep would clear it).
#
# Rules below come from the ATECC608A/B datasheet (DS40001977 / DS20006561):
# "I2C Interface" (wake, word address), "Command Packets", "Status/Error
# Codes", "CRC Calculation" and "Command Execution Times".

import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Word-address byte, the first byte of every write to the chip.
_WA_RESET = const(0x00)  # rewind the I/O buffer: the next read starts at its beginning
_WA_SLEEP = const(0x01)  # low-power sleep: TempKey and all volatile state are lost
_WA_IDLE = const(0x02)  # idle: TempKey kept, watchdog stopped
_WA_COMMAND = const(0x03)

_OP_READ = const(0x02)
_OP_NONCE = const(0x16)
_OP_RANDOM = const(0x1B)
_OP_COUNTER = const(0x24)
_OP_INFO = const(0x30)
_OP_GENKEY = const(0x40)
_OP_SIGN = const(0x41)

# Maximum execution times in ms, datasheet table "Command Execution Times" at
# the factory clock divider (ChipMode bits 3..7 = 0x00). The chip NACKs its
# address until it is done; we poll and give up after max + _MARGIN_MS.
_MAX_READ = const(5)
_MAX_INFO = const(5)
_MAX_NONCE = const(20)
_MAX_RANDOM = const(23)
_MAX_COUNTER = const(25)
# GenKey and Sign run on the clock ChipMode divides (config byte 19, bits 3..7):
# their maxima (GenKey, Sign) at the dividers the datasheet defines, 0x0 (the
# factory setting), 0x5 and 0xD; any other divider is given the slowest.
_ECC_DIV0 = (115, 115)
_ECC_DIV5 = (215, 220)
_ECC_DIVD = (630, 665)
_MARGIN_MS = const(10)
_POLL_US = const(1000)

# Wake: SDA held low for at least tWLO (60 us), then tWHI (1.5 ms) before the
# chip answers. A write to address 0x00 at <= 100 kHz holds SDA low for eight
# bit times (80 us): it is the wake pulse, and nobody ACKs it.
_T_WHI_US = const(1500)
_WAKE_POLLS = const(10)  # 1 ms apart after tWHI: a chip that is there answers at once
_RETRIES = const(3)  # resends after a CRC/communication error or a watchdog warning

# Status codes (datasheet "Status/Error Codes"), in a 4-byte response.
_ST_OK = const(0x00)
_ST_AFTER_WAKE = const(0x11)
_ST_WATCHDOG = const(0xEE)
_ST_COMM = const(0xFF)
_STATUS = {
    0x01: "checkmac/verify miscompare (status 0x01)",
    0x03: "parse error (status 0x03): the command, its mode or a parameter is not valid",
    0x05: "ECC fault (status 0x05): the computation failed inside the chip",
    0x07: "self-test error (status 0x07): the chip failed its own self test",
    0x08: "health test error (status 0x08): the random number generator failed its health test",
    0x0F: "execution error (status 0x0f): not allowed in the chip's state "
    "(lock state, slot or key configuration)",
    0x11: "the chip slept and woke before running the command (status 0x11)",
    0xEE: "watchdog about to expire (status 0xee), even after a fresh wake",
    0xFF: "communication error (status 0xff): the chip received a corrupted packet",
}

_WAKE_OK = b"\x04\x11\x33\x43"  # count 4, status 0x11, CRC
_TX_MAX = const(40)  # word address + count + opcode + p1 + p2 (2) + 32 data + CRC (2)
_RX_MAX = const(67)  # count + 64 data + CRC (2)

CONFIG_BYTES = const(128)
LOCK_VALUE = const(86)  # data and OTP zones: 0x00 locked, 0x55 unlocked
LOCK_CONFIG = const(87)  # configuration zone: 0x00 locked, 0x55 unlocked

try:
    _sleep_us = time.sleep_us
except AttributeError:  # CPython (a Pi)

    def _sleep_us(us):
        time.sleep(us / 1000000)


def crc16(buf, start, end):
    """The chip's CRC-16: polynomial 0x8005, register starting at 0, each byte
    fed least significant bit first; sent on the wire low byte first."""
    crc = 0
    for i in range(start, end):
        b = buf[i]
        for _ in range(8):
            # Feed the data bit against the register's top bit.
            crc = (((crc << 1) ^ 0x8005) if (b ^ (crc >> 15)) & 1 else (crc << 1)) & 0xFFFF
            b >>= 1
    return crc


class ATECCError(Exception):
    """Any failure talking to the chip; str() is one sentence naming its address.
    status: the chip's status code, or None (no answer, bad framing)."""

    def __init__(self, address, sentence, status=None):
        super().__init__("ATECC608 at 0x%02x: %s" % (address, sentence))
        self.status = status
        self.address = address


class ATECC608:
    def __init__(self, i2c, address=0x60, sleep_us=None):
        # sleep_us: how to wait (default time.sleep_us); tests give the
        # emulator's virtual clock so no test waits for real.
        self._i2c = i2c
        self.address = address
        self._sleep = sleep_us or _sleep_us
        self._tx = bytearray(_TX_MAX)
        self._rx = bytearray(_RX_MAX)
        self._txv = memoryview(self._tx)
        self._rxv = memoryview(self._rx)
        self._ecc = None  # (GenKey, Sign) maxima, read from ChipMode at first use

    def _error(self, sentence, status=None):
        return ATECCError(self.address, sentence, status)

    # -- power states -------------------------------------------------------

    def wake(self):
        for _attempt in range(_RETRIES):
            try:
                self._i2c.writeto(0, b"\x00")  # the wake pulse; a NACK is expected
            except OSError:
                pass
            self._sleep(_T_WHI_US)
            got = self._read_wake()
            if got == _WAKE_OK:
                return
            crc = crc16(got, 0, 2)
            crc_ok = got[2] == crc & 0xFF and got[3] == crc >> 8
            if crc_ok and got[0] == 4 and got[1] == 0x07:
                raise self._error(_STATUS[0x07], 0x07)
            # A corrupted read, or the chip was already awake (a wake pulse does
            # nothing then) and its I/O buffer holds an older response: idle,
            # then wake again.
            self._word(_WA_IDLE)
        if not crc_ok:
            raise self._error(
                "wake response failed its CRC check %d times (noise on the bus?)" % _RETRIES
            )
        raise self._error(
            "unexpected wake response %s after %d attempts (expected 04 11 33 43)"
            % (_hex(got), _RETRIES)
        )

    def _read_wake(self):
        buf = self._rxv[:4]
        for _ in range(_WAKE_POLLS):
            try:
                self._i2c.readfrom_into(self.address, buf)
                return bytes(buf)
            except OSError:
                self._sleep(_POLL_US)
        raise self._error("no response (not wired, wrong address, or no pull-ups?)")

    def idle(self):
        """Awake -> idle: TempKey kept, the watchdog stopped (the driver's resting state)."""
        self._word(_WA_IDLE)

    def sleep(self):
        """Lowest power; TempKey lost. An idle chip ignores the bus, so wake it first."""
        self.wake()
        self._word(_WA_SLEEP)

    def _word(self, wa):
        try:
            self._i2c.writeto(self.address, bytes((wa,)))
        except OSError:
            pass  # asleep already: nothing to do

    # -- command transport --------------------------------------------------

    def _run(self, name, opcode, p1, p2, data, max_ms, out_len):
        """Wake, execute one command, idle. Returns its out_len response bytes."""
        self.wake()
        try:
            return self._execute(name, opcode, p1, p2, data, max_ms, out_len)
        finally:
            self.idle()

    def _execute(self, name, opcode, p1, p2, data, max_ms, out_len):
        tx = self._tx
        n = 7 + len(data)  # count byte counts itself, opcode, p1, p2 (2), data, CRC (2)
        tx[0] = _WA_COMMAND
        tx[1] = n
        tx[2] = opcode
        tx[3] = p1
        tx[4] = p2 & 0xFF
        tx[5] = p2 >> 8
        tx[6 : 6 + len(data)] = data
        crc = crc16(tx, 1, n - 1)
        tx[n - 1] = crc & 0xFF
        tx[n] = crc >> 8
        status = None
        for _attempt in range(_RETRIES):
            try:
                self._i2c.writeto(self.address, self._txv[: n + 1])
            except OSError:
                raise self._error("%s: the chip did not acknowledge the command" % name) from None
            status = self._receive(name, max_ms)
            if status == _ST_COMM:
                continue  # the chip saw a corrupted packet: send it again
            if status == _ST_WATCHDOG:
                # Too little time left before the watchdog puts the chip to
                # sleep: idle resets it, then the command runs in a fresh wake.
                self.idle()
                self.wake()
                continue
            break
        if status is None:
            count = self._rx[0]
            if count != out_len + 3:
                raise self._error("%s: %d-byte response, expected %d" % (name, count, out_len + 3))
            return bytes(self._rx[1 : 1 + out_len])
        if status == _ST_OK and out_len == 0:
            return b""
        if status == _ST_OK:
            raise self._error("%s: status-only response where data was expected" % name, 0)
        why = _STATUS.get(status) or "unknown status 0x%02x" % status
        raise self._error("%s: %s" % (name, why), status)

    def _receive(self, name, max_ms):
        """Poll until the response is there; check its CRC (re-reading it after
        a rewind if the bus corrupted it). Returns the status byte of a 4-byte
        response, or None for a data response (in self._rx)."""
        rx = self._rxv
        waited = 0
        limit = (max_ms + _MARGIN_MS) * 1000
        while True:
            try:
                self._i2c.readfrom_into(self.address, rx[:1])
                break
            except OSError:  # still executing: the chip NACKs its address
                if waited >= limit:
                    raise self._error(
                        "%s: still busy after %d ms (the datasheet maximum is %d ms)"
                        % (name, limit // 1000, max_ms)
                    ) from None
                self._sleep(_POLL_US)
                waited += _POLL_US
        try:
            for attempt in range(_RETRIES):
                if attempt:
                    # Rewind the I/O buffer and read the same response again.
                    self._i2c.writeto(self.address, bytes((_WA_RESET,)))
                    self._i2c.readfrom_into(self.address, rx[:1])
                count = rx[0]
                if 4 <= count <= _RX_MAX:
                    self._i2c.readfrom_into(self.address, rx[1:count])
                    crc = crc16(rx, 0, count - 2)
                    if rx[count - 2] == crc & 0xFF and rx[count - 1] == crc >> 8:
                        return rx[1] if count == 4 else None
        except OSError:
            raise self._error("%s: the chip stopped answering mid-response" % name) from None
        raise self._error(
            "%s: response failed its CRC check %d times (noise on the bus?)" % (name, _RETRIES)
        )

    # -- commands -----------------------------------------------------------

    def info(self):
        """Info mode 0x00: the 4-byte revision (byte 2 is 0x60 on an ATECC608)."""
        return self._run("Info", _OP_INFO, 0x00, 0, b"", _MAX_INFO, 4)

    def read_config_block(self, block):
        """Read 32 bytes of the configuration zone (block 0..3)."""
        return self._run("Read", _OP_READ, 0x80, block << 3, b"", _MAX_READ, 32)

    def read_config_word(self, offset):
        """Read the 4 configuration bytes holding byte `offset` (word-aligned)."""
        # Config-zone address: block (bits 3..4) and word in block (bits 0..2),
        # which together are the byte offset / 4.
        return self._run("Read", _OP_READ, 0x00, offset >> 2, b"", _MAX_READ, 4)

    def read_config(self):
        out = bytearray(CONFIG_BYTES)
        for block in range(4):
            out[block * 32 : block * 32 + 32] = self.read_config_block(block)
        return bytes(out)

    def serial(self):
        """The 9-byte serial number: configuration bytes 0..3 and 8..12."""
        block = self.read_config_block(0)
        return block[0:4] + block[8:13]

    def lock_state(self):
        """(config_locked, data_locked): bytes 87 and 86 are 0x00 once locked."""
        word = self.read_config_word(LOCK_VALUE)  # bytes 84..87
        return word[LOCK_CONFIG & 3] == 0x00, word[LOCK_VALUE & 3] == 0x00

    def slot_config(self, slot):
        """SlotConfig of a slot (config bytes 20 + 2*slot, little-endian)."""
        return self._config_u16(20 + 2 * _slot(slot))

    def key_config(self, slot):
        """KeyConfig of a slot (config bytes 96 + 2*slot, little-endian)."""
        return self._config_u16(96 + 2 * _slot(slot))

    def _config_u16(self, offset):
        word = self.read_config_word(offset)
        i = offset & 3
        return word[i] | (word[i + 1] << 8)

    def _ecc_max(self):
        # Read once, and before a Nonce: the Sign that follows it must not wait
        # for a Read of its own.
        if self._ecc is None:
            div = self.read_config_word(16)[3] >> 3
            self._ecc = _ECC_DIV0 if div == 0 else (_ECC_DIV5 if div == 5 else _ECC_DIVD)
        return self._ecc

    def genkey(self, slot):
        """GenKey mode 0x04: a NEW private key in the slot; returns its public key X || Y."""
        return self._run("GenKey", _OP_GENKEY, 0x04, _slot(slot), b"", self._ecc_max()[0], 64)

    def public_key(self, slot):
        """GenKey mode 0x00: the public key X || Y of the slot's existing private key."""
        return self._run("GenKey", _OP_GENKEY, 0x00, _slot(slot), b"", self._ecc_max()[0], 64)

    def nonce_passthrough(self, data32):
        """Nonce mode 0x03: TempKey <- the 32 bytes given (the digest to sign)."""
        if len(data32) != 32:
            raise ValueError("Nonce pass-through takes 32 bytes, got %d" % len(data32))
        self._ecc_max()
        self._run("Nonce", _OP_NONCE, 0x03, 0, data32, _MAX_NONCE, 0)

    def sign_external(self, slot):
        """Sign mode 0x80 (external message in TempKey) with the slot's key: r || s."""
        return self._run("Sign", _OP_SIGN, 0x80, _slot(slot), b"", self._ecc_max()[1], 64)

    def random(self):
        """Random mode 0x00: 32 bytes (a fixed FF FF 00 00 pattern until the config is locked)."""
        return self._run("Random", _OP_RANDOM, 0x00, 0, b"", _MAX_RANDOM, 32)

    def counter_read(self, i):
        return self._counter(0x00, i)

    def counter_increment(self, i):
        """Counter mode 0x01: add one, return the new value (the chip stops at 2,097,151)."""
        return self._counter(0x01, i)

    def _counter(self, mode, i):
        if i not in (0, 1):
            raise ValueError("counter must be 0 or 1, got %r" % (i,))
        v = self._run("Counter", _OP_COUNTER, mode, i, b"", _MAX_COUNTER, 4)
        return v[0] | (v[1] << 8) | (v[2] << 16) | (v[3] << 24)


# Datasheet, Counter command: a counter counts up to 2,097,151 (2^21 - 1) and refuses
# to go further.
COUNTER_LIMIT = const(2097151)


class ChipCounter:
    """A chip's monotonic counter as state.SeqState binds its sequence lease to it:
    read(), increment() -> int, limit. Here rather than in state.py, so a device whose
    key is in a file never holds it.

    chip: anything with counter_read(i) and counter_increment(i) (ATECC608).
    """

    def __init__(self, chip, index):
        self.chip = chip
        self.index = index
        self.limit = COUNTER_LIMIT

    def read(self):
        return self.chip.counter_read(self.index)

    def increment(self):
        return self.chip.counter_increment(self.index)


def _slot(slot):
    if not 0 <= slot <= 15:
        raise ValueError("slot must be 0..15, got %r" % (slot,))
    return slot


def _hex(b):
    return " ".join("%02x" % x for x in b)
