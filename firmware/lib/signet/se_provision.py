# Provisioning a key in an ATECC608: the chip-side steps, the same on a board
# (`signet device provision --se`, run there over mpremote) and on a Pi
# (`signet agent provision --backend atecc608`). Never loaded by the agent.
#
# 1. read the chip's serial and config zone;
# 2. the slot's key: kept (a Trust&GO part ships one, born at the factory), or
#    made by GenKey inside the chip (a chip the maker configured and locked);
# 3. the self-test the agent runs at every boot: a chip that fails it (unlocked,
#    wrong slot rules) is refused here, with its reason;
# 4. with the gateway's challenge: the "enroll" statement signed by the chip
#    (statement.py), the proof that the key answers from inside this chip;
# 5. the binding file (binding.py), written atomically.
# The private key never leaves the chip: only public facts come back.

import binascii
import os

from . import binding, statement
from .atecc608 import ATECCError
from .se_signer import SecureElementSigner, SelfTestError, compress, config_problem, self_test


def chip_name(config):
    # RevNum, config bytes 4..7 (datasheet, configuration zone): 00 00 60 02 is
    # an ATECC608A, 00 00 60 03 (and later) an ATECC608B.
    return "ATECC608B" if config[7] >= 0x03 else "ATECC608A"


def provision(chip, slot, binding_path, challenge=None, generate="never"):
    """The chip's public facts as a dict of hex strings (+ "state" new/kept).

    generate: "never" (use the slot's key), "if_empty" (GenKey when the slot has
    none), "always" (GenKey: a NEW key, a new device identity).
    Raises se_signer.SelfTestError (the chip is refused) or ATECCError.
    """
    serial = chip.serial()
    config = chip.read_config()
    # The self-test's config rules first: no key is made in (or read from) a chip
    # that would be refused anyway, and the refusal names the rule.
    problem = config_problem(config, slot)
    if problem:
        raise SelfTestError(problem[0], "ATECC608 at 0x%02x: %s" % (chip.address, problem[1]))
    state = "kept"
    xy = None
    if generate != "always":
        try:
            xy = chip.public_key(slot)
        except ATECCError:
            if generate == "never":
                raise
    if xy is None:
        xy = chip.genkey(slot)
        state = "new"
    public_key = compress(xy)
    self_test(chip, slot, public_key)
    proof = None
    if challenge is not None:
        signer = SecureElementSigner(chip, slot, public_key)
        proof = statement.enroll(signer, challenge, serial, config)
    tmp = binding_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(binding.dumps(chip_name(config), serial, slot, public_key))
    os.rename(tmp, binding_path)

    def h(b):
        return binascii.hexlify(b).decode()

    return {
        "state": state,
        "chip": chip_name(config),
        "slot": slot,
        "serial": h(serial),
        "config": h(config),
        "public_key": h(public_key),
        "proof": h(proof) if proof is not None else None,
    }
