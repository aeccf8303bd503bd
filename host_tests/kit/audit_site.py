"""A gateway site for the audit tests: a real gateway database filled through the
gateway's own write path (tools/runners/offline_gateway.py), its log key and gateway.toml,
and devices whose records span several days with the cases the figures count: restarts,
a missing number, a late record, a duplicate, a clock in the future, refunds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.gatewaykit import Dev
from signet_gateway.log import key as log_key
from signet_gateway.log.note import Signer, Verifier
from signet_tools.runners.gateway_process import create_gateway_database, write_gateway_config
from signet_tools.runners.offline_gateway import OfflineGateway

ORIGIN = "audit.test/signet"
T0 = 1_700_006_400_000  # 2023-11-15T00:00:00Z
HOUR = 3_600_000


class Device(Dev):
    """A key of the test kit with its own clocks: ``sign`` takes u and t as given."""

    def sign(self, kind: str, u: int, t: int | None, **fields: Any) -> bytes:
        self.n += 1
        payload, raw = self.builder.build(kind, self.n, self.b, u, t, self.prev, fields)
        self.prev = hashlib.sha256(payload).digest()
        return bytes(raw)


@dataclass
class Site:
    root: Path
    config: Path
    db: Path | str
    key_path: Path
    signer: Signer
    devices: list[Device] = field(default_factory=list)

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier

    @property
    def vkey(self) -> str:
        return self.signer.verifier.vkey

    def gateway(self) -> OfflineGateway:
        return OfflineGateway(self.db)


def make_site(root: Path, devices: int = 2, hours: int = 60, db: Path | str | None = None) -> Site:
    """The database, key and config in ``root``, ``devices`` enrolled, their records stored
    (device 0 gets every awkward case), and one checkpoint signed half way. ``db``: another
    store than ``root``/gateway.db (a PostgreSQL URL: store_at), made here."""
    root.mkdir(parents=True, exist_ok=True)
    if db is None:
        db = root / "gateway.db"
    else:
        create_gateway_database(db)
    key_path = root / "gateway-log.key"
    private = log_key.generate()
    log_key.save(key_path, private)
    config = write_gateway_config(
        root / "gateway.toml", 1883, db, log={"key": str(key_path), "origin": ORIGIN}
    )
    site = Site(root, config, db, key_path, log_key.signer(private, ORIGIN))
    gw = site.gateway()
    try:
        for i in range(devices):
            dev = Device(i)
            gw.enroll(dev.key, name=f"till-{i}", enrolled_ms=T0 - HOUR + i)
            site.devices.append(dev)
        batches = [_history(dev, i, hours) for i, dev in enumerate(site.devices)]
        # Deliver in receive order, several devices per transaction, as a gateway would.
        merged = sorted((m for batch in batches for m in batch), key=lambda m: m[2])
        half = len(merged) // 2
        for start in range(0, len(merged), 7):
            gw.deliver(merged[start : start + 7])
            if start <= half < start + 7:
                gw.checkpoint(site.signer, T0 + HOUR)
    finally:
        gw.close()
    return site


def _history(dev: Device, index: int, hours: int) -> list[tuple[str, bytes, int]]:
    """(device id, record, receive time): hourly heartbeats, sales, the awkward cases."""
    out: list[tuple[str, bytes, int]] = []
    start = T0 + index * 60_000
    late: tuple[str, bytes, int] | None = None
    boot_u = 0
    out.append((dev.kid, dev.sign("boot", 0, start, rc="power_on", fw="1.0", ls=0), start + 500))
    for h in range(1, hours + 1):
        now = start + h * HOUR
        u = now - start - boot_u
        if index == 0 and h == hours // 2:  # a restart: boot 2 declares nothing unused
            dev.b += 1
            boot_u = now - start
            raw = dev.sign("boot", 0, now, rc="watchdog", fw="1.0", ls=dev.n)
            out.append((dev.kid, raw, now + 400))
            continue
        raw = dev.sign("hb", u, now, iv=HOUR, st="ok")
        if index == 0 and h == 7:
            continue  # signed, never delivered: a missing number
        if index == 0 and h == 11:
            late = (dev.kid, raw, now + 5 * HOUR)  # delivered hours later
        else:
            out.append((dev.kid, raw, now + 800))
        if index == 0 and h == 12:
            out.append((dev.kid, raw, now + 900))  # the same record again: a duplicate
        if h % 3 == 0:
            am = -120 if h % 15 == 0 else 250 + 10 * h + index
            raw = dev.sign("rev", u + 1000, now + 1000, am=am, cur="EUR", src="pulse")
            out.append((dev.kid, raw, now + 1500))
        if index == 0 and h == 20:  # a clock ten minutes ahead of the gateway's
            raw = dev.sign("evt", u + 2000, now + 2000 + 600_000, ev="door_open")
            out.append((dev.kid, raw, now + 2500))
    if late is not None:
        out.append(late)
    return out
