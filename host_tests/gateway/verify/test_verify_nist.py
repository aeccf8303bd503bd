"""Known-answer ECDSA vectors through check_signature (raw r||s, low-S rule on top).

* NIST CAVP FIPS 186-3 SigVer, [P-256,SHA-256]: Result P (valid) and F (invalid).
  A valid vector with high S must be refused ``high_s``, and its low-S twin
  (r, n - s) accepted; every F vector must be refused.
* NIST CAVP FIPS 186-3 SigGen, [P-256,SHA-256]: 15 more known-valid signatures.
* secp256k1 SigGen [K-256,SHA-256] (cryptography-vectors): the coincurve path.
"""

from __future__ import annotations

import os

import cryptography_vectors
import pytest

from signet_gateway.verify.pubkeys import CURVES, DevicePublicKey, check_signature
from signet_gateway.verify.refusals import Refused

_BASE = os.path.join("asymmetric", "ECDSA")


def _section(path: str, header: str) -> list[dict[str, str]]:
    with cryptography_vectors.open_vector_file(os.path.join(_BASE, path), "r") as f:
        text = f.read()
    body = text.split(f"[{header}]", 1)[1]
    body = body.split("\n[", 1)[0]
    vectors, current = [], {}
    for line in body.splitlines():
        line = line.strip()
        if not line:
            if current:
                vectors.append(current)
                current = {}
            continue
        if line.startswith("#") or "=" not in line:
            continue
        name, value = (part.strip() for part in line.split("=", 1))
        current[name] = value
    if current:
        vectors.append(current)
    return [v for v in vectors if "Msg" in v and "R" in v]


def _key(vector: dict[str, str], curve: str) -> DevicePublicKey:
    point = (
        b"\x04"
        + bytes.fromhex(vector["Qx"].rjust(64, "0"))
        + bytes.fromhex(vector["Qy"].rjust(64, "0"))
    )
    return DevicePublicKey.from_sec1(point, curve)  # type: ignore[arg-type]


def _sig(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _accepts(key: DevicePublicKey, msg: bytes, r: int, s: int) -> None:
    """Assert the signature is accepted, normalising high S per the low-S rule."""
    n = key.curve_info.n
    if s > n // 2:
        with pytest.raises(Refused) as err:
            check_signature(key, msg, _sig(r, s))
        assert err.value.reason == "high_s"
        assert not key.verify(_sig(r, s), msg)
        s = n - s
    check_signature(key, msg, _sig(r, s))
    assert key.verify(_sig(r, s), msg)


def test_cavp_sigver_p256_sha256() -> None:
    vectors = _section(os.path.join("FIPS_186-3", "SigVer.rsp"), "P-256,SHA-256")
    counts = {"pass_low_s": 0, "pass_high_s": 0, "fail": 0, "fail_bad_key": 0}
    n = CURVES["p256"].n
    for vector in vectors:
        msg = bytes.fromhex(vector["Msg"])
        r, s = int(vector["R"], 16), int(vector["S"], 16)
        result = vector["Result"][0]
        try:
            key = _key(vector, "p256")
        except Refused as err:  # a "Q changed" vector may leave the curve
            assert result == "F" and err.reason == "bad_key"
            counts["fail_bad_key"] += 1
            continue
        if result == "P":
            counts["pass_high_s" if s > n // 2 else "pass_low_s"] += 1
            _accepts(key, msg, r, s)
        else:
            counts["fail"] += 1
            with pytest.raises(Refused) as err:
                check_signature(key, msg, _sig(r, s))
            assert err.value.reason in ("bad_signature", "high_s"), str(err.value)
            # and the low-S twin of an invalid signature is still invalid
            if s > n // 2:
                with pytest.raises(Refused) as err:
                    check_signature(key, msg, _sig(r, n - s))
                assert err.value.reason == "bad_signature"
    assert len(vectors) >= 15
    assert sum(counts.values()) == len(vectors)
    assert counts["pass_low_s"] + counts["pass_high_s"] >= 3, counts
    assert counts["fail"] + counts["fail_bad_key"] >= 12, counts


def test_cavp_siggen_p256_sha256_known_valid() -> None:
    vectors = _section(os.path.join("FIPS_186-3", "SigGen.txt"), "P-256,SHA-256")
    high = 0
    for vector in vectors:
        msg = bytes.fromhex(vector["Msg"])
        r, s = int(vector["R"], 16), int(vector["S"], 16)
        high += s > CURVES["p256"].half_n
        key = _key(vector, "p256")
        _accepts(key, msg, r, s)
        with pytest.raises(Refused) as err:
            check_signature(key, msg + b"\x00", _sig(r, min(s, CURVES["p256"].n - s)))
        assert err.value.reason == "bad_signature"
    assert len(vectors) >= 15
    assert 0 < high < len(vectors)  # both halves exercised


def test_secp256k1_siggen_sha256_known_valid() -> None:
    vectors = _section(os.path.join("SECP256K1", "SigGen.txt"), "K-256,SHA-256")[:60]
    n = CURVES["secp256k1"].n
    high = 0
    for vector in vectors:
        msg = bytes.fromhex(vector["Msg"])
        r, s = int(vector["R"], 16), int(vector["S"], 16)
        high += s > n // 2
        key = _key(vector, "secp256k1")
        _accepts(key, msg, r, s)
        with pytest.raises(Refused) as err:
            check_signature(key, msg[:-1], _sig(r, min(s, n - s)))
        assert err.value.reason == "bad_signature"
    assert len(vectors) >= 15
    assert 0 < high < len(vectors)
