"""`signet db ...`: the gateway database itself. `init` creates it; no other command does.
`migrate` (or `init` on an existing database of an older version) brings it to this
version's schema in place (gateway/store/migrate.py). `backup` copies it while the gateway
runs; `restore` writes a backup into a stopped gateway's database (gateway/store/backup.py;
on PostgreSQL gateway/store/pg_backup.py). `copy` moves a SQLite database into PostgreSQL
(gateway/store/copy.py).

Every other command (enroll, devices, revoke, report, export, simulate, gateway run) opens
an existing database only, so a mistyped --db or [store] path is an error naming the file
instead of a second, empty registry.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from signet_gateway.store.schema import SCHEMA_VERSION

from .exits import EXIT_OK, os_error_line
from .exits import fail as _fail
from .gateway import add_db_args, gateway_db, store_arg

if TYPE_CHECKING:
    from signet_gateway.config import GatewayConfig
    from signet_gateway.store.backup import BackupSummary


def cmd_db_init(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError
    from signet_gateway.store.model import StoreError
    from signet_tools.runners.gateway_process import create_gateway_database

    try:
        path, config = gateway_db(args.db, args.config)
        if isinstance(path, str):  # PostgreSQL: the schema in an empty database
            return _init_postgres(path, config)
        if path.exists():  # an older version's database is migrated; a current one refused
            return _migrate(path, refuse_current=True)
        create_gateway_database(path, None if config is None else config.aggregate)
    except (ConfigError, FileNotFoundError, StoreError) as exc:
        return _fail(str(exc))
    print(f"created gateway database {path}")
    return EXIT_OK


def _init_postgres(url: str, config: GatewayConfig | None) -> int:
    from signet_gateway.store.pg_connection import PgConnection, redact, schema_version
    from signet_tools.runners.gateway_process import create_gateway_database

    probe = PgConnection(url)
    try:
        version = schema_version(probe)
    finally:
        probe.close()
    if version is not None:  # as for a file: a gateway database is never made twice
        from signet_gateway.store.model import StoreError

        raise StoreError(
            f"{redact(url)} is a gateway database already (schema version {version}):"
            " a new database is made only in an empty one"
        )
    create_gateway_database(url, None if config is None else config.aggregate)
    print(f"created gateway database {redact(url)} (PostgreSQL, schema version {SCHEMA_VERSION})")
    return EXIT_OK


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError
    from signet_gateway.store.model import StoreError

    try:
        path, _config = gateway_db(args.db, args.config)
        if isinstance(path, str):
            return _migrate_postgres(path)
        return _migrate(path, refuse_current=False)
    except (ConfigError, FileNotFoundError, StoreError) as exc:
        return _fail(str(exc))


def _migrate_postgres(url: str) -> int:
    """PostgreSQL support starts at the current schema: there is nothing older to migrate."""
    from signet_gateway.store.model import StoreOpenError
    from signet_gateway.store.pg_connection import open_postgres

    conn = open_postgres(url, any_version=True)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    finally:
        conn.close()
    if version != SCHEMA_VERSION:
        raise StoreOpenError(
            f"database {conn.where} has schema version {version}: PostgreSQL support starts"
            f" at schema version {SCHEMA_VERSION}, this version of Signet migrates only SQLite"
            " databases"
        )
    print(
        f"database {conn.where} is at schema version {version}: nothing to do (PostgreSQL"
        f" support starts at schema version {SCHEMA_VERSION})"
    )
    return EXIT_OK


def _migrate(path: Path, *, refuse_current: bool) -> int:
    from signet_gateway.ingest.instance_lock import InstanceLock, InstanceLockError
    from signet_gateway.store.migrate import migrate
    from signet_gateway.store.model import StoreError

    if not path.exists():  # (before the lock, which would leave a file beside nothing)
        raise StoreError(f"database {path} does not exist")
    try:  # the gateway's own lock: no gateway (of any version) runs on it while it changes
        lock = InstanceLock.acquire(path)
    except InstanceLockError as exc:
        raise StoreError(str(exc)) from None
    try:
        migration = migrate(path)
    finally:
        lock.release()
    if not migration.changed:
        if refuse_current:
            raise StoreError(
                f"{path} already exists (schema version {migration.to_version}, nothing to"
                " migrate): a new database is made only where there is none"
            )
        print(f"database {path} is at schema version {migration.to_version}: nothing to do")
        return EXIT_OK
    for note in migration.notes:
        print(f"note: {note}")
    print(
        f"migrated gateway database {path} from schema version {migration.from_version}"
        f" to {migration.to_version}"
    )
    return EXIT_OK


def _print_summary(verb: str, path: Path | str, held: BackupSummary) -> None:
    checkpoint = "none" if held.checkpoint is None else str(held.checkpoint)
    print(
        f"{verb} {path}: schema {held.schema}, {held.devices} devices, {held.records} records,"
        f" log {held.log_size} leaves (latest checkpoint {checkpoint}), {held.bytes} bytes"
    )


def cmd_db_backup(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError
    from signet_gateway.store.backup import backup
    from signet_gateway.store.model import StoreError

    try:
        path, config = gateway_db(args.db, args.config)
        if isinstance(path, str):
            from signet_gateway.store import pg_backup

            held = pg_backup.backup(path, args.out)
        else:
            held = backup(path, args.out)
    except (ConfigError, FileNotFoundError, StoreError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    _print_summary("backed up to", args.out, held)
    if config is not None and config.log.key.exists():
        print(f"note: back up the log key {config.log.key} too: it is not in the database")
    return EXIT_OK


def cmd_db_restore(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError
    from signet_gateway.ingest.instance_lock import InstanceLock, InstanceLockError
    from signet_gateway.store.backup import restore
    from signet_gateway.store.model import StoreError

    try:
        path, _config = gateway_db(args.db, args.config)
        if isinstance(path, str):  # PostgreSQL: the gateway does not run on it yet, no lock
            from signet_gateway.store import pg_backup
            from signet_gateway.store.pg_connection import redact

            held = pg_backup.restore(args.backup, path, force=args.force)
            _print_summary("restored", redact(path), held)
            return EXIT_OK
        existed = path.exists()
        try:  # the gateway's own lock: no gateway runs on the database while it is replaced
            lock = InstanceLock.acquire(path) if existed else None
        except InstanceLockError as exc:
            raise StoreError(str(exc)) from None
        try:
            held = restore(args.backup, path, force=args.force)
        finally:
            if lock is not None:
                lock.release()
    except (ConfigError, FileNotFoundError, StoreError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    _print_summary("restored", path, held)
    if held.schema != SCHEMA_VERSION:
        print(f"note: the backup has schema version {held.schema}: run `signet db migrate`")
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace) -> int:
    from signet_gateway.ingest.instance_lock import InstanceLock, InstanceLockError
    from signet_gateway.store.model import StoreError, StoreOpenError

    if not isinstance(args.target, str):
        return _fail(f"--to {args.target}: must be a postgresql:// URL")
    try:
        from signet_gateway.store.copy import copy_to_postgres
        from signet_gateway.store.pg_connection import redact

        if not args.source.exists():
            raise StoreOpenError(f"database {args.source} does not exist")
        try:  # no gateway writes to the source while it is copied
            lock = InstanceLock.acquire(args.source)
        except InstanceLockError as exc:
            raise StoreError(str(exc)) from None
        try:
            copied = copy_to_postgres(args.source, args.target)
        finally:
            lock.release()
    except StoreError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    rows = sum(copied.rows.values())
    print(
        f"copied {args.source} to {redact(args.target)}: {len(copied.rows)} tables, {rows} rows"
        f" ({copied.rows.get('devices', 0)} devices, {copied.rows.get('records', 0)} records),"
        f" log {copied.log_size} leaves (root {copied.log_root.hex()[:16]}...), checked"
    )
    return EXIT_OK


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser(
        "db",
        help="the gateway database: create it (`signet db init`), migrate, back up, restore,"
        " copy it into PostgreSQL",
    )
    db = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    i = db.add_parser(
        "init",
        help="create a new, empty gateway database (the only command that creates one);"
        " an existing one of an older version is migrated, a current one refused",
    )
    # Required (no ./gateway.toml fallback): the file to create is always named.
    where = i.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="gateway.toml: create its [store] path (or url)")
    where.add_argument(
        "--db",
        type=store_arg,
        help="create this SQLite database file, or the gateway's tables in the empty"
        " PostgreSQL database of this postgresql:// URL",
    )
    i.set_defaults(func=cmd_db_init)
    m = db.add_parser(
        "migrate",
        help="bring an existing gateway database to this version's schema, in place",
        description="Migrate the gateway database in place, in one transaction (stop the"
        " gateway first; keep a backup). Version 1 to 2: devices gain machine, rotation and"
        " evidence columns, and a key enrolled as hardware on evidence never verified becomes"
        " software (said on a `note:` line). Version 2 to 3: the transparency log's tables,"
        " and every stored record appended to the log in the order received. Nothing to do"
        " on a current database (exit 0). PostgreSQL databases start at the current version:"
        " nothing to migrate.",
    )
    add_db_args(m)
    m.set_defaults(func=cmd_db_migrate)
    b = db.add_parser(
        "backup",
        help="copy the gateway database to a new file, while the gateway runs",
        description="Copy a consistent snapshot of the gateway database (SQLite's online"
        " backup: the gateway keeps writing; on PostgreSQL pg_dump's custom format) to a new"
        " file, checked (SQLite: integrity, schema; PostgreSQL: pg_restore --list) and"
        " flushed to disk before it takes its name; an existing file is never overwritten."
        " Back the log key ([log] key) up too: it is not in the database. Exit 0 written; 2"
        " no database, an existing --out, or a damaged copy.",
    )
    add_db_args(b)
    b.add_argument("--out", type=Path, required=True, help="the backup file to create")
    b.set_defaults(func=cmd_db_backup)
    r = db.add_parser(
        "restore",
        help="write a backup into the gateway database (stop the gateway first)",
        description="Write a backup made by `signet db backup` into the gateway database"
        " (created if missing), through SQLite in one transaction. Refused while a gateway"
        " runs on the database, and onto a database holding devices or records unless"
        " --force. On PostgreSQL (a pg_dump backup, --db URL or [store] url): pg_restore and"
        " psql in one transaction, into an empty database, or replacing a gateway database's"
        " tables with --force. Exit 0 restored; 2 refused (nothing changed), a backup that"
        " is damaged or not a Signet database.",
    )
    add_db_args(r)
    r.add_argument("backup", type=Path, help="the backup file")
    r.add_argument(
        "--force", action="store_true", help="replace a database that holds devices or records"
    )
    r.set_defaults(func=cmd_db_restore)
    c = db.add_parser(
        "copy",
        help="move a SQLite gateway database into an empty PostgreSQL database",
        description="Copy every table of a SQLite gateway database (the store's and the"
        " aggregates') into an empty PostgreSQL database, in one transaction, checked before"
        " it commits: each table's row count, and the transparency log's size and root hash,"
        " equal on both sides. Refused while a gateway runs on the SQLite file (stop it"
        " first: records it stored after the copy would not be in it), and onto a database"
        " that holds any table. Then set [store] url. Exit 0 copied; 2 refused (nothing"
        " changed).",
    )
    c.add_argument(
        "--from", dest="source", type=Path, required=True, help="the SQLite gateway database"
    )
    c.add_argument(
        "--to",
        dest="target",
        type=store_arg,
        required=True,
        help="postgresql://user:password@host:port/database: an empty database",
    )
    c.set_defaults(func=cmd_db_copy)
