"""The ingest tests run once per store engine (store_at: SQLite, then PostgreSQL)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signet_tools.runners.postgres import Postgres

_MORE = itertools.count()


@pytest.fixture
def new_store(
    store_at: Path | str, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Path | str]]:
    """Where a test's stores go, once per engine: ``new_store("g.db")`` is a SQLite file's
    path beside store_at, or a new, empty PostgreSQL database's URL (the first one
    store_at's, more made in the session's cluster: left there, as dropping each costs
    more than making it, and the cluster goes at the end of the session; the connections
    a test left open to them are ended after it, so that a failed test's do not use up
    the cluster's connection slots for the next ones). The same name gives the same
    place."""
    if isinstance(store_at, Path):
        yield lambda name: store_at.parent / name
        return
    cluster: Postgres = request.getfixturevalue("pg_cluster")
    given: dict[str, str] = {}
    made: list[str] = []

    def place(name: str) -> str:
        if name not in given:
            if not given:
                given[name] = store_at
            else:
                made.append(f"more{next(_MORE)}")
                given[name] = cluster.new_database(made[-1])
        return given[name]

    yield place
    if made:
        with cluster.admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                (made,),
            )
