# The private key file format, shared by the device and the host tools.
#
# One JSON object, so MicroPython's json module can read it without any ASN.1:
#   {"format": "signet-key/1", "curve": "p256", "d": "<64 hex>", "kid": "<32 hex>"}
# "kid" is redundant (derived from d) and checked on load: a key file that has
# been edited or corrupted is refused instead of signing as a different device.

import binascii
import json

from .signer import SoftwareSigner

FORMAT = "signet-key/1"


class KeyFileError(ValueError):
    pass


def dumps(signer):
    return json.dumps(
        {
            "format": FORMAT,
            "curve": signer.curve.name,
            "d": binascii.hexlify(signer.private_bytes()).decode(),
            "kid": signer.device_id,
        }
    )


def loads(text):
    try:
        obj = json.loads(text)
    except ValueError:
        raise KeyFileError("key file is not JSON") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise KeyFileError("not a %s key file" % FORMAT)
    curve = obj.get("curve")
    if curve not in ("p256", "secp256k1"):
        raise KeyFileError("key file curve must be 'p256' or 'secp256k1', got %r" % (curve,))
    d_hex = obj.get("d")
    if not isinstance(d_hex, str) or len(d_hex) != 64:
        raise KeyFileError("key file 'd' must be 64 hex digits")
    try:
        d = int.from_bytes(binascii.unhexlify(d_hex), "big")
        signer = SoftwareSigner(curve, d)
    except ValueError as e:
        raise KeyFileError("key file 'd' is not a valid %s private key (%s)" % (curve, e)) from None
    if obj.get("kid") != signer.device_id:
        raise KeyFileError("key file 'kid' does not match its private key")
    return signer


def load(path):
    with open(path) as f:
        return loads(f.read())
