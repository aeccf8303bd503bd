"""`signet device ...` (tools/device/board.py): the board-side provisioning script under the
MicroPython unix port, the error paths without a board, and flash/provision/logs end to end
through real mpremote against the unix port attached to a pseudo-terminal (a "board" whose
flash is a temporary directory)."""

from __future__ import annotations

import binascii
import contextlib
import io
import json
import os
import pty
import select
import subprocess
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from signet import keyfile
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.cli.main import main
from signet_tools.device import board as device_cmd
from signet_tools.device.board import Board, DeviceError
from signet_tools.device.manifest import FROZEN_ONLY
from signet_tools.device.micropython import FIRMWARE, FIRMWARE_LIB, run, tool

pytestmark = pytest.mark.timeout(120)

# Read by ec.comb_table beside the modules (the precomputed comb, without its heap cost).
TABLE_FILES = ["comb_p256.bin", "comb_secp256k1.bin"]

BOARD_CONFIG = {
    "wifi": {"ssid": "workshop", "password": "hunter22"},
    "mqtt": {"host": "broker.local", "port": 1883},
    "key": {"type": "file", "path": "placeholder"},
}


# -- the provisioning script itself, on the unix port ------------------------------------


def run_on_unix_port(flash: Path, script: str, tmp: Path) -> str:
    """Run board code with `flash` as the working directory (the board's /), 64 KiB heap."""
    wrapper = tmp / "wrapper.py"
    wrapper.write_text(
        f"import sys, os\nsys.path.insert(0, {str(FIRMWARE_LIB)!r})\nos.chdir({str(flash)!r})\n"
        + script
    )
    result = run(wrapper, heap="64k", timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.micropython
def test_provision_script_generates_keeps_and_replaces(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    script = device_cmd.provision_script("signet.key", "secp256k1", False)
    first = device_cmd.parse_provision_output(run_on_unix_port(flash, script, tmp_path))
    assert first.state == "new" and first.curve == "secp256k1"
    # the key is on the "board" and loads with the host's reading of the same format
    signer = keyfile.load(str(flash / "signet.key"))
    assert signer.device_id == first.device_id
    assert signer.public_key == first.public_key
    assert not (flash / "signet.key.tmp").exists()
    # a second run keeps it: re-provisioning must not change a device's identity
    again = device_cmd.parse_provision_output(run_on_unix_port(flash, script, tmp_path))
    assert (again.state, again.device_id) == ("kept", first.device_id)
    # unless asked to replace it
    script = device_cmd.provision_script("signet.key", "p256", True)
    new = device_cmd.parse_provision_output(run_on_unix_port(flash, script, tmp_path))
    assert new.state == "new" and new.curve == "p256" and new.device_id != first.device_id
    assert keyfile.load(str(flash / "signet.key")).device_id == new.device_id


@pytest.mark.micropython
def test_provision_script_reports_a_corrupt_key(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "signet.key").write_text('{"format": "signet-key/1", "curve": "p256"}')
    out = run_on_unix_port(
        flash, device_cmd.provision_script("signet.key", "p256", False), tmp_path
    )
    with pytest.raises(DeviceError, match="key file on the board is unusable"):
        device_cmd.parse_provision_output(out)


def test_provision_output_is_checked() -> None:
    good = DevicePublicKey.from_pem(_pem_of_new_key())
    pub = binascii.hexlify(good.compressed).decode()
    ok = f"SIGNET-PROVISION new p256 {good.device_id} {pub}"
    assert device_cmd.parse_provision_output("noise\n" + ok + "\n").device_id == good.device_id
    wrong_id = f"SIGNET-PROVISION new p256 {'0' * 32} {pub}"
    with pytest.raises(DeviceError, match="does not match its public key"):
        device_cmd.parse_provision_output(wrong_id)
    with pytest.raises(DeviceError, match="invalid public key"):
        device_cmd.parse_provision_output(f"SIGNET-PROVISION new p256 {good.device_id} 02ff")
    with pytest.raises(DeviceError, match="run `signet device flash` first"):
        device_cmd.parse_provision_output("SIGNET-PROVISION error no_agent ImportError()")
    with pytest.raises(DeviceError, match="no answer"):
        device_cmd.parse_provision_output("Traceback ...")


def _pem_of_new_key() -> bytes:
    from signet.signer import SoftwareSigner

    signer = SoftwareSigner.generate("p256")
    return DevicePublicKey.from_sec1(signer.public_key, "p256").to_pem()


# -- error paths without a board -----------------------------------------------------------


def test_no_board_found(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda: [])
    assert main(["device", "flash", "--no-deps"]) == 2
    err = capsys.readouterr().err
    assert "signet: error: no board found" in err and "--port" in err
    assert main(["device", "logs"]) == 2
    assert "no board found" in capsys.readouterr().err


def test_named_port_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(tmp_path / "ttyUSB9")
    assert main(["device", "flash", "--port", port]) == 2
    assert f"no board at {port}: no such serial port" in capsys.readouterr().err
    template = tmp_path / "t.json"
    template.write_text(json.dumps(BOARD_CONFIG))
    code = main(
        [
            "device",
            "provision",
            "--port",
            port,
            "--config-template",
            str(template),
            "--out-pubkey",
            str(tmp_path / "k.pem"),
        ]
    )
    assert code == 2
    assert "no such serial port" in capsys.readouterr().err
    assert not (tmp_path / "k.pem").exists()


def test_bad_config_is_refused_before_touching_the_board(tmp_path: Path) -> None:
    bad = dict(BOARD_CONFIG, mqtt={"host": "broker.local", "port": "1883"})
    template = tmp_path / "t.json"
    template.write_text(json.dumps(bad))
    calls: list[list[str]] = []
    board = Board("/dev/null", runner=lambda argv, **kw: calls.append(argv))  # type: ignore[arg-type,return-value]
    with pytest.raises(DeviceError, match=r"mqtt\.port: must be an integer"):
        device_cmd.provision(board, "p256", template, tmp_path / "k.pem")
    no_wifi = {k: v for k, v in BOARD_CONFIG.items() if k != "wifi"}
    template.write_text(json.dumps(no_wifi))
    with pytest.raises(DeviceError, match="wifi: is required on a board"):
        device_cmd.provision(board, "p256", template, tmp_path / "k.pem")
    assert calls == []


def test_the_config_is_checked_before_looking_for_a_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from serial.tools import list_ports

    looked: list[str] = []
    monkeypatch.setattr(list_ports, "comports", lambda: looked.append("ports") or [])
    missing = tmp_path / "missing.json"
    assert main(["device", "flash", "--config", str(missing)]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
    not_json = tmp_path / "t.json"
    not_json.write_text("{")
    argv = ["device", "provision", "--config-template", str(not_json), "--out-pubkey"]
    assert main([*argv, str(tmp_path / "k.pem")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert looked == []  # neither looked for a board


class FakePty:
    """A pseudo-terminal whose far end is a process of our choosing (a 'serial device')."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        dev_master, dev_slave = pty.openpty()
        self.master, host_slave = pty.openpty()
        tty.setraw(dev_slave)
        tty.setraw(host_slave)
        self.port = os.ttyname(host_slave)
        self._host_slave = host_slave  # kept open so the pty survives between clients
        self._dev_master = dev_master
        self.proc = subprocess.Popen(
            argv,
            stdin=dev_slave,
            stdout=dev_slave,
            stderr=dev_slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(dev_slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        # What socat would do: copy bytes both ways between the two pty masters.
        fds = [self._dev_master, self.master]
        while not self._stop.is_set():
            readable, _, _ = select.select(fds, [], [], 0.05)
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                other = self.master if fd == self._dev_master else self._dev_master
                with contextlib.suppress(OSError):
                    os.write(other, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.proc.kill()
        self.proc.wait()
        for fd in (self.master, self._host_slave, self._dev_master):
            os.close(fd)


def test_not_micropython_is_detected_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A serial device that answers, but not as MicroPython (a GPS, a modem, another firmware).
    fake = FakePty(["sh", "-c", "while read l; do echo 'AT OK'; done"], tmp_path)
    try:
        assert main(["device", "flash", "--port", fake.port, "--no-deps"]) == 2
    finally:
        fake.close()
    err = capsys.readouterr().err
    assert "does not answer as MicroPython (no raw REPL" in err
    assert "Flash MicroPython first" in err


# -- flash / provision / logs through mpremote, the unix port as the board --------------


@pytest.fixture
def main_py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """firmware/main.py; a stand-in while the device entry point is not in this checkout."""
    if (FIRMWARE / "main.py").exists():
        return FIRMWARE / "main.py"
    stand_in = tmp_path / "firmware"
    stand_in.mkdir()
    (stand_in / "main.py").write_text("import signet.agent\n")
    monkeypatch.setattr(device_cmd, "FIRMWARE", stand_in)
    return stand_in / "main.py"


@pytest.fixture
def unix_board(tmp_path: Path) -> Iterator[tuple[FakePty, Path]]:
    flash = tmp_path / "flash"
    flash.mkdir()
    # sys.path as on a board: the working directory (the board's /) and lib/
    env = dict(os.environ, MICROPYPATH=":lib")
    board = FakePty([tool("micropython"), "-X", "heapsize=256k"], flash, env)
    yield board, flash
    board.close()


@pytest.mark.micropython
def test_flash_and_provision_through_mpremote(
    unix_board: tuple[FakePty, Path],
    main_py: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, flash = unix_board
    config = tmp_path / "config.json"
    config.write_text(json.dumps(BOARD_CONFIG))
    code = main(
        ["device", "flash", "--port", fake.port, "--no-reset", "--no-deps", "--config", str(config)]
    )
    out = capsys.readouterr()
    assert code == 1, out.err  # flashed, but umqtt.simple is missing (not installed here)
    assert "umqtt.simple is missing" in out.out
    modules = [p for p in (FIRMWARE_LIB / "signet").glob("*.py") if p.name not in FROZEN_ONLY]
    on_board = sorted(p.name for p in (flash / "lib" / "signet").iterdir())
    # the modules compiled, and the precomputed comb tables' bytes beside them
    assert on_board == sorted([f"{p.stem}.mpy" for p in modules] + TABLE_FILES)
    for name in TABLE_FILES:
        table = (flash / "lib" / "signet" / name).read_bytes()
        assert table == (FIRMWARE_LIB / "signet" / name).read_bytes()
    assert (flash / "main.py").read_bytes() == main_py.read_bytes()
    assert json.loads((flash / "config.json").read_text()) == BOARD_CONFIG

    template = tmp_path / "template.json"
    template.write_text(json.dumps(BOARD_CONFIG))
    pem = tmp_path / "out" / "device.pem"
    code = main(
        [
            "device",
            "provision",
            "--port",
            fake.port,
            "--no-reset",
            "--curve",
            "p256",
            "--config-template",
            str(template),
            "--out-pubkey",
            str(pem),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    key = DevicePublicKey.from_pem(pem.read_bytes())
    assert f"device id  {key.device_id}" in out.out
    # the private key is on the board only, and it is the one behind the PEM
    signer = keyfile.load(str(flash / "signet.key"))
    assert signer.device_id == key.device_id
    assert signer.curve.name == "p256"
    written = json.loads((flash / "config.json").read_text())
    assert written["key"] == {"type": "file", "path": "signet.key"}
    assert written["mqtt"] == BOARD_CONFIG["mqtt"]
    assert out.out.count(signer.device_id) == 1
    private_hex = binascii.hexlify(signer.private_bytes()).decode()
    assert private_hex not in out.out + out.err + pem.read_text()
    # the agent on the board signs with the precomputed comb, read from the file flashed
    answer = Board(fake.port, reset=False).exec(
        "from signet import ec\nc = ec.curve_by_name('p256')\nt = ec.comb_table(c)\n"
        "print('COMB', t[1], t[2], t[3] is ec._read, t[0][0])"
    )
    assert "COMB 8 4 True <io.FileIO " in answer, answer


@pytest.mark.micropython
def test_flash_with_sources_replaces_stale_files(
    unix_board: tuple[FakePty, Path], main_py: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, flash = unix_board
    stale = flash / "lib" / "signet"
    stale.mkdir(parents=True)
    (stale / "obsolete.py").write_text("raise ImportError('stale')\n")
    code = main(["device", "flash", "--port", fake.port, "--no-reset", "--no-deps", "--py"])
    assert code == 1, capsys.readouterr().err
    assert not (stale / "obsolete.py").exists()
    assert (stale / "agent.py").read_bytes() == (FIRMWARE_LIB / "signet" / "agent.py").read_bytes()
    for name in TABLE_FILES:  # sources or .mpy, the tables' bytes go with them
        assert (stale / name).read_bytes() == (FIRMWARE_LIB / "signet" / name).read_bytes()
    assert not [name for name in FROZEN_ONLY if (stale / name).exists()]


def test_logs_streams_lines(tmp_path: Path) -> None:
    script = tmp_path / "agent_like.py"
    script.write_text(
        "import time\nfor i in range(3):\n    print('agent: line %d' % i)\ntime.sleep(30)\n"
    )
    fake = FakePty([tool("micropython"), str(script)], tmp_path)
    try:
        buf = io.StringIO()
        assert device_cmd.logs(fake.port, out=buf, lines=3) == 3
    finally:
        fake.close()
    assert buf.getvalue().splitlines() == ["agent: line 0", "agent: line 1", "agent: line 2"]
