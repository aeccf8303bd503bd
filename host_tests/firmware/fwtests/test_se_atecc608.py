# The ATECC608 driver against the emulated chip, under CPython and MicroPython:
# every command Signet uses, and each fault giving its documented error.

from signet.atecc608 import ATECC608, ATECCError, crc16

try:
    from . import chipkit
    from .fwassert import raises
except ImportError:  # MicroPython runner: flat import path
    import chipkit
    from fwassert import raises

_TNG_SLOT0 = 0x0085  # Trust&GO slot 0: IsSecret, external sign, no GenKey/PrivWrite after lock


def _le(b):
    return b[0] | (b[1] << 8)


def test_crc16_known_packets():
    # The wake response and two command packets as the datasheet / every host library
    # sends them: Info (07 30 00 00 00 | 03 5d) and Random (07 1b 00 00 00 | 24 cd).
    assert crc16(b"\x04\x11", 0, 2) == 0x4333
    assert crc16(b"\x07\x30\x00\x00\x00", 0, 5) == 0x5D03
    assert crc16(b"\x07\x1b\x00\x00\x00", 0, 5) == 0xCD24


def test_info_reports_an_atecc608():
    drv, _, _ = chipkit.chip()
    rev = drv.info()
    assert len(rev) == 4 and rev[2] == 0x60


def test_config_zone_serial_and_lock_bytes():
    drv, _, facts = chipkit.chip()
    config = drv.read_config()
    assert config == chipkit.unhex(facts["config"])
    sn = drv.serial()
    assert sn == chipkit.unhex(facts["serial"]) and len(sn) == 9
    assert sn == config[0:4] + config[8:13] and sn[0:2] == b"\x01\x23"
    assert drv.lock_state() == (True, True)
    assert drv.slot_config(0) == _TNG_SLOT0 == _le(config[20:22])
    assert drv.key_config(0) == _le(config[96:98])
    assert drv.read_config_word(86) == config[84:88]


def test_unlocked_chip_reports_its_lock_state():
    drv, _, _ = chipkit.chip("blank", address=0x60)
    assert drv.lock_state() == (False, False)
    assert drv.random() == b"\xff\xff\x00\x00" * 8  # the datasheet's pattern before the lock


def test_public_key_of_the_slot_is_the_chips():
    drv, _, facts = chipkit.chip()
    assert drv.public_key(0) == chipkit.unhex(facts["public_key"])


def test_nonce_and_sign_external_verify():
    drv, bus, _ = chipkit.chip()
    digest = bytes(range(32))
    drv.nonce_passthrough(digest)
    sig = drv.sign_external(0)
    assert len(sig) == 64
    assert bus.control("verify", slot=0, digest=chipkit.hexlify(digest), sig=chipkit.hexlify(sig))


def test_sign_without_nonce_is_an_execution_error():
    drv, _, _ = chipkit.chip()
    drv.nonce_passthrough(bytes(32))
    drv.sign_external(0)  # consumes TempKey
    msg = raises(ATECCError, drv.sign_external, 0)
    assert msg.startswith("ATECC608 at 0x35: Sign: execution error (status 0x0f)"), msg


def test_a_chip_on_a_divided_clock_is_given_its_longer_sign_time():
    # ChipMode's clock divider 0xD: Sign takes up to 665 ms instead of 115.
    drv, bus, _ = chipkit.chip(clock_divider=0x0D)
    digest = bytes(range(32))
    before = bus.control("facts")["chip_time_us"]
    drv.nonce_passthrough(digest)
    sig = drv.sign_external(0)
    assert bus.control("facts")["chip_time_us"] - before >= 665000
    assert bus.control("verify", slot=0, digest=chipkit.hexlify(digest), sig=chipkit.hexlify(sig))


def test_sleep_loses_tempkey_idle_keeps_it():
    drv, _, _ = chipkit.chip()
    drv.nonce_passthrough(bytes(32))  # ends in idle: TempKey kept
    drv.sign_external(0)
    drv.nonce_passthrough(bytes(32))
    drv.sleep()
    assert raises(ATECCError, drv.sign_external, 0).find("status 0x0f") > 0


def test_watchdog_puts_the_chip_to_sleep():
    drv, bus, _ = chipkit.chip()
    drv.wake()
    drv.idle()
    drv.wake()  # awake: the watchdog runs
    bus.control("advance", us=1400000)  # > tWATCHDOG (1.3 s): asleep again
    drv.wake()  # a fresh wake works
    drv.idle()


def test_genkey_refused_on_a_locked_slot_and_allowed_where_configured():
    drv, _, _ = chipkit.chip()
    msg = raises(ATECCError, drv.genkey, 0)
    assert "GenKey: execution error (status 0x0f)" in msg, msg
    drv, _, _ = chipkit.chip(slot_config=0x2085)  # WriteConfig bit 1: GenKey allowed
    old = drv.public_key(0)
    new = drv.genkey(0)
    assert len(new) == 64 and new != old and drv.public_key(0) == new


def test_sign_refused_when_the_slot_forbids_external_messages():
    drv, _, _ = chipkit.chip(slot_config=0x0084)  # ReadKey bit 0 clear
    drv.nonce_passthrough(bytes(32))
    e = None
    try:
        drv.sign_external(0)
    except ATECCError as exc:
        e = exc
    assert e is not None and e.status == 0x0F and e.address == 0x35


def test_random_is_32_fresh_bytes():
    drv, _, _ = chipkit.chip()
    a, b = drv.random(), drv.random()
    assert len(a) == 32 and a != b


def test_counter_is_monotonic():
    drv, _, _ = chipkit.chip()
    assert drv.counter_read(1) == 0
    assert [drv.counter_increment(1) for _ in range(3)] == [1, 2, 3]
    assert drv.counter_read(1) == 3 and drv.counter_read(0) == 0
    assert raises(ValueError, drv.counter_read, 2)


def test_corrupted_crc_once_is_reread_always_is_an_error():
    drv, bus, facts = chipkit.chip()
    revision = chipkit.unhex(facts["config"])[4:8]
    bus.control("fault", corrupt_reads=2)  # a bit of the response flipped on the wire, twice
    assert drv.info() == revision  # read again after a rewind of the I/O buffer
    bus.control("fault", corrupt_reads=-1)
    msg = raises(ATECCError, drv.info)
    assert (
        msg == "ATECC608 at 0x35: Info: response failed its CRC check 3 times (noise on the bus?)"
    )


def test_missing_chip():
    drv, bus, _ = chipkit.chip()
    bus.control("fault", missing=True)
    msg = raises(ATECCError, drv.info)
    assert msg == "ATECC608 at 0x35: no response (not wired, wrong address, or no pull-ups?)"


def test_wrong_address_is_a_missing_chip():
    _, bus, _ = chipkit.chip()
    drv = ATECC608(bus, 0x60, sleep_us=bus.sleep_us)
    msg = raises(ATECCError, drv.serial)
    assert msg.startswith("ATECC608 at 0x60: no response"), msg


def test_busy_chip_within_the_margin_works_beyond_it_is_an_error():
    drv, bus, _ = chipkit.chip()
    bus.control("fault", busy_extra_ms=5)  # Sign's 115 ms max + 5: inside the 10 ms margin
    drv.nonce_passthrough(bytes(32))
    drv.sign_external(0)
    bus.control("fault", busy_extra_ms=40)
    msg = raises(ATECCError, drv.counter_read, 0)
    assert msg == (
        "ATECC608 at 0x35: Counter: still busy after 35 ms (the datasheet maximum is 25 ms)"
    ), msg


def test_bad_arguments_are_refused_before_the_bus():
    drv, _, _ = chipkit.chip()
    assert raises(ValueError, drv.nonce_passthrough, bytes(31))
    assert raises(ValueError, drv.public_key, 16)
