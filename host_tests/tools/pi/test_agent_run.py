"""tools/pi/run.py + tools/pi/platform.py: start-up refusals, reset causes, sd_notify."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest

from kit.paths import REPO
from signet import config as config_mod
from signet.agent import Agent
from signet.fsio import Files
from signet_tools.cli.main import main
from signet_tools.pi import kernel_clock
from signet_tools.pi.keys import KeyUnusable, load_key
from signet_tools.pi.platform import PiPlatform
from signet_tools.pi.run import StartError, build, load_config
from signet_tools.records import keygen


def write_config(d: Path, **over: object) -> Path:
    cfg = {
        "mqtt": {"host": "127.0.0.1", "port": 1},
        "key": {"path": "dev.key"},
        "journal": {"dir": "journal"},
        "sources": [{"type": "local", "path": "agent.sock"}],
    }
    cfg.update(over)
    path = d / "agent.json"
    path.write_text(json.dumps(cfg))
    return path


def test_example_config_loads() -> None:
    cfg = load_config(REPO / "deploy" / "agent.example.json")
    assert cfg.sources[0]["path"] == "/run/signet/agent.sock"
    assert "change-me" not in repr(cfg)  # the password is masked


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    assert cfg.key["path"] == str(tmp_path / "dev.key")
    assert cfg.journal["dir"] == str(tmp_path / "journal")
    assert cfg.sources[0]["path"] == str(tmp_path / "agent.sock")


def test_journal_dir_must_be_set_on_a_pi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unset, the board default /journal made the agent create a directory at the filesystem
    root; a Pi's config must name its journal directory."""
    keygen.generate("p256", tmp_path / "dev.key")
    for journal in ({}, {"segments": 32}):
        cfg = {
            "mqtt": {"host": "127.0.0.1", "port": 1},
            "key": {"path": "dev.key"},
            "sources": [{"type": "local", "path": "agent.sock"}],
        }
        if journal:
            cfg["journal"] = journal
        path = tmp_path / "agent.json"
        path.write_text(json.dumps(cfg))
        with pytest.raises(StartError, match=r"^journal\.dir: must be set on a Pi"):
            load_config(path)
        assert main(["agent", "run", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("signet: error: journal.dir: must be set on a Pi")
        assert err.count("\n") == 1


def test_a_config_that_is_not_text_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.json"
    path.write_bytes(b"\xd0\xcf\x11\xe0 not text")
    assert main(["agent", "run", "--config", str(path)]) == 2
    assert main(["agent", "status", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"signet: error: config: {path} is not a JSON text file (not UTF-8)\n" * 2


def test_key_file_must_be_private(tmp_path: Path) -> None:
    with pytest.raises(KeyUnusable, match=r"no key file at .*signet keygen --out"):
        load_key(str(tmp_path / "dev.key"))
    keygen.generate("p256", tmp_path / "dev.key")
    os.chmod(tmp_path / "dev.key", 0o640)
    with pytest.raises(
        KeyUnusable, match=r"mode 0640\); the private key must be private: chmod 600"
    ):
        load_key(str(tmp_path / "dev.key"))
    os.chmod(tmp_path / "dev.key", 0o600)
    assert load_key(str(tmp_path / "dev.key")).curve.name == "p256"


def test_run_refuses_to_start_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, mqtt={"host": "127.0.0.1", "port": "x"})
    assert main(["agent", "run", "--config", str(path)]) == 2
    assert (
        "signet: error: mqtt.port: must be an integer 1..65535, got 'x'" in capsys.readouterr().err
    )
    path = write_config(
        tmp_path, sources=[{"type": "pulse", "pin": 4, "value": 50, "currency": "EUR"}]
    )
    assert main(["agent", "run", "--config", str(path)]) == 2
    assert "sources[0].type: 'pulse' needs a MicroPython board" in capsys.readouterr().err
    path = write_config(tmp_path)
    assert main(["agent", "run", "--config", str(path)]) == 2
    assert "key.path: no key file" in capsys.readouterr().err


def test_build_refuses_a_socket_another_agent_serves(tmp_path: Path) -> None:
    keygen.generate("p256", tmp_path / "dev.key")
    cfg = load_config(write_config(tmp_path))
    first = build(cfg)
    try:
        other_journal = write_config(tmp_path, journal={"dir": "journal2"})
        with pytest.raises(StartError, match=r"sources\[0\]\.path: .*already serving"):
            build(load_config(other_journal))
    finally:
        first.close()


def test_reset_cause_from_marker_and_boot_id(tmp_path: Path) -> None:
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("aaaa\n")

    def platform() -> PiPlatform:
        return PiPlatform(tmp_path / "state", boot_id_path=str(boot_id))

    assert platform().reset_cause() == "power_on"  # first start ever
    assert platform().reset_cause() == "unknown"  # same system boot, no clean stop: killed
    p = platform()
    assert p.reset_cause() == "unknown"
    p.mark_clean_stop()
    assert platform().reset_cause() == "soft"
    assert platform().reset_cause() == "unknown"  # the marker is consumed
    boot_id.write_text("bbbb\n")
    assert platform().reset_cause() == "power_on"  # the system rebooted under the agent


SYNCED = (kernel_clock.TIME_OK, 0x2001)  # STA_PLL | STA_NANO, as timesyncd leaves them
UNSYNCED = (kernel_clock.TIME_ERROR, kernel_clock.STA_UNSYNC)  # a Pi before NTP has run


@pytest.mark.parametrize(
    ("status", "synced"),
    [
        (SYNCED, True),
        (UNSYNCED, False),
        ((kernel_clock.TIME_OK, kernel_clock.STA_UNSYNC), False),
        ((kernel_clock.TIME_ERROR, 0), False),  # e.g. STA_CLOCKERR
    ],
)
def test_clock_sync_follows_the_kernel_status(
    tmp_path: Path, status: tuple[int, int], synced: bool
) -> None:
    p = PiPlatform(tmp_path, clock_status=lambda: status)
    assert p.sync_clock() is synced
    assert (p.wall_ms() is not None) is synced


def test_clock_sync_without_the_kernel_judges_by_the_year(tmp_path: Path) -> None:
    p = PiPlatform(tmp_path, clock_status=lambda: None)  # not Linux, or adjtimex forbidden
    assert p.sync_clock() is True and p.wall_ms() is not None


def test_kernel_clock_status_is_read_through_adjtimex() -> None:
    answer = kernel_clock.read_status()  # read only: the machine's clock is not touched
    assert answer is not None, "adjtimex unavailable on this Linux host"
    state, status = answer
    assert 0 <= state <= 5 and status >= 0
    assert kernel_clock.synced(lambda: answer) is (state != 5 and not status & 0x40)


class NoBroker:
    """A transport whose broker is never there (only the boot record matters here)."""

    def set_callback(self, cb: Any) -> None:
        pass


def _boot_record(tmp_path: Path, status: tuple[int, int]) -> dict[str, Any]:
    tmp_path.mkdir()
    cfg = config_mod.parse({"mqtt": {"host": "127.0.0.1"}, "key": {"path": "unused"}})
    platform = PiPlatform(tmp_path, clock_status=lambda: status)
    signer = keygen.generate("p256", tmp_path / "dev.key")
    agent = Agent(cfg, platform, signer, NoBroker(), Files(str(tmp_path)))
    agent.start()
    n, rec = agent.recorder.live
    assert n == 1
    payload: dict[str, Any] = cbor2.loads(cbor2.loads(bytes(rec)).value[2])
    return payload


def test_boot_record_carries_t_when_the_system_clock_is_synced_at_start(
    tmp_path: Path,
) -> None:
    """It was always null on a Pi: the boot record was signed before the first sync."""
    before = time.time_ns() // 1_000_000
    boot = _boot_record(tmp_path / "synced", SYNCED)
    assert boot["k"] == "boot" and before <= boot["t"] <= time.time_ns() // 1_000_000
    assert _boot_record(tmp_path / "unsynced", UNSYNCED)["t"] is None


def test_sd_notify_watchdog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "20000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        p = PiPlatform(tmp_path)
        assert p.watchdog_enabled
        assert p.notify_ready("device x")
        assert sock.recv(100) == b"READY=1\nSTATUS=device x"
        p.feed_watchdog()
        p.feed_watchdog()  # within WatchdogSec/4: not sent again
        assert sock.recv(100) == b"WATCHDOG=1"
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(100)
        monkeypatch.setenv("WATCHDOG_PID", "1")  # pings are expected from another process
        assert not PiPlatform(tmp_path).watchdog_enabled


def test_an_agent_stalled_out_of_memory_exits_1_for_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step out of memory (the recorder's, injected: CPython has no small heap) and
    nothing signed, sent or acked for intervals.stall_s: `signet agent run` exits 1, which
    systemd's Restart=always answers with a fresh process (docs/AGENT.md, "Low memory")."""
    from signet.recorder import Recorder

    def out_of_memory(self: Recorder, now: int) -> None:
        raise MemoryError("memory allocation failed")

    keygen.generate("p256", tmp_path / "dev.key")
    path = write_config(tmp_path, intervals={"stall_s": 1, "loop_ms": 50})  # no broker on port 1
    monkeypatch.setattr(Recorder, "step", out_of_memory)  # after start(): the boot record signs
    started = time.monotonic()
    assert main(["agent", "run", "--config", str(path)]) == 1
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "agent: stalled out of memory: exiting for a restart" in err
    assert "agent: failed" not in err  # an outcome, not a crash
