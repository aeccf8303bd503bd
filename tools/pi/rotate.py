"""`signet agent rotate` on a Pi: hand the machine over from its key to a new one.

What happens, in order (docs/TRUST.md, "Rotating a key"):

1. The journal is locked (the agent must be stopped: one writer per journal) and drained:
   the gateway's retained ack is read from the broker and applied, and if records above it
   remain, rotation is refused: every record the old key signed must be stored first
   (nothing signed is ever dropped). The message says how many.
2. The new key is made (the caller's provisioning step: a key file, a new chip slot, a new
   TPM key) and the old key signs the "rotate" statement (signet/statement.py) naming it,
   with last = the highest n the old key journaled: the gateway accepts the old key's
   records up to last and refuses those above (rotated).
3. The old journal and sequence state are moved aside, kept, never deleted; the new key
   starts its own journal (n = 1, its own chain) in journal.dir.
4. The config's key section names the new key (the old config is kept beside it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from signet.fsio import Files
from signet.journal import Journal
from signet.link import parse_ack

from .journal_lock import JournalInUse, JournalLock
from .paho_transport import PahoTransport


class RotateRefused(Exception):
    """Rotation cannot go ahead now; the message says why and what to do (exit 1)."""


def lock(journal_dir: str) -> JournalLock:
    try:
        os.makedirs(journal_dir, mode=0o700, exist_ok=True)  # a key that never ran: none yet
        return JournalLock.acquire(journal_dir)
    except JournalInUse as exc:
        raise RotateRefused(f"journal.dir: {exc}; stop the agent first") from None
    except OSError as exc:
        raise RotateRefused(f"journal.dir: cannot use {journal_dir}: {exc.strerror}") from None


def open_journal(cfg: Any) -> Journal:
    j = cfg.journal
    journal = Journal(
        Files(j["dir"], sync=True), j["segment_bytes"], j["segments"], j["reserve_segments"]
    )
    journal.open()
    return journal


def gateway_ack(cfg: Any, device_id: str, timeout_s: float = 5.0) -> int | None:
    """The gateway's retained ack for this device, from the broker; None if not reached.

    The journal persists its ack only when it prunes a segment, so after a stop it may lag
    the gateway's: the retained ack is the authority on what is stored."""
    got: list[int] = []

    def on_message(topic: str, payload: bytes) -> None:
        n = parse_ack(payload)
        if topic.endswith("/ack") and n is not None:
            got.append(n)

    transport = PahoTransport.from_config(cfg.mqtt, cfg.mqtt["client_id"] or device_id)
    transport.set_callback(on_message)
    base = f"signet/v1/{device_id}"
    try:
        transport.connect(base + "/status", b"offline")
        transport.subscribe(base + "/ack")
        deadline = time.monotonic() + timeout_s
        while not got and time.monotonic() < deadline:
            transport.poll()
            time.sleep(0.02)
        transport.disconnect()
    except OSError:
        transport.close()
        return None
    return max(got) if got else 0


def check_drained(cfg: Any, journal: Journal, device_id: str) -> int:
    """The highest n the old key journaled, once every record up to it is acknowledged."""
    ack = gateway_ack(cfg, device_id)
    if ack is not None and ack > journal.acked:
        journal.ack(min(ack, journal.last()[0]))
    pending = journal.pending_count
    if pending:
        where = (
            "the broker could not be reached to read the gateway's ack"
            if ack is None
            else f"the gateway's ack is {ack}"
        )
        raise RotateRefused(
            f"the journal holds {pending} record{'s' if pending != 1 else ''} the gateway has "
            f"not acknowledged ({where}; the newest is n={journal.last()[0]}): they must drain "
            "first. Start the agent until `signet agent status` shows pending 0, stop it, "
            "and rotate again"
        )
    return journal.last()[0]


def move_aside(journal_dir: str, old_device_id: str) -> Path:
    """journal.dir -> journal.dir.rotated-<old id>: kept, never deleted."""
    src = Path(journal_dir)
    dest = src.with_name(f"{src.name}.rotated-{old_device_id}")
    if dest.exists():
        raise RotateRefused(f"{dest} exists already: this key was rotated before")
    os.replace(src, dest)
    return dest


def rewrite_config(config_path: Path, key_section: dict[str, Any], old_device_id: str) -> Path:
    """Point the config's key section at the new key; the old config is kept beside it."""
    text = config_path.read_text()
    obj = json.loads(text)
    backup = config_path.with_name(f"{config_path.name}.rotated-{old_device_id}")
    backup.write_text(text)
    obj["key"] = key_section
    tmp = config_path.with_name(config_path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, config_path)
    return backup
