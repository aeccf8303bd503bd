"""Store.at_size_limit: a database at its cap is full only while no free page is left in it
(rows deleted leave pages SQLite reuses before the file grows)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from signet_gateway.store.sqlite import Store


def test_at_the_cap_with_free_pages_inside_is_not_full(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "gw.db")
    try:
        store.limit_size(1)
        conn = store.conn
        conn.execute("CREATE TABLE filler (x BLOB)")
        assert not store.at_size_limit()
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for _ in range(1000):
                conn.execute("INSERT INTO filler VALUES (zeroblob(16384))")
        # A 16 KiB row needs several pages at once: fill the last ones a page at a time.
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for _ in range(1000):
                conn.execute("INSERT INTO filler VALUES (zeroblob(3000))")
        assert store.at_size_limit()
        conn.execute("DELETE FROM filler")
        size = store.size_bytes()
        assert not store.at_size_limit()  # the file is as large, but its pages are free
        conn.execute("INSERT INTO filler VALUES (zeroblob(16384))")  # and they take writes
        assert store.size_bytes() == size
    finally:
        store.close()
