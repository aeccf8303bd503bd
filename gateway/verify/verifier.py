"""The host-side record verifier: bytes in, a :class:`VerifiedRecord` or :class:`Refused` out.

This is the one decoder + verifier the gateway and the CLI tools use. Checks
run in a fixed order and a record is refused for the first failure:

1. size <= 1024 bytes                          -> ``too_large`` (nothing decoded yet)
2. strict CBOR, 4-item COSE_Sign1 array         -> ``malformed``
3. CBOR tag 18                                  -> ``bad_tag``
4. protected == {1: alg}, unprotected == {4: kid} -> ``bad_header``
5. alg is ES256 (-7) or ES256K (-47)            -> ``bad_alg``
6. kid is the expected device / is enrolled     -> ``kid_mismatch`` / ``unknown_key``
7. alg matches the enrolled key's curve         -> ``bad_alg``
8. signature is 64-byte r||s, 1 <= r, s < n     -> ``bad_signature_encoding``
9. low-S (s <= n/2)                             -> ``high_s``
10. ECDSA-SHA256 over the Sig_structure          -> ``bad_signature``
11. payload is strict CBOR matching the schema   -> ``bad_payload``

The payload is parsed only after its signature verified: unauthenticated bytes
never reach the schema code. What this module does *not* check is state:
sequence order, replays and the ``p`` hash chain belong to the gateway's store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .cose_decode import (
    MAX_RECORD_BYTES,
    CoseSign1,
    decode_envelope,
    sig_structure,
)
from .payload_schema import decode_payload
from .pubkeys import (
    ALG_ES256,
    ALG_ES256K,
    CURVE_BY_ALG,
    DevicePublicKey,
    check_signature,
)
from .refusals import REASONS, Refused

__all__ = [
    "ALG_ES256",
    "ALG_ES256K",
    "MAX_RECORD_BYTES",
    "REASONS",
    "DevicePublicKey",
    "KeyLookup",
    "Refused",
    "VerifiedRecord",
    "Verifier",
    "check_signature",
    "decode_envelope",
]

KeyLookup = Mapping[bytes, DevicePublicKey] | Callable[[bytes], DevicePublicKey | None]

_CACHE_LIMIT: Final = 65536


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """A record whose envelope, signature and payload schema all checked out.

    ``raw`` is the exact bytes received (keep these: they are what was signed
    around, and what ``dataHash`` is computed over). ``payload`` is the decoded
    map (treat it as read-only).
    """

    raw: bytes
    kid: bytes
    alg: int
    payload_bytes: bytes
    payload: dict[str, Any]
    signature: bytes

    @property
    def device_id(self) -> str:
        """Lowercase hex of the kid."""
        return self.kid.hex()

    @property
    def seq(self) -> int:
        """The sequence number ``n``."""
        return self.payload["n"]

    @property
    def kind(self) -> str:
        """The record kind ``k``: boot, hb, rev, meter or evt."""
        return self.payload["k"]

    @property
    def prev_hash(self) -> bytes:
        """``p``: SHA-256 of the previous record's payload bytes (32 zero bytes for the first)."""
        return self.payload["p"]

    @property
    def payload_hash(self) -> bytes:
        """SHA-256 of this record's payload bytes: the next record's ``p`` must equal it."""
        return hashlib.sha256(self.payload_bytes).digest()


class Verifier:
    """Verify Signet records against enrolled device keys.

    ``keys`` is either a mapping kid -> :class:`DevicePublicKey` (looked up live,
    so a dict the caller mutates stays current) or a callable ``lookup(kid)``
    returning the key or None. Keys returned by a callable are cached per kid;
    call :meth:`forget` after revoking or re-enrolling a key.
    """

    __slots__ = ("_cache", "_lookup", "_mapping")

    def __init__(self, keys: KeyLookup) -> None:
        self._mapping: Mapping[bytes, DevicePublicKey] | None = None
        self._lookup: Callable[[bytes], DevicePublicKey | None] | None = None
        if isinstance(keys, Mapping):
            self._mapping = keys
        elif callable(keys):
            self._lookup = keys
        else:
            raise TypeError("keys must be a Mapping[bytes, DevicePublicKey] or a callable")
        self._cache: dict[bytes, DevicePublicKey] = {}

    def forget(self, kid: bytes | None = None) -> None:
        """Drop cached keys (one kid, or all)."""
        if kid is None:
            self._cache.clear()
        else:
            self._cache.pop(kid, None)

    def key_for(self, kid: bytes) -> DevicePublicKey:
        """The enrolled key for ``kid``; ``Refused('unknown_key' | 'kid_mismatch')`` otherwise."""
        key = self._cache.get(kid)
        if key is not None:
            return key
        if self._mapping is not None:
            key = self._mapping.get(kid)
        else:
            assert self._lookup is not None
            key = self._lookup(kid)
        if key is None:
            raise Refused("unknown_key", f"no public key is enrolled for kid {kid.hex()}")
        if not isinstance(key, DevicePublicKey):
            raise TypeError(f"key store returned {type(key).__name__}, not DevicePublicKey")
        if key.kid != kid:
            raise Refused(
                "kid_mismatch",
                f"the key enrolled under kid {kid.hex()} hashes to kid {key.device_id}",
            )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[kid] = key
        return key

    def verify(self, raw: bytes, expected_kid: bytes | str | None = None) -> VerifiedRecord:
        """Verify one record; return it decoded, or raise :class:`Refused`.

        ``expected_kid``: the device the caller already knows the record is for
        (from the MQTT topic, or ``--pubkey``), as the 16-byte kid or its hex device
        id; a record with another kid is refused ``kid_mismatch`` before any key lookup.
        """
        env: CoseSign1 = decode_envelope(raw)
        kid = env.kid
        if expected_kid is not None and kid != expected_kid:
            if type(expected_kid) is str:
                shown = expected_kid
                matches = expected_kid.lower() == kid.hex()
            else:
                shown = bytes(expected_kid).hex()
                matches = False
            if not matches:
                raise Refused(
                    "kid_mismatch", f"record kid {kid.hex()} is not the expected device {shown}"
                )
        key = self.key_for(kid)
        if key.curve_info.alg != env.alg:
            record_curve = CURVE_BY_ALG[env.alg]
            raise Refused(
                "bad_alg",
                f"record alg {record_curve.alg_name} ({env.alg}) does not match the enrolled "
                f"{key.curve_info.display} key (alg {key.curve_info.alg_name}, {key.alg})",
            )
        check_signature(key, sig_structure(env.protected, env.payload), env.signature)
        payload = decode_payload(env.payload)
        return VerifiedRecord(
            raw=raw if type(raw) is bytes else bytes(raw),
            kid=kid,
            alg=env.alg,
            payload_bytes=env.payload,
            payload=payload,
            signature=env.signature,
        )
