"""One agent per journal directory on a Pi: an exclusive OS file lock held for the process's life.

Two agents on one journal would both sign from the same sequence state and fork the chain
(the gateway sees a chain break, each agent's acks are beyond the other's records). The
lock is flock(2) on `agent.lock` in the journal directory, which also holds the holder's
pid for the refusal message. The kernel releases the lock when the process ends, however it
ends (kill -9 included), so a lock file left behind never blocks a restart: only a live
holder does. On a MicroPython board there is one process, so the firmware needs no lock.
"""

from __future__ import annotations

import fcntl
import os

LOCK_NAME = "agent.lock"


class JournalInUse(Exception):
    """Another live process holds the journal directory's lock."""

    def __init__(self, directory: str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"{directory} is in use by another running agent ({holder}, lock {LOCK_NAME})"
        )
        self.directory = directory
        self.pid = pid


class JournalLock:
    """acquire(directory) locks it or raises JournalInUse; release() (or process exit) frees it."""

    def __init__(self, fd: int, path: str) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, directory: str | os.PathLike[str]) -> JournalLock:
        """Raises JournalInUse if a live process holds it, OSError if it cannot be created."""
        path = os.path.join(directory, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise JournalInUse(os.fspath(directory), pid) from None
        except BaseException:
            os.close(fd)
            raise
        # Write the pid before cutting the old content off: a reader in between still finds
        # a whole first line (this pid, or the previous holder's).
        data = f"{os.getpid()}\n".encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        return cls(fd, path)

    def release(self) -> None:
        """Unlock (the file stays: the next holder overwrites the pid)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        first = os.pread(fd, 32, 0).split(b"\n", 1)[0]
        return int(first) if first.strip() else None
    except (OSError, ValueError):
        return None
