"""tools/runners/swtpm.py: a private swtpm on a loopback port pair, stopped and restarted with
its state kept; checked with raw TPM commands, without any TSS."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from signet_tools.runners import swtpm as swtpm_runner
from signet_tools.runners.swtpm import Swtpm, SwtpmError, tpm_answers

pytestmark = pytest.mark.timeout(60)


def _get_random(port: int, count: int) -> bytes:
    """TPM2_GetRandom by hand (TPM 2.0 Part 3, 16.1): the response's randomBytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack(">HIIH", 0x8001, 12, 0x17B, count))
        data = b""
        while len(data) < 10 or len(data) < struct.unpack(">I", data[2:6])[0]:
            chunk = sock.recv(4096)
            assert chunk, "swtpm closed the connection"
            data += chunk
    tag, size, rc = struct.unpack(">HII", data[:10])
    assert (tag, size, rc) == (0x8001, 12 + count, 0)
    (length,) = struct.unpack(">H", data[10:12])
    assert length == count
    return data[12 : 12 + count]


def test_start_stop_restart_keep_ports_and_state(tmp_path: Path) -> None:
    tpm = Swtpm(tmp_path / "state")
    assert not tpm_answers(tpm.host, tpm.port)
    with tpm:
        assert tpm.running
        assert tpm.tcti == f"swtpm:host=127.0.0.1,port={tpm.port}"
        assert tpm.ctrl_port == tpm.port + 1  # what the swtpm TCTI expects
        assert len(_get_random(tpm.port, 8)) == 8
        state = tmp_path / "state" / "tpm2-00.permall"
        assert state.is_file()  # the seeds (test_tpm_key: a key blob reloads after restart)
        port, pid = tpm.port, tpm.pid
        tpm.restart()
        assert (tpm.port, tpm.running) == (port, True) and tpm.pid != pid
        assert len(_get_random(tpm.port, 4)) == 4
        assert state.is_file()
    assert not tpm.running
    assert not tpm_answers(tpm.host, tpm.port)


def test_missing_swtpm_is_one_sentence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(swtpm_runner.shutil, "which", lambda name: None)
    with pytest.raises(SwtpmError, match=r"^swtpm not found: `./run setup` installs it"):
        Swtpm(tmp_path).start()


def test_a_port_taken_before_the_start_moves_it_unless_it_was_asked_for(tmp_path: Path) -> None:
    tpm = Swtpm(tmp_path / "a")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", tpm.ctrl_port))  # someone else got there first
        squatter.listen()
        taken = tpm.port
        with tpm:
            assert tpm.port != taken
            assert len(_get_random(tpm.port, 2)) == 2
        with pytest.raises(SwtpmError, match=r"exited at start: .*Address already in use"):
            Swtpm(tmp_path / "b", port=taken).start()
