"""A private software TPM 2.0 (swtpm) on free loopback ports, for tests and the virtual fleet.

`swtpm socket --tpm2` with its state in a directory of its own: stop() and start() again keep
that directory, so the TPM's seeds survive (the owner hierarchy's primary key is re-derived
identically, and a key blob created before the restart loads after it), the way a Pi's TPM
keeps them across a reboot. `--flags not-need-init,startup-clear` makes it answer commands
at once, as a TPM after the firmware's TPM2_Startup does.

The swtpm TCTI of tpm2-tss ("swtpm:host=H,port=P") talks TPM commands on port P and the
control channel on P + 1, so the two ports are taken as a consecutive pair.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

from .child_server import ChildServer
from .mosquitto import free_port


class SwtpmError(RuntimeError):
    """swtpm is missing, or did not start or stop as asked."""


class _PortTaken(SwtpmError):
    """The port pair chosen was bound by another process first."""


def find_swtpm() -> str:
    found = shutil.which("swtpm")
    if found:
        return found
    raise SwtpmError("swtpm not found: `./run setup` installs it (apt-get install swtpm)")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_pair(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port P such that P and P + 1 are both free now (the swtpm TCTI's server + control)."""
    for _ in range(attempts):
        port = free_port(host)
        if port < 65535 and _port_free(host, port + 1):
            return port
    raise SwtpmError(f"no two consecutive free TCP ports on {host} after {attempts} tries")


# TPM2_GetRandom(2) as raw bytes (TPM 2.0 Part 3, 16.1): tag TPM_ST_NO_SESSIONS (0x8001),
# commandSize 12, commandCode TPM_CC_GetRandom (0x0000017B), bytesRequested 2. swtpm's
# server socket speaks raw TPM commands, so this proves the TPM itself answers, not only
# that the port listens; the runner needs no TSS for it.
_GET_RANDOM = struct.pack(">HIIH", 0x8001, 12, 0x0000017B, 2)
_TPM_RC_SUCCESS = 0


def tpm_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TPM on host:port answers TPM2_GetRandom with success."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_GET_RANDOM)
            header = b""
            while len(header) < 10:
                chunk = sock.recv(10 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    _tag, _size, rc = struct.unpack(">HII", header)
    return rc == _TPM_RC_SUCCESS


class Swtpm(ChildServer):
    """start() on a port pair; stop() (SIGTERM, then SIGKILL) and start() again keep the state
    directory and the ports; restart() does both. tcti is the tpm2-tss TCTI string."""

    def __init__(self, state_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port or free_port_pair(host)
        # A pair picked here may be taken by someone else before swtpm binds it: then the
        # first start() picks another pair. A restart keeps the pair (the TCTI names it).
        self._may_move = port is None
        self.log = self.state_dir / "swtpm.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:host={self.host},port={self.port}"

    @property
    def ctrl_port(self) -> int:
        return self.port + 1

    def start(self, timeout: float = 10.0) -> Swtpm:
        if self.running:
            return self
        for _attempt in range(3):
            try:
                return self._start(timeout)
            except _PortTaken:
                self.port = free_port_pair(self.host)
        return self._start(timeout)

    def _start(self, timeout: float) -> Swtpm:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                find_swtpm(),
                "socket",
                "--tpm2",
                "--tpmstate",
                f"dir={self.state_dir},mode=0600",
                "--server",
                f"type=tcp,port={self.port},bindaddr={self.host}",
                "--ctrl",
                f"type=tcp,port={self.ctrl_port},bindaddr={self.host}",
                "--flags",
                "not-need-init,startup-clear",
                "--log",
                f"file={self.log},level=1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                why = self._exit_message()
                self._close()
                if self._may_move and "Address already in use" in why:
                    raise _PortTaken(why)
                raise SwtpmError(f"swtpm exited at start: {why}")
            if tpm_answers(self.host, self.port):
                self._may_move = False
                return self
            time.sleep(0.01)  # polling interval, not synchronisation
        self.kill()
        raise SwtpmError(f"swtpm did not answer on {self.host}:{self.port} in {timeout:g}s")
