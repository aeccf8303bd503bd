"""A private Mosquitto on a free loopback port, for tests, benchmarks and the demo.

One way to start a broker everywhere: a generated config in a working
directory, persistence on (so persistent sessions and their queued QoS 1
messages survive a restart, as on an operator's Pi), no queue limit (a
gateway that was down must find its whole backlog), and a log file to show
when something goes wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .child_server import ChildServer

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    """Mosquitto is missing, or did not start or stop as asked."""


def find_mosquitto() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise BrokerError("mosquitto not found: `./run setup` installs it (apt-get install mosquitto)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _listener(conf: Path) -> tuple[int, str]:
    """The port and address of a configuration's first `listener` line (no address: all,
    reached on 127.0.0.1)."""
    for line in conf.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "listener":
            return int(words[1]), words[2] if len(words) > 2 else "127.0.0.1"
    raise BrokerError(f"{conf} has no listener line")


@dataclass(frozen=True)
class BrokerTls:
    """PEM files for a TLS listener; require_certificate asks clients for a certificate."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


class Mosquitto(ChildServer):
    """Start with start(); stop(), kill() and start() again keep port and data; pause() and
    resume() hang it and let it go on (fault injection).

    users: {name: password} turns anonymous access off and writes a password file.
    conf: a configuration written by `signet broker config` (listener, TLS, accounts, ACL),
    used as it is; only persistence and the log are added. reload() is the operator's
    `systemctl reload mosquitto`: SIGHUP, after which it reads the password and ACL files again.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        tls: BrokerTls | None = None,
        users: dict[str, str] | None = None,
        conf: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.conf = None if conf is None else Path(conf)
        if self.conf is not None:  # its listener is the one to wait for
            port, host = _listener(self.conf)
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.users = dict(users or {})
        self.config = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    def _access_lines(self) -> str:
        if not self.users:
            return "allow_anonymous true\n"
        passwd = self.workdir / "passwd"
        passwd.write_text("")
        for name, password in self.users.items():
            subprocess.run(
                [
                    shutil.which("mosquitto_passwd") or "mosquitto_passwd",
                    "-b",
                    passwd,
                    name,
                    password,
                ],
                check=True,
                capture_output=True,
            )
        return f"allow_anonymous false\npassword_file {passwd}\n"

    def _tls_lines(self) -> str:
        if self.tls is None:
            return ""
        return (
            f"cafile {self.tls.cafile}\ncertfile {self.tls.certfile}\nkeyfile {self.tls.keyfile}\n"
            f"require_certificate {'true' if self.tls.require_certificate else 'false'}\n"
        )

    def _listener_lines(self) -> str:
        if self.conf is not None:
            return self.conf.read_text() + "\n"
        return f"listener {self.port} {self.host}\n" + self._tls_lines() + self._access_lines()

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            self._listener_lines() + "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 60\n"
            # 0 = unlimited: a stopped gateway's persistent session keeps its backlog.
            "max_queued_messages 0\n"
            "max_queued_bytes 0\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # As root Mosquitto would drop to user "mosquitto", who cannot write here.
             + ("user root\n" if os.geteuid() == 0 else "")
        )

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    def start(self, timeout: float = 10.0) -> Mosquitto:
        if self.running:
            return self
        self._write_config()
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited at start: {self._exit_message()}")
            if _accepts(self.host, self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not accept connections on port {self.port} in {timeout}s")

    def reload(self) -> None:
        """SIGHUP, as `systemctl reload mosquitto` sends: the configuration is written again
        (conf may have changed) and Mosquitto re-reads it with its password and ACL files."""
        if not self.running:
            raise BrokerError("mosquitto is not running: nothing to reload")
        assert self._proc is not None
        self._write_config()
        self._proc.send_signal(signal.SIGHUP)

    def _after_sigterm(self) -> None:
        if self._paused:  # a stopped process keeps SIGTERM pending until it runs again
            self.resume()

    def pause(self) -> None:
        """Hang: SIGSTOP. Its connections stay open and the kernel still completes new TCP
        handshakes (the listen backlog), but nothing answers: a hung broker, as its clients
        see it. resume() (SIGCONT) lets it go on; stop() and kill() work on it too."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._proc is not None and self._paused:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def _close(self) -> None:
        super()._close()
        self._paused = False
