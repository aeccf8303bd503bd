"""Writing the broker's files: whole or not at all, with the mode they need.

Mosquitto reads the password and ACL files again on SIGHUP, possibly while a re-run writes
them: each file is written beside itself and renamed over the old one, so the broker reads
either the old or the new file, never half of one. A file that exists keeps its group (the
operator's `chgrp mosquitto` survives a re-run).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SECRET = 0o600  # passwords, private keys of the CA and of the clients
BROKER_READS = 0o640  # what Mosquitto (user mosquitto, group of the file) must read
PUBLIC = 0o644


def write_file(path: Path, data: bytes | str, mode: int) -> None:
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chown(tmp, -1, path.stat().st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
