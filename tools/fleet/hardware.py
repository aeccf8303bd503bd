"""Hardware-tier virtual devices for `signet simulate --hardware K`: real keys, real evidence.

Each of the first K devices gets its key from a secure element the fleet runs for it:

- an emulated ATECC608 (tools/runners/atecc608_emu.py), Trust&GO-shaped: locked, a key born
  in slot 0, a device certificate <- signer certificate <- root of a test PKI made once per
  fleet; the chip-side provisioning steps (signet/se_provision.py) answer the gateway's
  challenge with an enroll statement signed by the chip (se-chain evidence);
- or, when swtpm and tpm2-pytss are installed, every second one: a key created in its own
  swtpm (tools/runners/swtpm.py), certified by an attestation key whose certificate a test
  CA made once per fleet issues (tpm2-certify evidence).

The agent then opens the key through tools/pi/keys.py, as `signet agent run` does (the
ATECC608's self-test, its counter bound to the sequence lease), and the fleet enrolls it
through gateway/store/admission.enroll with a fresh challenge: the code path of
`signet enroll --tier hardware --evidence`. Nothing is simulated but the chips themselves.
The roots go to OUT/trust/*.pem: put them in gateway.toml [trust] (se_roots, tpm_roots) so
`signet devices --evidence` can be re-checked against them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signet import config as agent_config
from signet import se_provision
from signet.atecc608 import ATECC608
from signet_tools.pi.keys import OpenedKey, open_device_key
from signet_tools.records import evidence as evidence_file
from signet_tools.runners.atecc608_emu import TestPKI, VirtualClock, make_test_pki, trust_and_go


def tpm_available() -> bool:
    """swtpm on the PATH and the tpm extra (tpm2-pytss) importable."""
    return shutil.which("swtpm") is not None and importlib.util.find_spec("tpm2_pytss") is not None


@dataclass
class FleetRoots:
    """One test root per kind for the whole fleet, and their PEM files for gateway.toml."""

    directory: Path
    se: TestPKI = field(default_factory=lambda: make_test_pki("Signet virtual fleet SE"))
    tpm: Any = None  # runners.tpm_ca.TpmTestCA, made when a TPM device needs it

    @property
    def se_root(self) -> Path:
        return self.directory / "se-root.pem"

    @property
    def tpm_root(self) -> Path:
        return self.directory / "tpm-root.pem"

    def tpm_ca(self) -> Any:
        if self.tpm is None:
            from signet_tools.runners.tpm_ca import make_tpm_ca

            self.tpm = make_tpm_ca("Signet virtual fleet TPM")
        return self.tpm

    def write(self) -> dict[str, list[str]]:
        """The PEM files; returns the [trust] entries that name them (absolute: gateway.toml
        takes a relative path against its own directory, not the one the fleet ran in)."""
        from cryptography.hazmat.primitives import serialization

        self.directory.mkdir(parents=True, exist_ok=True)
        self.se_root.write_bytes(self.se.root.public_bytes(serialization.Encoding.PEM))
        trust = {"se_roots": [str(self.se_root.resolve())]}
        if self.tpm is not None:
            self.tpm_root.write_bytes(self.tpm.root_pem())
            trust["tpm_roots"] = [str(self.tpm_root.resolve())]
        return trust

    def policy(self) -> Any:
        from signet_gateway.trust import TrustPolicy

        return TrustPolicy(
            se_roots=(self.se.root,),
            tpm_roots=(self.tpm.root,) if self.tpm is not None else (),
        )


@dataclass
class HardwareKey:
    """A device's key in its secure element, opened as the agent opens it, and its evidence."""

    kind: str  # "atecc608" or "tpm2"
    opened: OpenedKey
    evidence: bytes
    swtpm: Any = None

    def close(self) -> None:
        signer = self.opened.signer
        if hasattr(signer, "close"):
            signer.close()
        if self.swtpm is not None:
            self.swtpm.stop()
            self.swtpm = None


def _key_section(section: dict[str, Any]) -> dict[str, Any]:
    """The key section as signet.config fills it in (defaults, checks)."""
    cfg = agent_config.parse({"mqtt": {"host": "localhost"}, "key": section})
    return cfg.key  # type: ignore[no-any-return]


def atecc608_key(directory: Path, roots: FleetRoots, challenge: bytes) -> HardwareKey:
    """A Trust&GO-shaped chip of the fleet's PKI; its binding file in directory."""
    made = trust_and_go(pki=roots.se, clock=VirtualClock())
    key = _key_section({"type": "atecc608", "path": str(directory / "chip.json"), "address": 0x35})
    chip = ATECC608(made.chip, key["address"], made.chip.sleep_us)
    facts = se_provision.provision(chip, key["slot"], key["path"], challenge, "never")
    evidence = evidence_file.for_chip(facts, made.chain_der()[:2])  # device, signer
    opened = open_device_key(key, i2c=made.chip)
    return HardwareKey("atecc608", opened, json.dumps(evidence).encode())


def tpm2_key(directory: Path, roots: FleetRoots, challenge: bytes) -> HardwareKey:
    """A key in its own swtpm, certified by an AK the fleet's test CA certified."""
    from signet_tools.pi import tpm_key
    from signet_tools.runners.swtpm import Swtpm

    ca = roots.tpm_ca()
    swtpm = Swtpm(directory / "swtpm").start()
    try:
        blob = directory / "device.tpm"
        with tpm_key.create_tpm_key(swtpm.tcti, blob, force=True) as signer:
            ak = tpm_key.create_ak(swtpm.tcti, directory / "device.tpm.ak", force=True)
            chain = ca.ak_chain_der(ak.public_key)
            evidence = tpm_key.certify_evidence(swtpm.tcti, signer, ak, chain, challenge)
        key = _key_section({"type": "tpm2", "path": str(blob), "tcti": swtpm.tcti})
        opened = open_device_key(key)
    except BaseException:
        swtpm.stop()
        raise
    return HardwareKey("tpm2", opened, json.dumps(evidence).encode(), swtpm)
