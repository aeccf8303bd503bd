"""`signet log ...`: the gateway's transparency log for operators and auditors.

  checkpoint    sign a checkpoint of the tree now (on demand; the gateway also signs one
                every [log] checkpoint_interval_s) and print it
  checkpoints   the stored checkpoints: size, time, root
  proof         a record's inclusion proof, as a C2SP tlog-proof
  consistency   the consistency proof between two stored checkpoints

The work is in gateway/store/record_log.py (the tree in the database) and gateway/log/.
"""

from __future__ import annotations

import argparse
import base64
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .exits import EXIT_OK, os_error_line
from .exits import fail as _fail
from .gateway import DEFAULT_CONFIG, DEVICE_HELP, add_db_args, gateway_db

if TYPE_CHECKING:
    from signet_gateway.store.sqlite import Store


class _Refused(Exception):
    """One line for `signet: error:` (exit 2)."""


def _open(args: argparse.Namespace, write: bool = False) -> Store:
    from signet_gateway.config import ConfigError
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store

    try:
        path, _config = gateway_db(getattr(args, "db", None), args.config)
        return Store(path, readonly=not write)
    except (ConfigError, StoreError) as exc:
        raise _Refused(str(exc)) from None
    except FileNotFoundError as exc:
        raise _Refused(str(exc)) from None
    except sqlite3.Error as exc:
        raise _Refused(f"cannot open the database: {exc}") from None


def _run(args: argparse.Namespace, work: Callable[[argparse.Namespace], int]) -> int:
    from signet_gateway.log.checkpoint import CheckpointError
    from signet_gateway.store.model import StoreError

    try:
        return work(args)
    except (_Refused, StoreError, CheckpointError) as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:
        return _fail(f"database error: {exc}")
    except OSError as exc:
        return _fail(os_error_line(exc))


def _checkpoint(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError, load
    from signet_gateway.log.key import KeyFileError, open_signer
    from signet_gateway.store.record_log import RecordLog

    try:
        signer, _ = open_signer(load(args.config).log)
    except (ConfigError, KeyFileError) as exc:
        raise _Refused(str(exc)) from None
    store = _open(args, write=True)
    with store:
        log = RecordLog(store.conn)
        with store.transaction():
            issued = log.issue_checkpoint(signer)
    sys.stdout.write(issued.note)
    return EXIT_OK


def _checkpoints(args: argparse.Namespace) -> int:
    from signet_gateway.store.model import iso_ms
    from signet_gateway.store.record_log import RecordLog

    with _open(args) as store:
        stored = RecordLog(store.conn).checkpoints()
    for cp in stored:
        root = base64.b64encode(cp.root).decode()
        if args.json:
            print(
                json.dumps(
                    {"size": cp.size, "issued_ms": cp.issued_ms, "root": root, "note": cp.note}
                )
            )
        else:
            print(f"{cp.size:>12}  {iso_ms(cp.issued_ms)}  {root}")
    return EXIT_OK


def _proof(args: argparse.Namespace) -> int:
    from signet_gateway.log.tlog_proof import TlogProof, format_tlog_proof
    from signet_gateway.store.model import DeviceLookupError
    from signet_gateway.store.record_log import RecordLog

    with _open(args) as store:
        try:
            kid = store.resolve_device(args.device).kid
        except DeviceLookupError as exc:
            raise _Refused(str(exc)) from None
        log = RecordLog(store.conn)
        index = log.index_of(kid, args.n)
        checkpoint = log.checkpoint(args.size) if args.size else log.latest_checkpoint()
        if args.size and checkpoint is None:
            raise _Refused(f"no stored checkpoint of size {args.size} (see signet log checkpoints)")
        if checkpoint is None or checkpoint.size <= index:
            raise _Refused(
                f"record n={args.n} of device {kid} (log index {index}) is in no checkpoint"
                + ("" if checkpoint is None else f" up to size {checkpoint.size}")
                + " yet: the gateway signs one every [log] checkpoint_interval_s, or run"
                " `signet log checkpoint`"
            )
        hashes = log.inclusion_proof(index, checkpoint.size)
    text = format_tlog_proof(TlogProof(index, tuple(hashes), checkpoint.note.encode()))
    sys.stdout.buffer.write(text)
    return EXIT_OK


def _consistency(args: argparse.Namespace) -> int:
    from signet_gateway.store.record_log import RecordLog

    with _open(args) as store:
        log = RecordLog(store.conn)
        old = log.checkpoint(args.old_size)
        new = log.checkpoint(args.new_size) if args.new_size else log.latest_checkpoint()
        for size, found in ((args.old_size, old), (args.new_size, new)):
            if size and found is None:
                raise _Refused(f"no stored checkpoint of size {size} (see signet log checkpoints)")
        if old is None or new is None:
            raise _Refused("no checkpoint is stored yet")
        if old.size > new.size:
            raise _Refused(f"--from {old.size} is larger than --to {new.size}")
        proof = log.consistency_proof(old.size, new.size) if old.size else []
    encoded = [base64.b64encode(h).decode() for h in proof]
    if args.json:
        print(
            json.dumps(
                {
                    "from": {"size": old.size, "checkpoint": old.note},
                    "to": {"size": new.size, "checkpoint": new.note},
                    "proof": encoded,
                }
            )
        )
    else:
        for line in encoded:
            print(line)
    return EXIT_OK


def _size(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tree size") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a tree size is not negative")
    return value


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "log",
        help="the gateway's transparency log: checkpoints and proofs",
        description="The transparency log of every record the gateway stored (docs/AUDIT.md):"
        " signed checkpoints, inclusion proofs, consistency proofs.",
    )
    what = p.add_subparsers(dest="log_command", metavar="COMMAND", required=True)

    c = what.add_parser(
        "checkpoint",
        help="sign a checkpoint of the log now and print it",
        description="Sign a C2SP checkpoint of the log as it is now with the [log] key and"
        " store it (the gateway also signs one every [log] checkpoint_interval_s); print the"
        " signed note. An unchanged tree gives the last checkpoint again. Reads the private"
        " key: run it as the gateway's user. Exit 0 printed; 2 no key, no database, or a"
        " stored history the tree contradicts (nothing is signed then).",
    )
    c.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the gateway's configuration (default: ./{DEFAULT_CONFIG})",
    )
    c.set_defaults(func=lambda a: _run(a, _checkpoint))

    c = what.add_parser(
        "checkpoints",
        help="list the stored checkpoints",
        description="One line per stored checkpoint: tree size, when it was signed, root"
        " hash (base64). --json: one object per line with the signed note. Exit 0; 2 no"
        " database.",
    )
    add_db_args(c)
    c.add_argument("--json", action="store_true", help="JSON lines, with each signed note")
    c.set_defaults(func=lambda a: _run(a, _checkpoints))

    c = what.add_parser(
        "proof",
        help="a record's inclusion proof (C2SP tlog-proof)",
        description="Print the inclusion proof of a stored record in the C2SP tlog-proof"
        " format: its log index, the audit path, and the signed checkpoint it leads to (the"
        " latest, or --size). Exit 0 printed; 2 no such record, or no checkpoint covers it"
        " yet.",
    )
    add_db_args(c)
    c.add_argument("--device", required=True, help=DEVICE_HELP)
    c.add_argument("--n", type=_size, required=True, help="the record's sequence number")
    c.add_argument("--size", type=_size, help="a stored checkpoint's size (default: the latest)")
    c.set_defaults(func=lambda a: _run(a, _proof))

    c = what.add_parser(
        "consistency",
        help="the consistency proof between two stored checkpoints",
        description="Print the RFC 9162 consistency proof from the stored checkpoint of size"
        " --from to the one of size --to (default: the latest), one base64 hash per line"
        " (--json: with both signed checkpoints). Exit 0 printed; 2 no such checkpoint.",
    )
    add_db_args(c)
    c.add_argument(
        "--from", dest="old_size", type=_size, required=True, metavar="SIZE",
        help="the earlier checkpoint's tree size",
    )  # fmt: skip
    c.add_argument(
        "--to", dest="new_size", type=_size, metavar="SIZE",
        help="the later checkpoint's tree size (default: the latest stored checkpoint)",
    )  # fmt: skip
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.set_defaults(func=lambda a: _run(a, _consistency))
