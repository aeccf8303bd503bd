"""The console's read-only connections to the gateway database: one per serving thread.

The API never uses the writer's connection (nor takes a lock the writer waits on): each thread
that serves requests opens its own ``mode=ro`` connection on first use and keeps it, so a
request costs no connect and readers never share a connection across threads. In WAL mode a
reader sees the last committed batch and never blocks the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from signet_gateway.store.sqlite import Store

__all__ = ["Reader"]


class Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: list[Store] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        """This thread's read-only connection (opened on first use)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.path, readonly=True)
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        return store.conn

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for store in opened:
            with contextlib.suppress(sqlite3.Error):
                store.close()
