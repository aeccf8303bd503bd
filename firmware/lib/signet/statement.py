# Statements (docs/TRUST.md, "Statements"): COSE_Sign1 envelopes like records,
# whose payload is a CBOR map with text keys, "v": 1 and "k" naming the claim.
# The gateway's record verifier refuses these kinds, and its statement reader
# refuses record kinds, so neither can be replayed as the other.
#
#   enroll  the device key answers the gateway's challenge (c), with the chip's
#           serial (sn) and config zone (cfg) when it is in an ATECC608
#   line    a manufacturing line's key vouches for a device key (pk) it saw born
#           in chip sn at time t (unix ms)
#   rotate  the old device key hands over to a new one (pk); last = the highest
#           n the old key signed
#
# Used on a board (the enroll answer, signed by the chip during provisioning)
# and by the host tools; signer: anything with alg, kid, sign_digest().

from . import cbor, cose


def sign(signer, kind, fields):
    """The signed statement bytes; fields: a dict of the kind's other keys."""
    body = {"v": 1, "k": kind}
    for key in fields:
        body[key] = fields[key]
    enc = cbor.Encoder(512)
    enc.value(body)  # deterministic: keys in CBOR order
    payload = enc.getvalue()
    return bytes(cose.sign1(signer, payload, enc))


def enroll(signer, challenge, serial=None, config=None):
    fields = {"c": bytes(challenge)}
    if serial is not None:
        fields["sn"] = bytes(serial)
    if config is not None:
        fields["cfg"] = bytes(config)
    return sign(signer, "enroll", fields)


def line(signer, public_key, serial, t_ms, line_name, config=None):
    fields = {
        "pk": bytes(public_key),
        "crv": "p256",
        "sn": bytes(serial),
        "t": t_ms,
        "line": line_name,
    }
    if config is not None:
        fields["cfg"] = bytes(config)
    return sign(signer, "line", fields)


def rotate(signer, new_public_key, curve, last, t_ms=None):
    return sign(
        signer,
        "rotate",
        {"old": signer.kid, "pk": bytes(new_public_key), "crv": curve, "last": last, "t": t_ms},
    )
