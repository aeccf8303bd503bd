# The binding file of a key held in an ATECC608, shared by the device and the host tools.
#
# Written at provisioning, read at every boot; one JSON object (docs/TRUST.md):
#   {"format": "signet-se/1", "chip": "ATECC608B", "serial": "<18 hex>", "slot": 0,
#    "curve": "p256", "public_key": "<66 hex, compressed>", "kid": "<32 hex>"}
# It holds no secret. The boot self-test compares the chip's public key for the slot
# with public_key: a swapped or re-keyed chip is caught before it signs. "kid" is
# redundant (derived from the key) and checked, like the key file's.

import binascii
import json

from .cose import kid_for

FORMAT = "signet-se/1"


class BindingError(ValueError):
    pass


def dumps(chip, serial, slot, public_key):
    """chip: "ATECC608A"/"ATECC608B"; serial: 9 bytes; public_key: 33-byte compressed."""
    return json.dumps(
        {
            "format": FORMAT,
            "chip": chip,
            "serial": binascii.hexlify(serial).decode(),
            "slot": slot,
            "curve": "p256",
            "public_key": binascii.hexlify(public_key).decode(),
            "kid": binascii.hexlify(kid_for(public_key)).decode(),
        }
    )


def loads(text):
    """The binding as a dict, with serial and public_key as bytes; BindingError if wrong."""
    try:
        obj = json.loads(text)
    except ValueError:
        raise BindingError("binding file is not JSON") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise BindingError("not a %s binding file" % FORMAT)
    slot = obj.get("slot")
    if not isinstance(slot, int) or not 0 <= slot <= 15:
        raise BindingError("binding file 'slot' must be 0..15")
    if obj.get("curve") != "p256":
        raise BindingError("binding file 'curve' must be 'p256'")
    try:
        pub = binascii.unhexlify(obj.get("public_key") or "")
        serial = binascii.unhexlify(obj.get("serial") or "")
        kid = kid_for(pub)
    except ValueError:
        raise BindingError("binding file 'public_key' or 'serial' is not valid hex") from None
    if obj.get("kid") != binascii.hexlify(kid).decode():
        raise BindingError("binding file 'kid' does not match its public key")
    obj["public_key"] = pub
    obj["serial"] = serial
    return obj


def load(path):
    with open(path) as f:
        return loads(f.read())
