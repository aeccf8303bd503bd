"""The ATECC608 configuration zone: is the enrolled key's slot a non-exportable signing key?

Written from the ATECC608A/B datasheet's configuration zone map, independently of the
firmware's self-test (firmware/lib/signet/se_signer.py), so each checks the other. The
128-byte zone, the offsets this module reads (datasheet, "Configuration Zone" table):

    0..3    SN[0:4]          8..12   SN[4:9]           (9-byte serial: SN[0:4] || SN[4:9])
    20..51  SlotConfig[16]   2 bytes each, little-endian
    86      LockValue        0x00 = data and OTP zones locked, 0x55 = unlocked
    87      LockConfig       0x00 = configuration zone locked, 0x55 = unlocked
    96..127 KeyConfig[16]    2 bytes each, little-endian

Rules for the key slot (datasheet, "SlotConfig" and "KeyConfig" bit tables, and
"WriteConfig bits - private key slots"):

- both zones locked (LockConfig and LockValue 0x00): until the configuration zone is
  locked the slot rules below are not enforced, and until the data zone is locked a
  private key slot can be written in the clear            -> ``chip_unlocked``
- KeyConfig.Private (bit 0) = 1 and KeyConfig.KeyType (bits 2..4) = 0b100 (P-256): the
  slot holds an ECC private key                          -> ``slot_config``
- SlotConfig.IsSecret (bit 7) = 1: the slot can never be read -> ``slot_config``
- SlotConfig.ReadKey bit 0 (bit 0) = 1: for a private key slot the ReadKey bits are
  usage rights, bit 0 "external signatures of arbitrary messages are enabled"; Signet
  signs its digests as external messages                  -> ``slot_config``
- SlotConfig.WriteConfig (bits 12..15) bit 2 (bit 14) = 0: for a private key slot that
  bit is PrivWrite, which would let a key chosen OUTSIDE the chip be written into the
  slot (bit 1, bit 13, is GenKey: the chip may replace the key with a new one generated
  inside it, which keeps the property we care about)      -> ``slot_config``

A Trust&GO part's slot 0 (SlotConfig 0x0085, KeyConfig 0x0053) passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .refusals import EvidenceRefused

__all__ = ["CONFIG_ZONE_BYTES", "ConfigZone", "check_config_zone"]

CONFIG_ZONE_BYTES: Final = 128
_SLOT_CONFIG: Final = 20
_KEY_CONFIG: Final = 96
_LOCK_VALUE: Final = 86
_LOCK_CONFIG: Final = 87
_LOCKED: Final = 0x00

_IS_SECRET: Final = 1 << 7
_EXT_SIG: Final = 1 << 0  # ReadKey bit 0 for a private key slot
_PRIV_WRITE: Final = 1 << 14  # WriteConfig bit 2 for a private key slot
_PRIVATE: Final = 1 << 0
_KEY_TYPE_SHIFT: Final = 2
_KEY_TYPE_P256: Final = 0b100


@dataclass(frozen=True)
class ConfigZone:
    serial: bytes  # 9 bytes
    slot: int
    slot_config: int
    key_config: int

    def summary(self) -> dict[str, object]:
        return {
            "serial": self.serial.hex(),
            "slot": self.slot,
            "slot_config": f"0x{self.slot_config:04x}",
            "key_config": f"0x{self.key_config:04x}",
        }


def check_config_zone(cfg: bytes, slot: int) -> ConfigZone:
    """Check the zone's locks and ``slot``'s rules; return what was read. Raises EvidenceRefused."""
    if len(cfg) != CONFIG_ZONE_BYTES:
        raise EvidenceRefused(
            "evidence_malformed", f"cfg is {len(cfg)} bytes; the ATECC608 config zone is 128"
        )
    if not 0 <= slot <= 15:
        raise EvidenceRefused("evidence_malformed", f"slot {slot} is not 0..15")
    if cfg[_LOCK_CONFIG] != _LOCKED:
        raise EvidenceRefused(
            "chip_unlocked",
            f"the configuration zone is not locked (LockConfig = 0x{cfg[_LOCK_CONFIG]:02x}, "
            "locked is 0x00): the slot rules are not in force",
        )
    if cfg[_LOCK_VALUE] != _LOCKED:
        raise EvidenceRefused(
            "chip_unlocked",
            f"the data zone is not locked (LockValue = 0x{cfg[_LOCK_VALUE]:02x}, locked is "
            "0x00): the key slot can still be written",
        )
    slot_config = int.from_bytes(
        cfg[_SLOT_CONFIG + 2 * slot : _SLOT_CONFIG + 2 * slot + 2], "little"
    )
    key_config = int.from_bytes(cfg[_KEY_CONFIG + 2 * slot : _KEY_CONFIG + 2 * slot + 2], "little")
    where = f"slot {slot} (SlotConfig 0x{slot_config:04x}, KeyConfig 0x{key_config:04x})"
    if not key_config & _PRIVATE:
        raise EvidenceRefused(
            "slot_config", f"{where} is not a private key slot (KeyConfig.Private = 0)"
        )
    key_type = (key_config >> _KEY_TYPE_SHIFT) & 0b111
    if key_type != _KEY_TYPE_P256:
        raise EvidenceRefused(
            "slot_config", f"{where} holds key type {key_type:03b}, not P-256 (100)"
        )
    if not slot_config & _IS_SECRET:
        raise EvidenceRefused("slot_config", f"{where} is not secret (SlotConfig.IsSecret = 0)")
    if not slot_config & _EXT_SIG:
        raise EvidenceRefused(
            "slot_config", f"{where} does not allow external signatures (ReadKey bit 0 = 0)"
        )
    if slot_config & _PRIV_WRITE:
        raise EvidenceRefused(
            "slot_config",
            f"{where} allows PrivWrite (WriteConfig bit 2 = 1): a key made outside the chip "
            "could be written into it",
        )
    serial = bytes(cfg[0:4]) + bytes(cfg[8:13])
    return ConfigZone(serial=serial, slot=slot, slot_config=slot_config, key_config=key_config)
