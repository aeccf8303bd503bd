# A device key held in software (flash or a file): the "software-signed" tier.
#
# A secure-element signer offers the same four attributes and sign_digest(),
# so nothing above this layer knows where the key lives.

import binascii
import gc

from . import cose, ec, ecdsa

_HEAP_ONLY = hasattr(gc, "mem_free")  # MicroPython (CPython's gc moves nothing either way)
_ALG_BY_CURVE = {"p256": cose.ALG_ES256, "secp256k1": cose.ALG_ES256K}


class SoftwareSigner:
    def __init__(self, curve_name, d):
        self.curve = ec.curve_by_name(curve_name)
        self.alg = _ALG_BY_CURVE[curve_name]
        if not 0 < d < self.curve.n:
            raise ValueError("private key out of range for %s" % curve_name)
        self._d = d
        x, y = ec.public_point(self.curve, d)
        if _HEAP_ONLY:
            # On MicroPython: the comb table's build and k*G left garbage; collected
            # before the long-lived key values below, they do not land between it.
            gc.collect()
        self.public_key = ec.encode_point(x, y, True)
        self.public_key_uncompressed = ec.encode_point(x, y, False)
        self.kid = cose.kid_for(self.public_key)
        self.device_id = binascii.hexlify(self.kid).decode()

    @classmethod
    def generate(cls, curve_name="p256"):
        return cls(curve_name, ecdsa.generate_scalar(ec.curve_by_name(curve_name)))

    def sign_digest(self, digest):
        return ecdsa.sign_digest(self.curve, self._d, digest)

    def private_bytes(self):
        return self._d.to_bytes(32, "big")

    def __repr__(self):  # never the secret
        return "SoftwareSigner(%s, device_id=%s)" % (self.curve.name, self.device_id)
