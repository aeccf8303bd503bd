"""`signet db ...`: the gateway database itself. `init` creates it; no other command does.

Every other command (enroll, devices, revoke, report, export, simulate, gateway run) opens
an existing database only, so a mistyped --db or [store] path is an error naming the file
instead of a second, empty registry.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .exits import EXIT_OK
from .exits import fail as _fail
from .gateway import gateway_db


def cmd_db_init(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError
    from signet_gateway.store.model import StoreError
    from signet_tools.runners.gateway_process import create_gateway_database

    try:
        path, config = gateway_db(args.db, args.config)
        create_gateway_database(path, None if config is None else config.aggregate)
    except (ConfigError, FileNotFoundError, StoreError) as exc:
        return _fail(str(exc))
    print(f"created gateway database {path}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser("db", help="the gateway database: create it (`signet db init`)")
    db = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    i = db.add_parser(
        "init",
        help="create a new, empty gateway database (refused if the file exists);"
        " the only command that creates one",
    )
    # Required (no ./gateway.toml fallback): the file to create is always named.
    where = i.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="gateway.toml: create its [store] path")
    where.add_argument("--db", type=Path, help="create this SQLite database file")
    i.set_defaults(func=cmd_db_init)
