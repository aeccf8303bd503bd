"""Where PostgreSQL's programs are: the one finder for pg_dump, pg_restore, initdb, pg_ctl.

Debian keeps each major version's programs in /usr/lib/postgresql/<major>/bin and puts only
wrappers for the client programs on PATH; the newest version found there is taken (a
pg_dump must be at least as new as the server it dumps), then PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

from .model import StoreError

__all__ = ["DEBIAN_ROOT", "pg_program"]

DEBIAN_ROOT: Final = Path("/usr/lib/postgresql")


def _major(folder: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in folder.name.split("."))
    except ValueError:
        return ()


def pg_program(name: str, root: Path = DEBIAN_ROOT) -> Path:
    """The newest installed ``name`` (initdb, pg_ctl, pg_dump...); StoreError naming the
    package to install if there is none."""
    versions = sorted((d for d in root.glob("*") if _major(d)), key=_major, reverse=True)
    for version in versions:
        program = version / "bin" / name
        if os.access(program, os.X_OK):
            return program
    found = shutil.which(name)
    if found:
        return Path(found)
    raise StoreError(
        f"{name} not found (looked in {root}/<version>/bin and on PATH): `./run setup`"
        " installs PostgreSQL (apt-get install postgresql)"
    )
