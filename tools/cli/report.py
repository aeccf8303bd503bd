"""`signet report` and `signet export peaq`: MCR inputs from the gateway's store."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from signet_gateway.mcr.display import counted

from .exits import EXIT_OK
from .exits import fail as _fail
from .extras import needs_extra
from .gateway import DEVICE_HELP, add_db_args, gateway_db


class _UsageError(Exception):
    pass


def _open(args: argparse.Namespace) -> tuple[sqlite3.Connection, Callable[[str], int]]:
    """Read-only connection and Store.missing, from --db or --config ([store] path or url).

    The heartbeat tolerance in force is the one the aggregates were built with
    (kept in agg_meta); the report prints it.
    """
    from signet_gateway.config import ConfigError
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store, store_name

    try:
        path, _config = gateway_db(args.db, args.config)
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    try:
        store = Store(path, readonly=True)
    except StoreError as exc:  # no database (`signet db init` makes one), not a Signet one
        raise _UsageError(str(exc)) from None
    except sqlite3.Error as exc:
        raise _UsageError(f"cannot open database {store_name(path)}: {exc}") from None
    if "agg_records" not in store.tables():
        raise _UsageError(
            f"{store_name(path)}: no aggregate tables (not a Signet gateway database?)"
        )
    return store.conn, store.missing


def _period(args: argparse.Namespace):  # noqa: ANN202 - Period imported lazily
    from signet_gateway.mcr.report import Period

    return Period.parse(args.date_from, args.date_to)


def cmd_report(args: argparse.Namespace) -> int:
    from signet_gateway.mcr import report

    try:
        conn, missing = _open(args)
        result = report.build_report(
            conn, device=args.device, period=_period(args), missing=missing
        )
    except (_UsageError, report.ReportError) as exc:
        return _fail(str(exc))
    sys.stdout.write(report.render(result, args.format))
    return EXIT_OK


def _machine_ids(path: Path | None) -> dict[str, int | str]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _UsageError(f"--machine-ids {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int | str) for k, v in data.items()
    ):
        raise _UsageError(f"--machine-ids {path}: expected a JSON object device id -> machine id")
    return {k.lower(): v for k, v in data.items()}


def cmd_export_peaq(args: argparse.Namespace) -> int:
    from signet_gateway.mcr import peaq, report

    try:
        conn, _missing = _open(args)
        result = peaq.export_events(
            conn,
            device=args.device,
            period=_period(args),
            machine_ids=_machine_ids(args.machine_ids),
            metadata_format=args.metadata,
        )
    except (_UsageError, report.ReportError) as exc:
        return _fail(str(exc))
    text = peaq.render(result)
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            Path(args.out).write_text(text)
        except OSError as exc:
            return _fail(f"cannot write {args.out}: {exc.strerror}")
    print(
        f"signet: {result.revenue_events} revenue and "
        f"{counted(result.activity_events, 'activity event')}"
        + (f" to {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    if result.refunds_skipped:
        print(
            f"signet: {counted(len(result.refunds_skipped), 'refund record')} left out: "
            "peaq's value is unsigned (they stay in `signet report`)",
            file=sys.stderr,
        )
    return EXIT_OK


def _source(p: argparse.ArgumentParser) -> None:
    add_db_args(p)
    p.add_argument("--device", help=f"{DEVICE_HELP} (default: every device)")
    p.add_argument(
        "--from",
        dest="date_from",
        metavar="DATE",
        help="first UTC day, YYYY-MM-DD (default: the day of the first record)",
    )
    p.add_argument(
        "--to",
        dest="date_to",
        metavar="DATE",
        help="last UTC day, YYYY-MM-DD (default: the day of the last record)",
    )


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser(
        "report", help="MCR inputs and Signet's indicative score per device (docs/MCR.md)"
    )
    _source(p)
    p.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="(default: table)"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export stored records for other systems")
    what = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    e = what.add_parser("peaq", help="peaq MachineEvent JSON array for batchSubmitEvents")
    needs_extra(e, "gateway")
    _source(e)
    e.add_argument("--out", type=Path, help="write the JSON array to this file (default: stdout)")
    e.add_argument(
        "--machine-ids",
        type=Path,
        help="JSON object: device id -> peaq machineId (default: '0x' + device id)",
    )
    e.add_argument(
        "--metadata",
        choices=("hex", "json"),
        default="hex",
        help="metadata as 0x-hex bytes of JSON (peaq's bytes field, default) or as an object",
    )
    e.set_defaults(func=cmd_export_peaq)
