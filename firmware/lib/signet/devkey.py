# The device key the config names, opened at start: a key file (software tier), or
# a key in an ATECC608 after the chip's self-test, with the software fallback the
# config allows. Shared by main.py (a board) and tools/pi/keys.py (a Pi, which adds
# the TPM). Everything is imported when the config asks for it: a board whose key
# is in the chip never loads the software ECDSA (ecdsa, rfc6979, the comb table),
# and one with a key file never loads the chip driver. Dropped after boot.

# The evt the agent signs when the self-test fails (docs/TRUST.md): its msg is the
# failure's code and sentence, cut to a record's 64 bytes.
SELFTEST_EVENT = "key_selftest_failed"
# Failures after which the chip still holds the enrolled key and signs with it, so
# the agent can at least sign that event before it stops.
_STILL_SIGNS = ("config_unlocked", "data_unlocked", "slot_config")


class Opened:
    """signer, counter (the chip's, for the sequence lease, or None), tier, and the
    self-test failure (an exception with .code, or None).

    tier "hardware" with a failure: the chip failed and there is no fallback; the agent
    must not run (signer is the chip's if it can still sign that one event, else None).
    tier "software" with a failure: the fallback key signs instead of the chip.
    """

    def __init__(self, signer, counter=None, tier="software", selftest_error=None):
        self.signer = signer
        self.counter = counter
        self.tier = tier
        self.selftest_error = selftest_error

    @property
    def refused(self):
        return self.selftest_error is not None and self.tier == "hardware"

    def event_message(self):
        e = self.selftest_error
        return ("%s: %s" % (getattr(e, "code", "chip_error"), e))[:64]


def open_file(path):
    from .keyfile import load

    return load(path)


def open_atecc608(key, i2c, open_fallback=open_file):
    """Opened for key.type "atecc608"; i2c: a machine.I2C-like bus.

    Raises OSError or binding.BindingError when the binding file is unusable (a
    set-up error, not a chip failure) and whatever open_fallback raises.
    """
    from . import binding
    from .atecc608 import ATECC608, ATECCError
    from .se_signer import SecureElementSigner, SelfTestError, self_test

    bound = binding.load(key["path"])
    slot = key["slot"]
    if bound["slot"] != slot:
        raise binding.BindingError(
            "the binding file names slot %d, the config key.slot %d" % (bound["slot"], slot)
        )
    expected = bound["public_key"]
    # A bus that keeps its chip's time (the emulator in tests and the virtual fleet)
    # says how to wait; machine.I2C and the Pi's bus have no sleep_us: real time.
    chip = ATECC608(i2c, key["address"], getattr(i2c, "sleep_us", None))
    try:
        self_test(chip, slot, expected)
        signer = SecureElementSigner(chip, slot, expected)
    except (SelfTestError, ATECCError) as e:
        if key["fallback_path"] is not None:
            return Opened(open_fallback(key["fallback_path"]), None, "software", e)
        signer = None
        if getattr(e, "code", None) in _STILL_SIGNS:
            try:
                signer = SecureElementSigner(chip, slot, expected)
            except Exception:  # it cannot sign either: nothing to sign with
                signer = None
        return Opened(signer, None, "hardware", e)
    counter = None
    if key["counter"] is not None:
        from .atecc608 import ChipCounter

        counter = ChipCounter(chip, key["counter"])
    return Opened(signer, counter, "hardware")
