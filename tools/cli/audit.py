"""`signet audit export | verify | records`: audit bundles and the raw records (docs/AUDIT.md).

The work is in gateway/audit/; this module parses, reads and writes files, and prints.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from signet_tools.runners.atomic_file import write_atomically

from .args import positive_int, positive_seconds
from .exits import EXIT_OK, EXIT_REFUSED, os_error_line
from .exits import fail as _fail
from .gateway import DEFAULT_CONFIG, DEVICE_HELP, add_db_args, gateway_db

PROGRESS_MIN = 10_000  # records: smaller bundles verify before a bar would help


def cmd_export(args: argparse.Namespace) -> int:
    from signet_gateway.audit import bundle as bundle_format
    from signet_gateway.audit.export import ExportError, export_bundle
    from signet_gateway.config import ConfigError, load
    from signet_gateway.log import key as log_key
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store, store_name

    try:
        config = load(args.config)
        signer, _made = log_key.open_signer(config.log)
        store = Store(config.store.location)
    except (ConfigError, StoreError, log_key.KeyFileError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    try:
        exported = export_bundle(
            store.conn,
            signer,
            device=args.device,
            day_from=args.date_from,
            day_to=args.date_to,
            max_future_skew_ms=config.time.max_future_skew_s * 1000,
            consistency_from=args.consistency_from,
            consistency_all=args.consistency_all,
        )
    except (ExportError, StoreError) as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:  # locked beyond the busy timeout, a damaged file
        return _fail(f"database {store_name(config.store.location)}: {exc}")
    finally:
        store.close()
    data = bundle_format.encode(exported.bundle)
    try:
        write_atomically(args.out, data, private=False)
    except OSError as exc:
        return _fail(f"cannot write {args.out}: {exc.strerror}")
    b = exported.bundle
    print(
        f"wrote {args.out}: {len(b.records)} records of device {exported.device}, checkpoint"
        f" size {exported.size}, {len(b.consistency)} consistency proofs, {len(data)} bytes",
        file=sys.stderr,
    )
    return EXIT_OK


class _ProgressBar:
    """Records checked so far, on one terminal line of stderr."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN:
            return
        width = 30
        filled = width * done // total
        sys.stderr.write(
            f"\rverifying records [{'#' * filled}{'.' * (width - filled)}]"
            f" {done:,}/{total:,} ({100 * done // total}%)"
        )
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _read_key(text: str) -> str:
    """--gateway-key: the key itself, or a file holding it."""
    path = Path(text)
    return path.read_text() if path.is_file() else text


def cmd_verify(args: argparse.Namespace) -> int:
    from signet_gateway.audit.verify import (
        GatewayKeyError,
        default_jobs,
        parse_gateway_key,
        verify_bundle,
    )

    try:
        key = parse_gateway_key(_read_key(args.gateway_key))
    except (GatewayKeyError, OSError, UnicodeDecodeError) as exc:
        return _fail(f"--gateway-key: {exc}")
    try:
        data = args.file.read_bytes()
        given = [(str(p), p.read_bytes()) for p in args.checkpoint]
    except OSError as exc:
        return _fail(f"cannot read {exc.filename}: {exc.strerror}")
    bar = _ProgressBar() if sys.stderr.isatty() and not args.json else None
    try:
        outcome = verify_bundle(data, key, given, jobs=args.jobs or default_jobs(), progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps({"bundle": str(args.file), **outcome.as_json()}, sort_keys=False))
    elif outcome.ok:
        _print_ok(args.file, outcome.as_json())
    if outcome.failure is not None:
        if not args.json:
            print(f"signet: {args.file}: {outcome.failure.message}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _print_ok(path: Path, result: dict[str, Any]) -> None:
    period = result["period"] or {}
    print(f"bundle      {path}: every check passed")
    print(f"log         {result['origin']}, checkpoint size {result['checkpoint']['size']}")
    print(
        f"device      {result['device']}, period {period.get('from') or 'first record'} to"
        f" {period.get('to') or 'as of'}"
    )
    print(f"records     {result['records']}: signatures, sequence, inclusion proofs, receipts")
    print("figures     every figure of the signed report recomputed and equal")
    if result["consistency_proofs"]:
        print(f"consistency {result['consistency_proofs']} earlier checkpoints extended")
    for line in result["checkpoints_compared"]:
        print(f"compared    {line}")


def cmd_records(args: argparse.Namespace) -> int:
    from signet_gateway.audit.stored_records import machine_records
    from signet_gateway.config import ConfigError
    from signet_gateway.mcr.report import ReportError
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store

    if args.out is None and sys.stdout.isatty():
        return _fail(
            "refusing to write binary records to a terminal: give --out FILE or redirect"
            " stdout to a file"
        )
    try:
        path, _config = gateway_db(args.db, args.config)
        store = Store(path, readonly=True)
    except (ConfigError, StoreError, FileNotFoundError) as exc:
        return _fail(str(exc))
    try:
        machine, raws = machine_records(store.conn, args.device)
        records = list(raws)
    except ReportError as exc:
        return _fail(str(exc))
    finally:
        store.close()
    data = b"".join(records)
    try:
        if args.out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            write_atomically(args.out, data, private=False)
    except OSError as exc:
        return _fail(f"cannot write {args.out or 'stdout'}: {exc.strerror}")
    print(f"signet: {len(records)} records of device {machine}", file=sys.stderr)
    return EXIT_OK


def cmd_bench_audit(args: argparse.Namespace) -> int:
    from signet_tools.bench import audit as bench_audit

    result = bench_audit.run(records=args.records, raw_seconds=args.raw_seconds)
    print(bench_audit.format_report(result))
    return EXIT_OK if result.ok else EXIT_REFUSED


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser(
        "audit",
        help="audit bundles: export, verify offline; the raw stored records (docs/AUDIT.md)",
    )
    what = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    e = what.add_parser(
        "export",
        help="one machine's audit bundle: records, proofs, checkpoint, signed report",
        description="Write a machine's audit bundle: its records with an inclusion proof each,"
        " its keys and evidence, the attested findings, a checkpoint of the log signed now"
        " and the period report signed with the log's key and bound to it. Exit 0 written;"
        " 2 a set-up error (no log key, an unknown device, records not in the log yet).",
    )
    e.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the gateway's configuration: [store] path, [log] key and origin, [time]"
        f" (default: ./{DEFAULT_CONFIG})",
    )
    e.add_argument("--device", required=True, help=DEVICE_HELP)
    e.add_argument(
        "--from",
        dest="date_from",
        metavar="DATE",
        help="first UTC day, YYYY-MM-DD (default: the day of the first record)",
    )
    e.add_argument(
        "--to",
        dest="date_to",
        metavar="DATE",
        help="last UTC day, YYYY-MM-DD (default: the day of the last record)",
    )
    e.add_argument("--out", type=Path, required=True, help="the bundle file to write")
    e.add_argument(
        "--consistency-from",
        type=positive_int,
        action="append",
        default=[],
        metavar="SIZE",
        help="add a consistency proof from the stored checkpoint of this tree size; repeat for"
        " several (default: none)",
    )
    e.add_argument(
        "--consistency-all",
        action="store_true",
        help="add a consistency proof from every stored earlier checkpoint",
    )
    e.set_defaults(func=cmd_export)

    v = what.add_parser(
        "verify",
        help="check a bundle offline: signatures, proofs, checkpoints, every figure",
        description="Check an audit bundle with nothing but the log's public key: every"
        " record's signature and encoding, sequence rules, inclusion proof, the checkpoint's"
        " and the report's signatures, consistency proofs, the checkpoints given, then every"
        " figure of the signed report recomputed from the records. Exit 0 if all match; 1"
        " naming the first bad record or figure; 2 a usage error.",
    )
    v.add_argument("file", type=Path, help="the bundle (`signet audit export`)")
    v.add_argument(
        "--gateway-key",
        required=True,
        metavar="KEY",
        help="the log's verifier key (as `signet gateway key` prints it) or a file holding"
        " it, or its PEM public key file (`signet gateway key --pem`)",
    )
    v.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        metavar="NOTE_FILE",
        help="a checkpoint of the log you hold, compared with the bundle's; repeat for several"
        " (default: none)",
    )
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes for signatures and proofs (default: every core)",
    )
    v.set_defaults(func=cmd_verify)

    r = what.add_parser(
        "records",
        help="a machine's stored records as a CBOR sequence `signet verify` reads",
    )
    add_db_args(r)
    r.add_argument("--device", required=True, help=DEVICE_HELP)
    r.add_argument("--out", type=Path, help="write them to this file (default: stdout)")
    r.set_defaults(func=cmd_records)

    b = bench.add_parser(
        "audit",
        help="audit verify on a 100k-record bundle vs raw single-thread verify",
        description="Build a gateway database through the gateway's write path, export one"
        " machine's bundle and time `audit verify` on it with one worker and with every"
        " core, against the raw single-thread verify rate of the same records. Exit 0 if"
        " one core reaches 0.8 of the raw rate, 1 if not.",
    )
    b.add_argument(
        "--records",
        type=positive_int,
        default=100_000,
        help="records in the bundle (default: 100000)",
    )
    b.add_argument(
        "--raw-seconds",
        type=positive_seconds,
        default=5.0,
        help="time measuring the raw verify rate (default: 5)",
    )
    b.set_defaults(func=cmd_bench_audit)
