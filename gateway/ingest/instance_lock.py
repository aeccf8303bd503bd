"""One gateway per database: an OS file lock beside it, held for the life of the service.

Two gateways on one database would share one broker session (the same client id: each
connection takes the session over from the other, both reconnect every second) and both
publish acks. So `signet gateway run` takes ``fcntl.flock`` on ``<database>.lock`` before
anything else and holds it until it exits. The kernel releases the lock when the holding
process ends, however it ends (``kill -9`` too): a file left behind never blocks a restart.

The file carries the holder's pid on its first line (for the refusal message) and the
running gateway's readiness as one JSON object on the second (:meth:`InstanceLock.
write_status`, :func:`read_status`): what the HTTP console serves as ``/readyz``, for
any command to read meanwhile. It is rewritten in place, so saying "store full" needs no
new file on a full disk.

`signet enroll`, `revoke`, `devices` and the reports do not take the lock: they are meant
to run beside the gateway.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["InstanceLock", "InstanceLockError", "lock_path", "read_status"]


class InstanceLockError(RuntimeError):
    """Another gateway holds the database, or the lock file cannot be made (set-up error)."""


def lock_path(database: Path) -> Path:
    return Path(f"{database}.lock")


class InstanceLock:
    """Held from :meth:`acquire` until :meth:`release` or the end of the process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, database: Path) -> InstanceLock:
        path = lock_path(database)
        try:
            # O_CLOEXEC: a child that exec()s (the verifier processes' forkserver) must not
            # inherit the descriptor, or the lock would outlive a gateway killed with -9.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InstanceLockError(f"cannot create the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").split("\n")[0].strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "pid unknown"
            raise InstanceLockError(
                f"database {database} is in use by another gateway ({who}; lock {path}):"
                " one gateway per database, stop the other one first"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise InstanceLockError(f"cannot lock {path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def write_status(self, status: dict[str, Any]) -> bool:
        """Put ``status`` (JSON-able) on the file's second line; False if the write failed
        (a full or read-only disk: the status is a report, never a reason to stop)."""
        if self._fd is None:
            return False
        data = f"{os.getpid()}\n{json.dumps(status, sort_keys=True)}\n".encode()
        try:
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError:
            return False
        return True

    def release(self) -> None:
        """Unlock (the file stays: a leftover file is harmless, see the module doc)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


def read_status(database: Path) -> dict[str, Any] | None:
    """The readiness a running gateway last wrote for this database (with its ``pid``), or
    None when no gateway runs on it (no lock file, no status in it, or its pid is gone)."""
    try:
        text = lock_path(database).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    first, _, rest = text.partition("\n")
    if not first.strip().isdigit() or not rest.strip():
        return None
    pid = int(first)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a gateway that ended (kill -9 too) left its last status behind
    except PermissionError:
        pass  # alive, run by another user (signet-gateway)
    try:
        status = json.loads(rest.splitlines()[0])
    except ValueError:
        return None  # caught between the write and the truncate: read it again
    if not isinstance(status, dict):
        return None
    status["pid"] = pid
    return status
