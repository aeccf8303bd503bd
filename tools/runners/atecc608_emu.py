"""An emulated Microchip ATECC608 (A or B) at the I2C transaction level.

For tests, the virtual fleet (`signet simulate --hardware`) and `signet bench sign`: it
answers machine.I2C's writeto / readfrom_into / readfrom the way the chip does on the bus,
so the real driver (firmware/lib/signet/atecc608.py) runs against it unchanged, under
CPython and, through host_tests/firmware/fwtests/i2c_bridge.py, under MicroPython.

Written from the datasheet (ATECC608A DS40001977, ATECC608B DS20006561) INDEPENDENTLY of
the driver: it imports nothing from it and computes its CRC another way, so a shared
misreading of the datasheet is the only way both can be wrong together.

What is modelled (datasheet section in brackets):
- power states [I2C Interface, Sleep/Idle]: asleep after power-up; any transfer to address
  0x00 whose low pulse lasts tWLO (60 us; 8 zero bits at <= 133 kHz) wakes it; it NACKs
  until tWHI (1.5 ms) has passed, then its I/O buffer holds 04 11 33 43; the watchdog puts
  it to sleep tWATCHDOG (1.3 s) after the wake, idle stops the watchdog and keeps TempKey,
  sleep (and the watchdog) clears TempKey.
- word-address byte 0x00 reset (rewind the I/O buffer), 0x01 sleep, 0x02 idle, 0x03 command.
- command packets [Command Packets]: count, opcode, param1, param2 (LE), data, CRC-16;
  a wrong count or CRC answers status 0xFF; an unknown opcode, mode or length 0x03.
- execution times [Command Execution Times]: the chip NACKs its address until the
  command's time (the datasheet maximum at clock divider 0x00) has passed on the clock;
  `chip_time_us` adds up the execution time simulated. A command that cannot finish before
  the watchdog answers 0xEE. Every transfer also costs its bus time at `bus_hz`.
- Info (revision), Read (config zone 4/32 bytes, data slots subject to lock and IsSecret),
  GenKey (mode 0x04 new private key, 0x00 public key), Nonce (pass-through, mode 0x03),
  Sign (external, mode 0x80), Random (fixed pattern until the config is locked), Counter
  (read / increment, limit 2,097,151), Lock (config / data zone, without CRC summary).
- slot rules [SlotConfig, KeyConfig, WriteConfig tables]: GenKey mode 0x04 after the data
  lock only if WriteConfig bit 1 (SlotConfig bit 13) allows it; Sign external only if the
  slot is a P-256 private key slot with ReadKey bit 0 set, TempKey valid, both zones locked;
  Read of a secret or private slot refused (0x0F).
- signatures: ECDSA P-256 with a random k, as the chip (not RFC 6979; about half the s
  values are > n/2, which the device's signer must normalise).

Faults: `missing` (every transfer NACKs), `corrupt_reads` (the next N reads of a command's
response get a bit of its last data byte flipped on the wire, so its CRC fails; -1 = all),
`busy_extra_ms` (execution takes that much longer), `high_s` (always answer the high-S twin
of the signature), `fail_next` (the next command answers that status code: ECC fault,
self-test error, ...).
Use a virtual clock (the default) and give the driver `sleep_us=chip.sleep_us`: then no
test waits for real time.
"""

from __future__ import annotations

import datetime as dt
import errno
import secrets
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
)

When = dt.datetime | None  # a certificate validity bound; None: now - 1 h / now + 10 years

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
COUNTER_MAX = 2_097_151
T_WLO_US = 60
T_WHI_US = 1_500
T_WATCHDOG_US = 1_300_000

# Maximum execution time (ms), datasheet "Command Execution Times", clock divider 0x00.
EXEC_MS = {
    "Info": 5,
    "Read": 5,
    "Nonce": 20,
    "Random": 23,
    "Counter": 25,
    "Lock": 35,
    "GenKey": 115,
    "Sign": 115,
}
# GenKey and Sign run on the divided clock set by ChipMode bits 3..7 (config byte 19):
# their maxima at the dividers the datasheet defines (0x0 default, 0x5, 0xD).
ECC_MS_BY_DIVIDER = {0x0: (115, 115), 0x5: (215, 220), 0xD: (630, 665)}  # (GenKey, Sign)
_OPCODES = {
    0x30: "Info",
    0x02: "Read",
    0x16: "Nonce",
    0x1B: "Random",
    0x24: "Counter",
    0x17: "Lock",
    0x40: "GenKey",
    0x41: "Sign",
}
_PARSE_US = 100  # a refused packet answers quickly

OK, MISCOMPARE, PARSE, ECC_FAULT, EXEC_ERROR, AFTER_WAKE, WATCHDOG, COMM = (
    0x00,
    0x01,
    0x03,
    0x05,
    0x0F,
    0x11,
    0xEE,
    0xFF,
)

# Revision (Info mode 0): byte 2 = 0x60 names the ATECC608; byte 3 the silicon revision.
REVISIONS = {"ATECC608A": b"\x00\x00\x60\x02", "ATECC608B": b"\x00\x00\x60\x03"}

# Slot 0 as Microchip's Trust&GO (ATECC608B-TNGTLS) ships it: SlotConfig 0x0085 (IsSecret,
# ReadKey 0101 = external sign + ECDH, WriteConfig 0: no GenKey, no PrivWrite after the
# lock) and KeyConfig 0x0053 (Private, PubInfo, KeyType P-256, ReqRandom).
TNG_SLOT0_CONFIG = 0x0085
TNG_SLOT0_KEY_CONFIG = 0x0053
# A provisioning-friendly private key slot: as above, with WriteConfig bit 1 (GenKey
# allowed after the data lock) so a new key can be generated in the field (rotation).
GENKEY_SLOT_CONFIG = 0x2085


def _crc_table() -> list[int]:
    # MSB-first CRC-16/0x8005 table; the chip feeds each byte LSB first, so input bytes are
    # bit-reversed before the table lookup (the driver does the same bit by bit).
    table = []
    for byte in range(256):
        reg = byte << 8
        for _ in range(8):
            reg = ((reg << 1) ^ 0x8005) if reg & 0x8000 else (reg << 1)
        table.append(reg & 0xFFFF)
    return table


_TABLE = _crc_table()
_REVERSED = [int(f"{b:08b}"[::-1], 2) for b in range(256)]


def chip_crc(data: bytes) -> bytes:
    """CRC-16 as the chip sends it: two bytes, low byte first."""
    reg = 0
    for b in data:
        reg = ((reg << 8) & 0xFFFF) ^ _TABLE[((reg >> 8) ^ _REVERSED[b]) & 0xFF]
    return reg.to_bytes(2, "little")


def _packet(data: bytes) -> bytes:
    body = bytes([len(data) + 3]) + data
    return body + chip_crc(body)


class VirtualClock:
    """Microseconds that pass only when told: sleep_us() and the bus time of transfers."""

    def __init__(self) -> None:
        self.now_us = 0

    def advance(self, us: int) -> None:
        self.now_us += int(us)


class RealClock:
    """Wall time, for running against a driver that sleeps for real."""

    @property
    def now_us(self) -> int:
        return time.monotonic_ns() // 1000

    def advance(self, us: int) -> None:
        time.sleep(us / 1e6)


def _nack() -> OSError:
    # What machine.I2C raises for an address NACK (MicroPython uses ENODEV).
    return OSError(errno.ENODEV, "I2C address not acknowledged")


class EmulatedATECC608:
    def __init__(
        self,
        address: int = 0x60,
        chip: str = "ATECC608B",
        serial: bytes | None = None,
        clock: VirtualClock | RealClock | None = None,
        bus_hz: int = 100_000,
    ) -> None:
        if chip not in REVISIONS:
            raise ValueError(f"chip must be one of {sorted(REVISIONS)}")
        self.address = address
        self.chip = chip
        self.clock = clock or VirtualClock()
        self.bus_hz = bus_hz
        sn = serial or (b"\x01\x23" + secrets.token_bytes(6) + b"\xee")
        if len(sn) != 9:
            raise ValueError("serial must be 9 bytes")
        self.config = bytearray(128)
        self._blank_config(sn)
        self.keys: dict[int, ec.EllipticCurvePrivateKey] = {}
        self.slot_data: dict[int, bytes] = {}
        self.counters = [0, 0]
        # volatile state
        self.state = "sleep"  # sleep | idle | awake
        self.woke_at = 0
        self.tempkey: bytes | None = None
        self.io = b""
        self.io_is_response = False
        self.io_ptr = 0
        self.busy_until = 0
        # accounting and faults
        self.chip_time_us = 0
        self.bus_time_us = 0
        self.transfers = 0
        self.commands: list[str] = []
        self.missing = False
        self.corrupt_reads = 0
        self.busy_extra_ms = 0
        self.high_s = False
        self.fail_next: int | None = None

    # -- configuration zone -------------------------------------------------

    def _blank_config(self, sn: bytes) -> None:
        c = self.config
        c[0:4] = sn[0:4]
        c[4:8] = REVISIONS[self.chip]
        c[8:13] = sn[4:9]
        c[14] = 0x01  # I2C_Enable
        c[16] = self.address << 1  # I2C_Address, 8-bit form
        for slot in range(16):
            self._set_u16(20 + 2 * slot, 0x0000)
            self._set_u16(96 + 2 * slot, 0x0000)
        c[86] = 0x55  # LockValue: data zone unlocked
        c[87] = 0x55  # LockConfig: config zone unlocked
        c[88:90] = b"\xff\xff"  # SlotLocked: no slot individually locked

    def _u16(self, offset: int) -> int:
        return self.config[offset] | self.config[offset + 1] << 8

    def _set_u16(self, offset: int, value: int) -> None:
        self.config[offset : offset + 2] = value.to_bytes(2, "little")

    def slot_config(self, slot: int) -> int:
        return self._u16(20 + 2 * slot)

    def key_config(self, slot: int) -> int:
        return self._u16(96 + 2 * slot)

    def set_slot(self, slot: int, slot_config: int, key_config: int) -> None:
        """Write a slot's SlotConfig and KeyConfig (as the Write command would before the lock)."""
        if self.config_locked:
            raise RuntimeError("the configuration zone is locked")
        self._set_u16(20 + 2 * slot, slot_config)
        self._set_u16(96 + 2 * slot, key_config)

    @property
    def config_locked(self) -> bool:
        return self.config[87] == 0x00

    @property
    def data_locked(self) -> bool:
        return self.config[86] == 0x00

    @property
    def serial(self) -> bytes:
        return bytes(self.config[0:4] + self.config[8:13])

    def lock_config(self) -> None:
        self.config[87] = 0x00

    def lock_data(self) -> None:
        if not self.config_locked:
            raise RuntimeError("lock the configuration zone first")
        self.config[86] = 0x00

    def public_key_bytes(self, slot: int) -> bytes:
        """X || Y of the key in a slot (what GenKey returns)."""
        pub = self.keys[slot].public_key().public_numbers()
        return pub.x.to_bytes(32, "big") + pub.y.to_bytes(32, "big")

    def public_key(self, slot: int) -> ec.EllipticCurvePublicKey:
        return self.keys[slot].public_key()

    # -- the bus ------------------------------------------------------------

    def sleep_us(self, us: int) -> None:
        """The driver's sleep: lets time pass on the chip's clock."""
        self.clock.advance(us)

    def _bus(self, nbytes: int) -> None:
        # START + address byte + data bytes, 9 clocks each (8 bits + ACK).
        us = (nbytes + 1) * 9 * 1_000_000 // self.bus_hz
        self.bus_time_us += us
        self.transfers += 1
        if isinstance(self.clock, VirtualClock):
            self.clock.advance(us)

    def _tick(self) -> None:
        now = self.clock.now_us
        if self.state == "awake" and now - self.woke_at >= T_WATCHDOG_US:
            self._to_sleep()  # the watchdog fired

    def _to_sleep(self) -> None:
        self.state = "sleep"
        self.tempkey = None
        self.io = b""

    def _wake_pulse(self) -> None:
        low_us = 8 * 1_000_000 / self.bus_hz  # address 0x00 + W: eight bits low
        if self.state == "awake" or low_us < T_WLO_US:
            return
        self.state = "awake"
        self.woke_at = self.clock.now_us
        self.io = _packet(bytes([AFTER_WAKE]))
        self.io_is_response = False
        self.io_ptr = 0

    def _ready(self, addr: int) -> None:
        """Raise the NACK the chip gives unless it would ACK its address now."""
        self._tick()
        now = self.clock.now_us
        if self.missing or addr != self.address or self.state != "awake":
            raise _nack()
        if now < self.woke_at + T_WHI_US or now < self.busy_until:
            raise _nack()

    def writeto(self, addr: int, buf: bytes, stop: bool = True) -> int:
        buf = bytes(buf)
        self._bus(len(buf))
        self._tick()
        if addr == 0 and not self.missing:
            self._wake_pulse()
            raise _nack()  # nobody answers address 0
        self._ready(addr)
        if not buf:
            return 1
        word = buf[0]
        if word == 0x00:
            self.io_ptr = 0
        elif word == 0x01:
            self._to_sleep()
        elif word == 0x02:
            self.state = "idle"
        elif word == 0x03:
            self._command(buf[1:])
        else:
            raise OSError(errno.EIO, "reserved word address")
        return len(buf) + 1

    def readfrom_into(self, addr: int, buf: bytearray | memoryview, stop: bool = True) -> None:
        self._bus(len(buf))
        self._ready(addr)
        end = self.io_ptr + len(buf)
        out = bytearray(self.io[self.io_ptr : end].ljust(len(buf), b"\xff"))
        last_data = len(self.io) - 3  # the byte before the CRC
        if self.corrupt_reads and self.io_is_response and self.io_ptr <= last_data < end:
            out[last_data - self.io_ptr] ^= 0x01  # a bit flipped on the wire
            if self.corrupt_reads > 0:
                self.corrupt_reads -= 1
        self.io_ptr = end
        buf[:] = out

    def readfrom(self, addr: int, n: int, stop: bool = True) -> bytes:
        out = bytearray(n)
        self.readfrom_into(addr, out)
        return bytes(out)

    # -- commands -----------------------------------------------------------

    def _command(self, packet: bytes) -> None:
        now = self.clock.now_us
        if len(packet) < 7 or packet[0] != len(packet) or chip_crc(packet[:-2]) != packet[-2:]:
            return self._answer(bytes([COMM]), _PARSE_US)
        opcode, p1 = packet[1], packet[2]
        p2 = packet[3] | packet[4] << 8
        data = packet[5:-2]
        name = _OPCODES.get(opcode)
        if name is None:
            return self._answer(bytes([PARSE]), _PARSE_US)
        exec_us = self._exec_ms(name) * 1000
        if now - self.woke_at + exec_us > T_WATCHDOG_US:
            return self._answer(bytes([WATCHDOG]), _PARSE_US)
        self.commands.append(name)
        if self.fail_next is not None:  # fault: this command answers that status
            result, self.fail_next = self.fail_next, None
        else:
            result = getattr(self, "_cmd_" + name.lower())(p1, p2, data)
        if isinstance(result, int):
            result = bytes([result])
        self._answer(result, exec_us + self.busy_extra_ms * 1000)
        self.chip_time_us += exec_us

    def _exec_ms(self, name: str) -> int:
        if name in ("GenKey", "Sign"):
            genkey, sign = ECC_MS_BY_DIVIDER.get(self.config[19] >> 3, ECC_MS_BY_DIVIDER[0xD])
            return genkey if name == "GenKey" else sign
        return EXEC_MS[name]

    def _answer(self, data: bytes, exec_us: int) -> None:
        self.io = _packet(data)
        self.io_is_response = True
        self.io_ptr = 0
        self.busy_until = self.clock.now_us + exec_us

    def _cmd_info(self, p1: int, p2: int, data: bytes) -> bytes | int:
        if p1 != 0x00 or p2 != 0 or data:
            return PARSE  # only the revision mode is modelled
        return REVISIONS[self.chip]

    def _cmd_read(self, p1: int, p2: int, data: bytes) -> bytes | int:
        zone, size = p1 & 0x03, 32 if p1 & 0x80 else 4
        if data or p1 & 0x7C or zone == 3:
            return PARSE
        if zone == 0:  # config zone: always readable
            block, word = (p2 >> 3) & 0x3, p2 & 0x7
            if p2 & ~0x1F or (size == 32 and word):
                return PARSE
            start = block * 32 + word * 4
            return bytes(self.config[start : start + size])
        if zone == 1:  # OTP: erased (zeros) in these emulated parts
            if not self.data_locked:
                return EXEC_ERROR
            return bytes(size)
        slot = (p2 >> 3) & 0xF
        if not self.data_locked:
            return EXEC_ERROR  # the data zone is readable only after its lock
        sc, kc = self.slot_config(slot), self.key_config(slot)
        if sc & 0x80 or kc & 0x01:
            return EXEC_ERROR  # IsSecret or a private key: never read out
        block = p2 >> 8
        stored = self.slot_data.get(slot, b"")
        start = block * 32 + (p2 & 0x7) * 4
        return stored[start : start + size].ljust(size, b"\x00")

    def _p256_private_slot(self, slot: int) -> bool:
        kc = self.key_config(slot)
        return bool(kc & 0x01) and (kc >> 2) & 0x7 == 0b100

    def _cmd_genkey(self, p1: int, p2: int, data: bytes) -> bytes | int:
        slot = p2
        if data or slot > 15 or p1 not in (0x00, 0x04):
            return PARSE
        if not self.config_locked or not self._p256_private_slot(slot):
            return EXEC_ERROR
        if p1 == 0x04:
            slot_unlocked = self.config[88 + slot // 8] >> (slot % 8) & 1
            if self.data_locked and not (self.slot_config(slot) >> 13 & 1 and slot_unlocked):
                return EXEC_ERROR  # WriteConfig bit 1 clear: the key is permanent
            self.keys[slot] = ec.generate_private_key(ec.SECP256R1())
        else:
            pub_info = self.key_config(slot) >> 1 & 1
            if slot not in self.keys or (self.data_locked and not pub_info):
                return EXEC_ERROR
        return self.public_key_bytes(slot)

    def _cmd_nonce(self, p1: int, p2: int, data: bytes) -> bytes | int:
        if p1 != 0x03 or p2 != 0 or len(data) != 32:
            return PARSE  # random-nonce modes and other targets are not modelled
        self.tempkey = bytes(data)
        return OK

    def _cmd_sign(self, p1: int, p2: int, data: bytes) -> bytes | int:
        slot = p2
        if data or p1 != 0x80 or slot > 15:
            return PARSE  # internal-message signing is not modelled
        if not (self.config_locked and self.data_locked):
            return EXEC_ERROR
        if not self._p256_private_slot(slot) or not self.slot_config(slot) & 0x01:
            return EXEC_ERROR  # ReadKey bit 0 clear: external messages may not be signed
        if self.tempkey is None or slot not in self.keys:
            return EXEC_ERROR
        digest, self.tempkey = self.tempkey, None
        der = self.keys[slot].sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        if self.high_s and s <= P256_N // 2:
            s = P256_N - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def _cmd_random(self, p1: int, p2: int, data: bytes) -> bytes | int:
        if p1 != 0x00 or p2 != 0 or data:
            return PARSE
        if not self.config_locked:
            return b"\xff\xff\x00\x00" * 8  # the datasheet's fixed pattern before the lock
        return secrets.token_bytes(32)

    def _cmd_counter(self, p1: int, p2: int, data: bytes) -> bytes | int:
        if data or p1 not in (0x00, 0x01) or p2 not in (0, 1):
            return PARSE
        if p1 == 0x01:
            if self.counters[p2] >= COUNTER_MAX:
                return EXEC_ERROR
            self.counters[p2] += 1
        return self.counters[p2].to_bytes(4, "little")

    def _cmd_lock(self, p1: int, p2: int, data: bytes) -> bytes | int:
        # Mode bit 7: no CRC summary check (the only form modelled); bits 0..1: zone.
        if data or p1 not in (0x80, 0x81):
            return PARSE
        if p1 == 0x80:
            if self.config_locked:
                return EXEC_ERROR
            self.lock_config()
        else:
            if self.data_locked or not self.config_locked:
                return EXEC_ERROR
            self.lock_data()
        return OK


# -- factories ------------------------------------------------------------------------


@dataclass
class TestPKI:
    """A root CA and a signer CA (ECDSA P-256), shaped like Microchip's Trust&GO chain."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey
    signer: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Signet test PKI"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, cn),
        ]
    )


def _validity(
    builder: x509.CertificateBuilder, not_before: When, not_after: When
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return builder.not_valid_before(not_before or now - dt.timedelta(hours=1)).not_valid_after(
        not_after or now + dt.timedelta(days=3650)
    )


def _ca(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_len: int,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return _validity(builder, None, None).sign(issuer_key, hashes.SHA256())


def make_test_pki(name: str = "Signet test SE") -> TestPKI:
    """A fresh root and signer CA; share one among a fleet's chips."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{name} Root CA")
    root = _ca(root_name, root_key, root_name, root_key, 1)
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _ca(_name(f"{name} Signer"), signer_key, root_name, root_key, 0)
    return TestPKI(root_key, root, signer_key, signer)


def device_certificate(
    pki: TestPKI,
    public_key: ec.EllipticCurvePublicKey,
    serial: bytes,
    not_before: When = None,
    not_after: When = None,
) -> x509.Certificate:
    """The device certificate Trust&GO parts carry: CN 'sn' + the chip serial in hex."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("sn" + serial.hex().upper()))
        .issuer_name(pki.signer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.signer_key.public_key()),
            critical=False,
        )
    )
    builder = _validity(builder, not_before, not_after)
    return builder.sign(pki.signer_key, hashes.SHA256())


@dataclass
class ProvisionedChip:
    """A Trust&GO-shaped chip and its certificate chain (device first, then signer, root)."""

    chip: EmulatedATECC608
    slot: int
    device_cert: x509.Certificate
    pki: TestPKI
    chain: list[x509.Certificate] = field(default_factory=list)

    def chain_der(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in self.chain]

    def root_pem(self) -> bytes:
        return self.pki.root.public_bytes(serialization.Encoding.PEM)


def trust_and_go(
    pki: TestPKI | None = None,
    address: int = 0x35,
    chip: str = "ATECC608B",
    clock: VirtualClock | RealClock | None = None,
    slot: int = 0,
    slot_config: int = TNG_SLOT0_CONFIG,
    key_config: int = TNG_SLOT0_KEY_CONFIG,
    lock: bool = True,
    not_before: When = None,
    not_after: When = None,
    clock_divider: int = 0,
) -> ProvisionedChip:
    """A chip as Microchip ships ATECC608B-TNGTLS: config and data locked, a P-256 key born
    in `slot`, a device certificate <- signer <- root (pki: pass one to share a root among a
    fleet). slot_config / key_config / lock=False make wrongly provisioned chips for tests;
    clock_divider (ChipMode bits 3..7) a chip that signs more slowly."""
    pki = pki or make_test_pki()
    emu = EmulatedATECC608(address=address, chip=chip, clock=clock)
    emu.config[19] = (emu.config[19] & 0x07) | clock_divider << 3
    emu.set_slot(slot, slot_config, key_config)
    emu.keys[slot] = ec.generate_private_key(ec.SECP256R1())  # born at the factory
    if lock:
        emu.lock_config()
        emu.lock_data()
    cert = device_certificate(pki, emu.public_key(slot), emu.serial, not_before, not_after)
    return ProvisionedChip(emu, slot, cert, pki, [cert, pki.signer, pki.root])


def blank_chip(
    address: int = 0x60,
    chip: str = "ATECC608A",
    clock: VirtualClock | RealClock | None = None,
    slots: dict[int, tuple[int, int]] | None = None,
) -> EmulatedATECC608:
    """A chip as it leaves the reel before provisioning: both zones unlocked. slots: the
    (SlotConfig, KeyConfig) to write, default slot 0 a P-256 private key GenKey may replace."""
    emu = EmulatedATECC608(address=address, chip=chip, clock=clock)
    for slot, (sc, kc) in (slots or {0: (GENKEY_SLOT_CONFIG, TNG_SLOT0_KEY_CONFIG)}).items():
        emu.set_slot(slot, sc, kc)
    return emu
