"""The secure-element signer and the emulated ATECC608, CPython only: signatures checked by
`cryptography` and by the gateway's verifier, the emulator's own datasheet rules at the
packet level, every status code's sentence, the Trust&GO-shaped certificate chain."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from kit.atecc608_emu import (
    COUNTER_MAX,
    P256_N,
    EmulatedATECC608,
    VirtualClock,
    blank_chip,
    chip_crc,
    make_test_pki,
    trust_and_go,
)
from signet.atecc608 import ATECC608, ATECCError
from signet.builder import RecordBuilder
from signet.se_signer import SecureElementSigner
from signet_gateway.verify.pubkeys import DevicePublicKey, check_signature
from signet_gateway.verify.verifier import Verifier


def _driver(emu: EmulatedATECC608) -> ATECC608:
    return ATECC608(emu, emu.address, sleep_us=emu.sleep_us)


def test_a_chip_key_device_loads_no_software_curve_code() -> None:
    code = (
        "import sys, signet.se_signer, signet.atecc608\n"
        "print(sorted(m for m in sys.modules if m in "
        "('signet.ec', 'signet.ecdsa', 'signet.rfc6979')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_records_signed_in_the_chip_pass_the_gateway_verifier() -> None:
    emu = trust_and_go().chip
    emu.high_s = True  # every raw chip signature high-S: the signer must normalise
    signer = SecureElementSigner(_driver(emu), 0)
    key = DevicePublicKey.from_sec1(signer.public_key, "p256")
    assert key.kid == signer.kid
    verifier = Verifier({key.kid: key})
    builder = RecordBuilder(signer)
    prev = bytes(32)
    for n in range(1, 4):
        _, raw = builder.build(
            "rev", n, 1, n, 1767225600000 + n, prev, {"am": 250, "cur": "EUR", "src": "pulse"}
        )
        record = verifier.verify(bytes(raw))
        assert record.payload["n"] == n
        assert int.from_bytes(record.signature[32:], "big") <= P256_N // 2
        prev = record.payload_hash


def test_signatures_verify_with_cryptography_and_are_low_s() -> None:
    emu = trust_and_go().chip
    drv = _driver(emu)
    signer = SecureElementSigner(drv, 0)
    raw_high = 0
    for i in range(24):
        digest = bytes([i]) * 32
        drv.nonce_passthrough(digest)
        raw = drv.sign_external(0)  # the chip's own output: random k, either half of s
        raw_high += int.from_bytes(raw[32:], "big") > P256_N // 2
        sig = signer.sign_digest(digest)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        assert s <= P256_N // 2
        emu.public_key(0).verify(
            encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256()))
        )
    assert raw_high > 0  # 24 random s all low: odds 2^-24


def test_gateway_check_signature_accepts_the_signers_output() -> None:
    import hashlib

    emu = trust_and_go().chip
    signer = SecureElementSigner(_driver(emu), 0)
    key = DevicePublicKey.from_sec1(signer.public_key, "p256")
    message = b"a statement"
    check_signature(key, message, signer.sign_digest(hashlib.sha256(message).digest()))


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (0x01, "miscompare"),
        (0x03, "parse error (status 0x03)"),
        (0x05, "ECC fault (status 0x05)"),
        (0x07, "self-test error (status 0x07)"),
        (0x08, "health test error (status 0x08)"),
        (0x0F, "execution error (status 0x0f)"),
        (0x11, "slept and woke"),
        (0x42, "unknown status 0x42"),
    ],
)
def test_every_status_code_is_one_sentence_naming_the_chip(status: int, words: str) -> None:
    emu = trust_and_go(address=0x60).chip
    emu.fail_next = status
    with pytest.raises(ATECCError) as caught:
        _driver(emu).counter_read(0)
    assert str(caught.value).startswith("ATECC608 at 0x60: Counter: ")
    assert words in str(caught.value)
    assert caught.value.status == status


def test_communication_error_is_resent_then_reported() -> None:
    emu = trust_and_go().chip
    drv = _driver(emu)
    emu.fail_next = 0xFF  # the chip saw a bad CRC once: the driver sends again
    assert drv.counter_read(0) == 0
    assert emu.commands[-2:] == ["Counter", "Counter"]


def test_watchdog_warning_makes_the_driver_wake_again() -> None:
    emu = trust_and_go().chip
    drv = _driver(emu)
    emu.fail_next = 0xEE
    assert drv.counter_increment(0) == 1  # idle + wake + resend; counted once


# -- the emulator's own rules, at the packet level ---------------------------------------


def _cmd(opcode: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
    body = bytes([7 + len(data), opcode, p1, p2 & 0xFF, p2 >> 8]) + data
    return b"\x03" + body + chip_crc(body)


def _awake(emu: EmulatedATECC608) -> None:
    with pytest.raises(OSError):
        emu.writeto(0, b"\x00")
    with pytest.raises(OSError):  # tWHI not over yet: NACK
        emu.readfrom(emu.address, 4)
    emu.sleep_us(1500)
    assert emu.readfrom(emu.address, 4) == b"\x04\x11\x33\x43"


def _answer(emu: EmulatedATECC608, packet: bytes) -> bytes:
    emu.writeto(emu.address, packet)
    for _ in range(200):
        try:
            count = emu.readfrom(emu.address, 1)[0]
            break
        except OSError:
            emu.sleep_us(1000)
    rest = emu.readfrom(emu.address, count - 1)
    assert chip_crc(bytes([count]) + rest[:-2]) == rest[-2:]
    return rest[:-2]


def test_asleep_chip_nacks_its_address_until_a_wake_pulse() -> None:
    emu = trust_and_go(address=0x60).chip
    with pytest.raises(OSError):
        emu.readfrom(0x60, 4)
    _awake(emu)


def test_a_wake_pulse_too_short_does_not_wake() -> None:
    emu = EmulatedATECC608(bus_hz=400_000)  # 8 bits at 400 kHz: 20 us < tWLO
    with pytest.raises(OSError):
        emu.writeto(0, b"\x00")
    emu.sleep_us(2000)
    with pytest.raises(OSError):
        emu.readfrom(0x60, 4)


def test_packet_framing_errors() -> None:
    emu = trust_and_go(address=0x60).chip
    _awake(emu)
    good = _cmd(0x30)
    assert _answer(emu, good[:-1] + bytes([good[-1] ^ 1])) == b"\xff"  # CRC
    assert _answer(emu, b"\x03\x08" + good[2:]) == b"\xff"  # count says 8, 7 sent
    assert _answer(emu, _cmd(0x77)) == b"\x03"  # an opcode not modelled: parse error
    assert _answer(emu, _cmd(0x16, 0x03, 0, bytes(20))) == b"\x03"  # Nonce of 20 bytes
    assert _answer(emu, _cmd(0x30)) == emu.config[4:8]  # Info: the revision


def test_execution_time_nacks_reads_and_is_counted() -> None:
    emu = trust_and_go(address=0x60).chip
    _awake(emu)
    before = emu.clock.now_us
    emu.writeto(0x60, _cmd(0x40, 0x00, 0))  # GenKey public: 115 ms max
    with pytest.raises(OSError):
        emu.readfrom(0x60, 1)
    emu.sleep_us(114_000)
    with pytest.raises(OSError):
        emu.readfrom(0x60, 1)
    emu.sleep_us(1_000)
    assert emu.readfrom(0x60, 1) == bytes([67])
    assert emu.chip_time_us == 115_000 and emu.clock.now_us - before >= 115_000


def test_command_too_close_to_the_watchdog_answers_ee() -> None:
    emu = trust_and_go(address=0x60).chip
    _awake(emu)
    emu.sleep_us(1_200_000)  # 1.2 s since wake + Sign's 115 ms > 1.3 s
    assert _answer(emu, _cmd(0x41, 0x80, 0)) == b"\xee"


def test_read_of_a_secret_slot_is_refused_public_slots_are_read() -> None:
    emu = trust_and_go(address=0x60).chip
    emu.slot_data[10] = bytes(range(72))
    _awake(emu)
    assert _answer(emu, _cmd(0x02, 0x02, 0 << 3)) == b"\x0f"  # slot 0: the private key
    assert _answer(emu, _cmd(0x02, 0x82, 10 << 3)) == bytes(range(32))  # slot 10, block 0


def test_counter_stops_at_its_limit() -> None:
    emu = trust_and_go(address=0x60).chip
    emu.counters[0] = COUNTER_MAX - 1
    drv = _driver(emu)
    assert drv.counter_increment(0) == COUNTER_MAX
    with pytest.raises(ATECCError, match="execution error"):
        drv.counter_increment(0)
    assert drv.counter_read(0) == COUNTER_MAX


def test_lock_command_and_genkey_on_a_blank_chip() -> None:
    emu = blank_chip(clock=VirtualClock())
    drv = _driver(emu)
    assert drv.lock_state() == (False, False)
    with pytest.raises(ATECCError, match="GenKey: execution error"):
        drv.genkey(0)  # config not locked yet
    _awake(emu)
    assert _answer(emu, _cmd(0x17, 0x81)) == b"\x0f"  # data before config: refused
    assert _answer(emu, _cmd(0x17, 0x80)) == b"\x00"
    emu.writeto(0x60, b"\x02")
    xy = drv.genkey(0)  # data zone unlocked: allowed
    assert drv.public_key(0) == xy
    with pytest.raises(ATECCError, match="Sign: execution error"):
        drv.nonce_passthrough(bytes(32))
        drv.sign_external(0)  # data zone not locked
    assert drv.lock_state() == (True, False)


def test_trust_and_go_chain_verifies_to_a_shared_root() -> None:
    pki = make_test_pki()
    chips = [trust_and_go(pki=pki) for _ in range(2)]
    for made in chips:
        device, signer, root = made.chain
        assert root == pki.root and signer == pki.signer
        device.verify_directly_issued_by(signer)
        signer.verify_directly_issued_by(root)
        root.verify_directly_issued_by(root)
        assert device.public_key() == made.chip.public_key(0)
        cn = device.subject.rfc4514_string()
        assert "sn" + made.chip.serial.hex().upper() in cn
        assert made.chip.config_locked and made.chip.data_locked
    assert chips[0].chip.serial != chips[1].chip.serial


class _NoisyWake:
    """The emulator's bus with a bit flipped in every wake response's CRC."""

    def __init__(self, emu: EmulatedATECC608) -> None:
        self.emu = emu

    def writeto(self, addr: int, buf: bytes) -> int:
        return self.emu.writeto(addr, buf)

    def readfrom_into(self, addr: int, buf: bytearray | memoryview) -> None:
        self.emu.readfrom_into(addr, buf)
        if len(buf) == 4 and buf[1] == 0x11:
            buf[3] ^= 0x01


def test_a_corrupted_wake_response_is_retried_then_reported() -> None:
    emu = trust_and_go(address=0x60).chip
    drv = ATECC608(_NoisyWake(emu), 0x60, sleep_us=emu.sleep_us)
    with pytest.raises(ATECCError) as caught:
        drv.info()
    assert str(caught.value) == (
        "ATECC608 at 0x60: wake response failed its CRC check 3 times (noise on the bus?)"
    )


def test_a_chip_left_awake_is_idled_and_woken_again() -> None:
    emu = trust_and_go(address=0x60).chip
    _awake(emu)
    _answer(emu, _cmd(0x30))  # awake, its I/O buffer holding an old response
    emu.io_ptr = 0
    assert _driver(emu).counter_read(1) == 0


def test_self_test_on_a_chip_with_only_its_config_locked_is_data_unlocked() -> None:
    from signet.se_signer import SelfTestError, compress, self_test

    emu = blank_chip(clock=VirtualClock())
    emu.lock_config()
    drv = _driver(emu)
    xy = drv.genkey(0)  # allowed before the data lock
    with pytest.raises(SelfTestError) as caught:
        self_test(drv, 0, compress(xy))
    assert caught.value.code == "data_unlocked"
    assert str(caught.value).startswith("ATECC608 at 0x60: data zone not locked (LockValue")
    emu.lock_data()
    self_test(drv, 0, compress(xy))  # GENKEY_SLOT_CONFIG: a slot a field rotation may re-key
