"""What every server these runners start has in common: the child process, its log file,
a clean stop (SIGTERM, SIGKILL if it does not end in time), a crash (kill), a restart that
keeps its state, and use as a context manager. Subclasses start it (start()) and say how
a stop is asked for if SIGTERM alone is not enough (_after_sigterm)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self


class ChildServer:
    log: Path
    _proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Self:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited (None while it runs, or when never started)."""
        return self._proc.poll() if self._proc is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        """Clean stop: SIGTERM (the server saves its state and exits), SIGKILL if it does
        not within timeout."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            self._after_sigterm()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._close()

    def _after_sigterm(self) -> None:
        """Hook: what must follow SIGTERM for the process to act on it."""

    def kill(self) -> None:
        """Crash: SIGKILL; whatever it had not saved is gone."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()
        self._close()

    def restart(self) -> None:
        """stop() and start() again: the same state directory and ports."""
        self.stop()
        self.start()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def _exit_message(self) -> str:
        """What a process that exited at start said: its stderr and its log's last lines."""
        assert self._proc is not None
        err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
        return f"{err.strip()} {self.log_tail()}".strip()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
