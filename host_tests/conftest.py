"""Fixtures shared by the host tests (helpers to import are in kit/)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kit.gatewaykit import Mqtt
from kit.paths import FIRMWARE_TESTS
from signet_tools.device.micropython import FIRMWARE_LIB, compile_tree
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.postgres import Postgres


@pytest.fixture(scope="session")
def mpy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware package and the firmware test modules, compiled to .mpy.

    Loading .mpy (as a device does) keeps the compiler's own heap use out of
    the 64 KiB MicroPython runs.
    """
    root = tmp_path_factory.mktemp("mpy")
    compile_tree(FIRMWARE_LIB, root)
    compile_tree(FIRMWARE_TESTS, root)
    return root


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port, for one test."""
    mosquitto = Mosquitto(tmp_path / "broker").start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def procs() -> Iterator[tuple[list[GatewayProcess], list[Mqtt]]]:
    """Gateway processes and MQTT clients a test starts: killed and closed after it."""
    started: list[GatewayProcess] = []
    clients: list[Mqtt] = []
    yield started, clients
    for c in clients:
        c.close()
    for g in started:
        g.kill()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    """A private PostgreSQL cluster for the whole session (per xdist worker): started once,
    about a second; each test gets a database of its own in it (pg_url, store_at)."""
    cluster = Postgres().start()
    yield cluster
    cluster.stop()


_PG_DATABASES = itertools.count()


@pytest.fixture
def pg_url(pg_cluster: Postgres) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database for one test (dropped after it)."""
    name = f"test{next(_PG_DATABASES)}"
    url = pg_cluster.new_database(name)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's gateway store goes, once per engine: a SQLite file's path (nothing
    there yet) or the URL of a new, empty PostgreSQL database. Store.create(store_at) or
    `signet db init --db` makes it; Store(store_at) opens it."""
    if request.param == "sqlite":
        return tmp_path / "gateway.db"
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


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
