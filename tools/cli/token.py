"""`signet token create | list | revoke`: the bearer tokens of the gateway's HTTP API.

The work is in gateway/web/tokens.py (no web library needed: these run on the base install).
A token is printed once, by `create`; the database keeps only its SHA-256.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from .exits import EXIT_OK
from .exits import fail as _fail
from .gateway import add_db_args, gateway_db


def _run(args: argparse.Namespace, write: bool) -> int:
    from signet_gateway.config import ConfigError
    from signet_gateway.mcr.report import iso_ms
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store, store_name
    from signet_gateway.web import tokens

    try:
        path, _config = gateway_db(args.db, args.config)
        with Store(path, readonly=not write) as store:
            if args.token_command == "create":
                token = tokens.create(store.conn, args.name)
                print(token)
                print(
                    f"token {args.name!r} created in {store_name(path)}: it is shown only now;"
                    " send it as `Authorization: Bearer <token>`",
                    file=sys.stderr,
                )
            elif args.token_command == "revoke":
                revoked = tokens.revoke(store.conn, args.name)
                print(f"revoked token {revoked.name!r} (made {iso_ms(revoked.created_ms)})")
            else:
                _list(tokens.list_tokens(store.conn), args.json, iso_ms)
    except (ConfigError, StoreError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:
        return _fail(f"database error: {exc}")
    return EXIT_OK


def _list(rows: list, as_json: bool, iso_ms) -> None:  # noqa: ANN001 - lazily imported types
    if as_json:
        for t in rows:
            print(
                json.dumps(
                    {
                        "name": t.name,
                        "created_ms": t.created_ms,
                        "revoked_ms": t.revoked_ms,
                        "status": "active" if t.active else "revoked",
                    },
                    sort_keys=True,
                )
            )
        return
    print(f"{'name':24}  {'status':7}  {'created':24}  revoked")
    for t in rows:
        status = "active" if t.active else "revoked"
        print(f"{t.name:24}  {status:7}  {iso_ms(t.created_ms):24}  {iso_ms(t.revoked_ms) or '-'}")


def cmd_token(args: argparse.Namespace) -> int:
    return _run(args, write=args.token_command != "list")


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser(
        "token",
        help="bearer tokens of the gateway's HTTP API (create, list, revoke)",
        description="Bearer tokens for the gateway's HTTP API ([http] in gateway.toml,"
        " docs/GATEWAY.md). Only a token's SHA-256 is stored; a revoked token is refused from"
        " the next request on, without a restart.",
    )
    tk = p.add_subparsers(dest="token_command", required=True, metavar="SUBCOMMAND")
    c = tk.add_parser(
        "create",
        help="make a token and print it once (stdout)",
        description="Make a token (32 random bytes) for NAME and print it on stdout, once:"
        " the database keeps only its hash. One token in force per name. Exit 2 if NAME"
        " has one in force.",
    )
    c.add_argument("--name", required=True, help="who or what holds it (grafana, alice...)")
    add_db_args(c)
    c.set_defaults(func=cmd_token)
    ls = tk.add_parser("list", help="the tokens: name, status, when made and revoked")
    ls.add_argument("--json", action="store_true", help="one JSON object per token")
    add_db_args(ls)
    ls.set_defaults(func=cmd_token)
    r = tk.add_parser(
        "revoke",
        help="revoke the token in force under NAME",
        description="Revoke the token in force under NAME: the API refuses it (401) from the"
        " next request on. Exit 2 if NAME has none in force.",
    )
    r.add_argument("name", help="the token's name")
    add_db_args(r)
    r.set_defaults(func=cmd_token)
