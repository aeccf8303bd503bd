"""The device agent (firmware/lib/signet/agent.py) under CPython on a Pi: `signet agent run`.

The same Agent class as on a board, with the Pi's platform (pi/platform.py), paho as
transport (pi/paho_transport.py), the journal in a directory, and the Unix-socket source
(pi/local_socket.py) for every `{"type": "local"}` entry in the config's sources.

Config: the board's JSON format, loaded by signet.config (the one loader). Relative paths in
it (key.path, journal.dir, mqtt.tls files, a local source's path) are taken relative to the
config file's directory, so a config and its key can travel together. On a Pi journal.dir
must be given: its default, /journal, is a board's flash root but the filesystem root here.

One agent per journal: build() takes an OS file lock on the journal directory
(pi/journal_lock.py) and holds it for the life of the process.

Outcomes (cli/agent.py turns them into exit statuses 0, 2 and 1): a clean stop on
SIGTERM/SIGINT ("offline" published, clean disconnect, clean-stop marker written so the next
boot record says rc=soft); StartError when it cannot start (config, key file, TLS files,
journal directory, socket, a secure element that fails its self-test with no
key.fallback_path: pi/keys.py); a failure while running, logged with its traceback (systemd restarts
the agent; the journal and the sequence lease make that safe).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from signet import config as config_mod
from signet.agent import Agent
from signet.fsio import Files
from signet.state import StateError

from .journal_lock import JournalInUse, JournalLock
from .keys import SELFTEST_EVENT, KeyUnusable, OpenedKey, open_device_key
from .local_socket import LocalSocketSource
from .paho_transport import PahoTransport
from .platform import PiPlatform


class StartError(Exception):
    """The agent cannot start; the message says what to fix."""


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    return str(base / value) if not os.path.isabs(value) else value


def load_config(path: str | os.PathLike[str]) -> Any:
    """signet.config.loads, with relative paths resolved against the config's directory and
    the Pi's own rules: journal.dir given, only local sources."""
    try:
        text = Path(path).read_bytes().decode()
    except OSError as exc:
        raise StartError(f"config: cannot read {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise StartError(f"config: {path} is not a JSON text file (not UTF-8)") from None
    try:
        cfg = config_mod.loads(text)
    except config_mod.ConfigError as exc:
        raise StartError(str(exc)) from None
    if "dir" not in json.loads(text).get("journal", {}):  # valid JSON: loads() took it
        raise StartError(
            "journal.dir: must be set on a Pi (the default /journal would be created at the "
            'filesystem root); e.g. "journal": {"dir": "/var/lib/signet-agent/journal"}'
        )
    base = Path(path).resolve().parent
    cfg.key["path"] = _resolve(base, cfg.key["path"])
    if cfg.key.get("fallback_path") is not None:
        cfg.key["fallback_path"] = _resolve(base, cfg.key["fallback_path"])
    cfg.journal["dir"] = _resolve(base, cfg.journal["dir"])
    tls = cfg.mqtt["tls"]
    if tls:
        for name in ("ca", "cert", "key"):
            tls[name] = _resolve(base, tls[name])
    for i, src in enumerate(cfg.sources):
        if src["type"] != "local":
            raise StartError(
                f"sources[{i}].type: {src['type']!r} needs a MicroPython board's pins; on a "
                "Pi feed revenue through a 'local' source (signet agent record, or the socket)"
            )
        src["path"] = _resolve(base, src["path"])
    return cfg


def check_tls_files(tls: dict[str, Any] | None) -> None:
    """Every configured TLS file readable and loadable now, named by its key: otherwise the
    agent would start and then fail every connect attempt, forever, with a vaguer cause."""
    if not tls:
        return
    for name in ("ca", "cert", "key"):
        path = tls[name]
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise StartError(f"mqtt.tls.{name}: cannot read {path} ({exc.strerror})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls["ca"] is not None:
        try:
            context.load_verify_locations(cafile=tls["ca"])
        except ssl.SSLError as exc:
            raise StartError(
                f"mqtt.tls.ca: {tls['ca']} holds no PEM CA certificate ({exc.reason})"
            ) from None
    if tls["cert"] is not None:
        try:
            context.load_cert_chain(tls["cert"], tls["key"])
        except ssl.SSLError as exc:
            raise StartError(
                f"mqtt.tls.cert: {tls['cert']} and mqtt.tls.key {tls['key']} are not a PEM "
                f"certificate and its private key ({exc.reason})"
            ) from None


# A secure element that failed its self-test with no fallback key: how long the agent
# tries to deliver the evt that says so before it stops.
REFUSED_DELIVERY_S = 10.0
# The fallback key's journal and sequence state, inside journal.dir: its own chain, apart
# from the records of the chip's key (which stay until the chip works again).
FALLBACK_JOURNAL = "fallback"


@dataclass
class Runtime:
    agent: Agent
    platform: PiPlatform
    sources: list[LocalSocketSource]
    lock: JournalLock
    key: OpenedKey

    def close(self) -> None:
        """Close the local sockets and release the journal lock."""
        for src in self.sources:
            src.close()
        self.lock.release()


def _key_failure(kind: str, key: OpenedKey) -> str:
    part = {"atecc608": "ATECC608", "tpm2": "TPM"}.get(kind, kind)
    return (
        f"key: the {part} failed its start self-test ({key.event_message()}) and "
        "key.fallback_path is not set: the agent does not start (docs/TRUST.md)"
    )


def build(cfg: Any, i2c: Any = None) -> Runtime:
    """Everything the agent needs, from a loaded config. StartError on any problem.

    i2c: the ATECC608's bus instead of key.i2c.bus (tests, the virtual fleet)."""
    try:
        key = open_device_key(cfg.key, i2c)
    except KeyUnusable as exc:
        raise StartError(str(exc)) from None
    if key.refused and key.signer is None:  # nothing can even say so in a signed evt
        raise StartError(_key_failure(cfg.key["type"], key))
    signer = key.signer
    check_tls_files(cfg.mqtt["tls"])
    journal_dir = cfg.journal["dir"]
    try:
        os.makedirs(journal_dir, mode=0o700, exist_ok=True)
        # Before anything reads or writes the journal's state (the reset-cause files too).
        lock = JournalLock.acquire(journal_dir)
    except JournalInUse as exc:
        raise StartError(f"journal.dir: {exc}; stop it first (one agent per journal)") from None
    except OSError as exc:
        raise StartError(f"journal.dir: cannot use {journal_dir}: {exc.strerror}") from None
    sources: list[LocalSocketSource] = []
    try:
        try:
            if key.selftest_error is not None and not key.refused:
                files = Files(os.path.join(journal_dir, FALLBACK_JOURNAL), sync=True)
            else:
                files = Files(journal_dir, sync=True)
            # Probe writability now, with a clear message, rather than at the first record.
            probe = os.path.join(journal_dir, ".write-test")
            with open(probe, "wb"):
                pass
            os.remove(probe)
        except OSError as exc:
            raise StartError(f"journal.dir: cannot use {journal_dir}: {exc.strerror}") from None
        platform = PiPlatform(journal_dir)
        transport = PahoTransport.from_config(cfg.mqtt, signer.device_id)
        for i, src in enumerate(cfg.sources):
            try:
                sources.append(LocalSocketSource(src["path"], src["src"], platform.log).open())
            except OSError as exc:
                raise StartError(
                    f"sources[{i}].path: {src['path']}: {exc.strerror or exc}"
                ) from None
    except BaseException:
        for s in sources:
            s.close()
        lock.release()
        raise
    for s in sources:
        platform.add_fd_source(s.fds)
    platform.add_fd_source(lambda: [transport.fileno()])
    agent = Agent(cfg, platform, signer, transport, files, sources, key.counter)
    return Runtime(agent, platform, sources, lock, key)


def report_key_failure(rt: Runtime) -> None:
    """After start(): sign the evt naming a failed self-test (fallback key or the chip's own).

    Refused (no fallback): try for REFUSED_DELIVERY_S to deliver it, then StartError."""
    key, agent, platform = rt.key, rt.agent, rt.platform
    if key.selftest_error is None:
        return
    msg = key.event_message()
    platform.log(f"agent: key self-test failed: {key.selftest_error}")
    try:
        agent.record_event(SELFTEST_EVENT, msg)
    except Exception as exc:  # a full journal: the log line above still says it
        platform.log(f"agent: could not sign {SELFTEST_EVENT}: {exc!r}")
    if not key.refused:
        platform.log(f"agent: signing with the software key {rt.agent.config.key['fallback_path']}"
                     " (tier software) instead")  # fmt: skip
        return
    deadline = time.monotonic() + REFUSED_DELIVERY_S
    journal = agent.recorder.journal
    while journal.acked < agent.recorder.last_n and time.monotonic() < deadline:
        wait = agent.step()
        if wait:
            platform.sleep_ms(min(wait, 100))
    agent.stop()
    raise StartError(_key_failure(agent.config.key["type"], key))


def run(config_path: str | os.PathLike[str]) -> bool:
    """Run until SIGTERM/SIGINT: True after a clean stop, False if the agent failed while
    running (logged). Raises StartError when it cannot start."""
    rt = build(load_config(config_path))
    agent, platform = rt.agent, rt.platform

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    # A signal also writes a byte here, which ends the select() in sleep_ms at once.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    platform.add_fd_source(lambda: [wake_r.fileno()])
    try:
        try:
            agent.start()
        except (StateError, OSError) as exc:
            raise StartError(f"journal.dir: cannot recover state: {exc}") from None
        report_key_failure(rt)
        mq = agent.config.mqtt
        platform.log(
            f"agent: device {agent.signer.device_id} boot {agent.recorder.boot} "
            f"rc={platform.reset_cause()} last_n={agent.stats['last_n']} "
            f"broker {mq['host']}:{mq['port']} journal {agent.config.journal['dir']}"
        )
        for src in rt.sources:
            platform.log(f"agent: local socket {src.path} (mode 0660)")
        platform.notify_ready(f"device {agent.signer.device_id}")
        if not agent.run():
            # Stalled: every step out of memory, no progress for intervals.stall_s
            # (docs/AGENT.md, "Low memory"). Exit 1: systemd starts a fresh process.
            platform.log("agent: stalled out of memory: exiting for a restart")
            return False
        platform.notify_stopping()
        platform.log("agent: stopping (signal)")
        agent.stop()
        platform.mark_clean_stop()
        platform.log(f"agent: stopped cleanly after {agent.recorder.signed} records this run")
        return True
    except StartError:
        raise
    except Exception:
        platform.log("agent: failed:\n" + traceback.format_exc())
        return False
    finally:
        rt.close()
        signal.set_wakeup_fd(old_wakeup)
        for s, handler in previous.items():
            signal.signal(s, handler)
        wake_r.close()
        wake_w.close()
