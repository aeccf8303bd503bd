"""The store's write generation: how a process notices that another one wrote.

What a gateway worker keeps in memory between its transactions (the sequencer's state per
device, the transparency log's tree, the enrolled keys) is a cache of the database, right
only while nobody else writes. On PostgreSQL several workers and the `signet` commands
write one database, so every write transaction increments one counter in ``meta`` under
the write lock it holds (``bump``, one statement, its new value returned): a process whose
bump returns anything other than its own last value + 1 knows that another process wrote
in between, and drops its caches before applying anything. One worker alone never does.

SQLite counts nothing (``counts_generations`` False on its engine): one gateway process
holds the file (ingest/instance_lock.py), and the commands' enrollments are noticed with
SQLite's own free counter (``PRAGMA data_version``, ingest/enrollment.py), so the extra
page written per commit would buy nothing there.

The row is made by the first bump (databases made before it have none): ``read`` gives 0
until then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = ["BUMP", "KEYS_BUMP", "Generations", "bump", "keys_changed", "read"]


def _counter(name: str) -> str:
    return (
        f"INSERT INTO meta (key, value) VALUES ('{name}', '1') ON CONFLICT (key)"
        " DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT) RETURNING value"
    )


BUMP: Final = _counter("generation")
# The keys' own counter: bumped by every change of an enrolled key or its limits (enroll,
# rotate, revoke: Store), so that a worker reloads the keys when they changed rather than
# whenever another worker stored records (ingest/enrollment.py).
KEYS_BUMP: Final = _counter("keys")


def bump(conn: Any) -> int:
    """Increment the generation inside the open write transaction; its new value."""
    return int(conn.execute(BUMP).fetchone()[0])


def keys_changed(conn: Any) -> None:
    """Say, inside the open write transaction, that it changes the enrolled keys."""
    conn.execute(KEYS_BUMP).fetchone()


def read(conn: Any, name: str = "generation") -> int:
    """The committed value of a counter (0: never bumped): the generation, or ``keys``."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


class Generations:
    """One process's view of the generation on its write connection, shared by the caches
    kept over that connection (the writer's sequencer, the log's tree, the key registry):
    each registers what it does when another process wrote (``on_foreign_write``).

    ``begin`` (inside a write transaction, under the lock: the authoritative check) and
    ``check`` (between transactions: a cheap read, so that a command's enrollment is seen
    before the next batch is verified) call them; ``committed`` after COMMIT makes the
    transaction's value this process's own. ``reloads`` counts how often caches were
    dropped. On SQLite (no generations) every method does nothing.
    """

    def __init__(self, conn: Any) -> None:
        from .sqlite import engine_of  # sqlite.py imports this module

        self.conn = conn
        self.counts: bool = engine_of(conn).counts_generations
        self.mine = read(conn) if self.counts else 0  # after this process's last look
        self.reloads = 0
        self.last = 0  # the value this process's last commit bumped the generation to
        self._bumped = 0  # the value the open transaction bumped it to
        self._pending: int | None = None
        self._seen = self.mine  # read by begin_batch
        self._forget: list[Callable[[], None]] = []

    def on_foreign_write(self, forget: Callable[[], None]) -> None:
        self._forget.append(forget)

    def begin(self) -> None:
        """Just after BEGIN: bump, and drop the caches if someone else wrote since."""
        if self.counts:
            value = bump(self.conn)
            if value != self.mine + 1:
                self.mine = value - 1  # seen: a retry of this transaction drops nothing more
                self._foreign()
            self._pending = self._bumped = value

    def begin_batch(self) -> None:
        """A writer's batch, just after its devices' locks (pg_connection.PostgresEngine
        .begin_batch): drop the caches if anyone committed since this process's last look.
        Then the locked devices' cached state is what is stored: whoever wrote one of them
        held its lock, so committed, generation bumped, before this one got it."""
        if self.counts:
            value = read(self.conn)
            if value != self.mine:
                self.mine = value
                self._foreign()
            self._seen = value

    def before_commit(self) -> None:
        """A writer's batch, under the commit lock, just before COMMIT: bump. Others that
        committed since ``begin_batch`` wrote devices this batch did not lock: caches of
        those may be stale, so the next batch drops them (``mine`` is left behind)."""
        if self.counts:
            value = self._bumped = bump(self.conn)
            self._pending = value if value == self._seen + 1 else self._seen

    def committed(self) -> None:
        if self._pending is not None:
            self.mine, self._pending = self._pending, None
            self.last = self._bumped

    def rolled_back(self) -> None:
        self._pending = None  # the bump was rolled back with the rest

    def check(self) -> None:
        """Between transactions: drop the caches now if someone else wrote since."""
        if self.counts:
            value = read(self.conn)
            if value != self.mine:
                self.mine = value
                self._foreign()

    def reconnected(self) -> None:
        """The connection's session was lost and made again (pg_connection.reconnect): what
        was kept over the old one may be stale (a COMMIT whose answer was lost may have
        committed; others wrote meanwhile), so drop it all as after a foreign write, then
        take the committed generation as this process's last look."""
        self._pending = None
        self._foreign()
        if self.counts:
            self.mine = read(self.conn)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction on the connection (the engine's BEGIN, the bump, COMMIT or
        ROLLBACK): the log keeper's, so that its writes count as this process's own."""
        return _transaction(self)

    def _foreign(self) -> None:
        self.reloads += 1
        for forget in self._forget:
            forget()


@contextlib.contextmanager
def _transaction(gens: Generations) -> Iterator[None]:
    from .sqlite import engine_of

    conn = gens.conn
    conn.execute(engine_of(conn).begin)
    try:
        gens.begin()
        yield
        conn.execute("COMMIT")
    except BaseException:
        gens.rolled_back()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    gens.committed()
