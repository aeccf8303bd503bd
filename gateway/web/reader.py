"""The console's read-only connections to the gateway database: one per serving thread.

The API never uses the writer's connection (nor takes a lock the writer waits on): each thread
that serves requests opens its own read-only connection on first use and keeps it, so a
request costs no connect and readers never share a connection across threads. A reader sees
the last committed batch and never blocks the writer (SQLite's WAL mode; PostgreSQL's
snapshots, each statement in its own read-only transaction).

A PostgreSQL server that restarted ended those sessions: the request that finds its thread's
session lost is answered 503 (the database cannot be read now), and the next one on that
thread opens a new session (or is answered 503 again while the server is down).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from signet_gateway.store.faults import ENGINE_ERRORS
from signet_gateway.store.sqlite import Store

__all__ = ["Reader"]


class Reader:
    def __init__(self, path: Path | str) -> None:
        self.path = path  # a SQLite file, or a PostgreSQL URL ([store] url)
        self._local = threading.local()
        self._opened: list[Store] = []
        self._lock = threading.Lock()

    def conn(self) -> Any:
        """This thread's read-only connection (opened on first use)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.path, readonly=True)
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        elif getattr(store.conn, "lost", False):
            store.conn.reconnect()  # DatabaseError while the server is down: a 503
        return store.conn

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for store in opened:
            with contextlib.suppress(*ENGINE_ERRORS):
                store.close()
