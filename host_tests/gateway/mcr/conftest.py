"""The aggregate, report and export tests run once per store engine (new_store: SQLite,
then PostgreSQL): every Db a test makes is a new store of that engine."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_aggregate import Db

_DBS = itertools.count()  # a new store per Db, hypothesis's examples included

NewDb = Callable[..., Db]


@pytest.fixture
def new_db(new_store: Callable[[str], Path | str]) -> Iterator[NewDb]:
    """``new_db(tolerance=0.1)``: a Db over a new, empty store of the test's engine (closed
    after the test)."""
    made: list[Db] = []

    def make(tolerance: float = 0.1) -> Db:
        made.append(Db(new_store(f"agg{next(_DBS)}.db"), tolerance))
        return made[-1]

    yield make
    for db in made:
        db.close()


@pytest.fixture
def db(new_db: NewDb) -> Db:
    return new_db()


@pytest.fixture
def two_dbs(new_db: NewDb) -> tuple[Db, Db]:
    """Two Dbs for a hypothesis test, made once for all its examples: each example clears
    them first (Db.clear)."""
    return new_db(), new_db()
