"""`signet demo`: generate keys, sign a chain of records, verify them, show refusals.

The README's main command for the signed-records milestone: everything runs
locally with the real firmware signer and the gateway's verifier.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cbor2

from signet import ec, keyfile
from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH

from . import cborseq, keygen, keystore, verify_cmd

_SCRIPT = (
    ("boot", {"rc": "power_on", "fw": "0.1.0", "ls": 0}),
    ("hb", {"iv": 60000, "st": "ok"}),
    ("rev", {"am": 250, "cur": "EUR", "src": "pulse", "ref": "coin-0001"}),
    ("rev", {"am": 1990, "cur": "EUR", "src": "uart", "ref": "card-7f3a"}),
    ("meter", {"q": 1375, "unit": "Wh", "src": "uart"}),
    ("evt", {"ev": "door_open", "msg": "service visit"}),
)
_T0 = 1767225600000  # 2026-01-01T00:00:00Z


def _sign_chain(key_path: Path, out: Path) -> list[bytes]:
    signer = keyfile.load(str(key_path))
    builder = RecordBuilder(signer)
    prev = GENESIS_HASH
    records = []
    for n, (kind, fields) in enumerate(_SCRIPT, start=1):
        payload, record = builder.build(kind, n, 1, n * 60000, _T0 + n * 60000, prev, fields)
        prev = hashlib.sha256(payload).digest()
        cborseq.append(out, record)
        records.append(record)
    return records


def _forgeries(genuine: list[bytes], stranger: Path) -> list[tuple[str, bytes]]:
    """Tampered copies of genuine records, each of which the verifier must refuse."""
    tag = cbor2.loads(genuine[2])  # the 2.50 EUR coin payment
    protected, unprotected, payload, sig = tag.value
    inflated = cbor2.loads(payload)
    inflated["am"] = 25000  # 250.00 EUR instead of 2.50: signature no longer matches
    n = ec.P256.n
    high_s = sig[:32] + (n - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    unknown = RecordBuilder(keyfile.load(str(stranger))).build(
        "rev", 3, 1, 180000, _T0 + 180000, GENESIS_HASH, {"am": 250, "cur": "EUR", "src": "pulse"}
    )[1]
    return [
        (
            "amount raised from 250 to 25000",
            cbor2.dumps(
                cbor2.CBORTag(18, [protected, dict(unprotected), cbor2.dumps(inflated), sig])
            ),
        ),
        (
            "high-S twin of a valid signature",
            cbor2.dumps(cbor2.CBORTag(18, [protected, dict(unprotected), payload, high_s])),
        ),
        ("signed by a key nobody enrolled", unknown),
        ("truncated in transit", genuine[1][:-7]),
        ("record replaced by garbage", b"\xd2\x84garbage"),
    ]


def run(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    trusted = directory / "trusted"
    trusted.mkdir(exist_ok=True)
    for stale in list(trusted.glob("*")) + list(directory.glob("*.cbor")):
        stale.unlink()
    records_file = directory / "records.cbor"
    print(f"Signet demo in {directory}\n")

    devices = []
    for name, curve in (("coffee-machine", "p256"), ("ev-charger", "secp256k1")):
        key_path = directory / f"{name}.key"
        signer = keygen.generate(curve, key_path, force=True)
        keygen.pub_path(key_path).replace(trusted / f"{name}.pub.pem")
        devices.append((name, curve, key_path, signer.device_id))
        print(f"  key  {name:<15} {curve:<9} device id {signer.device_id}")
    stranger = directory / "stranger.key"
    keygen.generate("p256", stranger, force=True)

    genuine: list[bytes] = []
    for _, _, key_path, _ in devices:
        genuine += _sign_chain(key_path, records_file)
    print(f"\n  signed {len(genuine)} records with the firmware code -> {records_file}")

    keys = keystore.load_dir(trusted)
    verdicts = verify_cmd.verify_file(records_file.read_bytes(), keys)
    print("\nVerifying every record (COSE tag 18, exact headers, ES256/ES256K, kid = SHA-256 of")
    print("the enrolled key, 64-byte low-S r||s, ECDSA, strict CBOR payload schema):")
    for line in verify_cmd.render(verdicts, as_json=False):
        print("  " + line)
    print("  " + verify_cmd.summary(verdicts))

    print("\nTampered and foreign records (each must be refused with a reason):")
    forged_ok = True
    for label, data in _forgeries(genuine, stranger):
        (verdict,) = verify_cmd.verify_file(data, keys)
        forged_ok &= not verdict.valid
        shown = "ACCEPTED (bug!)" if verdict.valid else f"refused {verdict.reason}"
        print(f"  {label:<36} {shown}")
    all_valid = all(v.valid for v in verdicts) and len(verdicts) == len(genuine)
    print()
    if all_valid and forged_ok:
        print("OK: every genuine record verified; every forgery was refused.")
        print(f"Try: signet verify {records_file} --key-dir {trusted}")
        return 0
    print("FAILED: see above.")
    return 1
