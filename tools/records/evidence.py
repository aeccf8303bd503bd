"""Evidence files (docs/TRUST.md, "The evidence file"), written by `signet agent provision` and
`signet device provision --se` next to the public key, read by `signet enroll --evidence`.

The provisioning code gathers the facts on the device (the chip's or the TPM's answers); this
module turns them into the JSON file, and reads the certificate chain an operator supplies.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

FORMAT = "signet-evidence/1"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


class EvidenceInputError(ValueError):
    """A file the operator gave cannot be used; the message names it."""


def read_chain(path: Path, option: str = "--chain") -> list[bytes]:
    """The DER certificates of a PEM file, in file order (device certificate first)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EvidenceInputError(f"{option}: cannot read {path} ({exc.strerror})") from None
    ders = []
    for block in _PEM.findall(data):
        try:
            ders.append(base64.b64decode(b"".join(block.split()), validate=True))
        except ValueError:
            raise EvidenceInputError(
                f"{option}: {path} holds a PEM block that is not base64"
            ) from None
    if not ders:
        raise EvidenceInputError(f"{option}: {path} holds no PEM certificate")
    return ders


def check_device_certificate(chain: list[bytes], public_key_xy: bytes, option: str) -> None:
    """The first certificate must carry the device's key (its SubjectPublicKeyInfo holds the
    uncompressed point 04 || X || Y): a chain for another chip is caught here, not at the
    gateway."""
    if b"\x04" + public_key_xy not in chain[0]:
        raise EvidenceInputError(
            f"{option}: the first certificate is not this device's (its public key is not the "
            "key in the chip); put the device certificate first, then the signer certificate"
        )


def _b64(ders: list[bytes]) -> list[str]:
    return [base64.b64encode(d).decode("ascii") for d in ders]


def se_chain(public_key: bytes, chain: list[bytes], proof: bytes) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": "se-chain",
        "curve": "p256",
        "public_key": public_key.hex(),
        "chain": _b64(chain),
        "proof": proof.hex(),
    }


def line_statement(public_key: bytes, statement: bytes) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": "line-statement",
        "curve": "p256",
        "public_key": public_key.hex(),
        "statement": statement.hex(),
    }


def for_chip(
    facts: dict[str, Any],
    chain: list[bytes] | None = None,
    line_signer: Any = None,
    line_name: str = "line-1",
    option: str = "--chain",
) -> dict[str, Any]:
    """The evidence for a key in an ATECC608 from the chip's facts (signet.se_provision):
    se-chain with the operator's certificates and the chip's enroll answer, or a line
    statement signed here by the line's key (serial and config zone from the chip)."""
    from signet import statement
    from signet_gateway.verify.pubkeys import DevicePublicKey

    public_key = bytes.fromhex(facts["public_key"])
    if chain is not None:
        xy = DevicePublicKey.from_sec1(public_key, "p256").uncompressed[1:]
        check_device_certificate(chain, xy, option)
        return se_chain(public_key, chain, bytes.fromhex(facts["proof"]))
    signed = statement.line(
        line_signer,
        public_key,
        bytes.fromhex(facts["serial"]),
        int(time.time() * 1000),
        line_name,
        bytes.fromhex(facts["config"]),
    )
    return line_statement(public_key, signed)


def write(evidence: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evidence, indent=1) + "\n")


def default_path(pubkey: Path) -> Path:
    """keys/coffee-01.pem -> keys/coffee-01.evidence.json"""
    return pubkey.with_name(pubkey.stem + ".evidence.json")
