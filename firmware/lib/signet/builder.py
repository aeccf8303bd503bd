# Build and sign one record: payload validation, CBOR, COSE_Sign1.

from . import cbor, cose, record


class RecordBuilder:
    """Turns record fields into signed bytes with one reusable buffer."""

    def __init__(self, signer, capacity=cose.MAX_RECORD_BYTES, buf=None):
        self.signer = signer
        self._enc = cbor.Encoder(capacity, buf)  # buf: see cbor.Encoder

    def build(self, kind, n, b, u, t, prev, fields):
        """Returns (payload_bytes, record_bytes).

        The payload bytes are what the next record's "p" hashes (SHA-256).
        """
        payload = record.encode_payload(self._enc, kind, n, b, u, t, prev, fields)
        return payload, cose.sign1(self.signer, payload, self._enc)
