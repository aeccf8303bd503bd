"""Gateway commands: `signet gateway run`, `signet enroll`, `signet devices`, `signet revoke`,
and the `signet bench gateway` benchmark."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from signet_gateway.mcr.display import counted

from .args import positive_int
from .exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from .exits import fail as _fail

if TYPE_CHECKING:
    from signet_gateway.config import GatewayConfig

EXIT_STORAGE = 3

DEFAULT_CONFIG = Path("gateway.toml")

# Every command that takes a device says the same (one resolver: gateway/store/lookup.py).
DEVICE_HELP = "device id, a unique prefix of at least 8 hex digits, or a device name"


def device_name(text: str) -> str:
    """argparse type of --name: a name that a lookup can find (not empty, no edge blanks)."""
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r}: a device name must be non-empty, without leading or trailing blanks"
        )
    return text


def gateway_db(db: Path | None, config: Path | None) -> tuple[Path, GatewayConfig | None]:
    """The gateway database a command works on, and the configuration if one was read.

    The one rule of every command that works on the gateway's database (add_db_args):
    --db wins; else the [store] path of --config, or of ./gateway.toml when neither was
    given and it exists. Raises FileNotFoundError (nothing to go by) or ConfigError.
    """
    from signet_gateway.config import load

    if db is not None:
        return Path(db), None
    if config is None:
        if not DEFAULT_CONFIG.exists():
            raise FileNotFoundError(
                "no database given: use --config gateway.toml or --db PATH"
                " (./gateway.toml does not exist)"
            )
        config = DEFAULT_CONFIG
    loaded = load(config)
    return loaded.store.path, loaded


def add_db_args(p: argparse.ArgumentParser, *config_aliases: str) -> None:
    """--config / --db, read by gateway_db: the same options and the same default for every
    command that works on the gateway's database."""
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        *config_aliases,
        dest="config",
        type=Path,
        help=f"gateway.toml whose [store] path is the database (default: ./{DEFAULT_CONFIG})",
    )
    where.add_argument(
        "--db",
        type=Path,
        help="the gateway's SQLite database file, instead of a gateway.toml (default: the"
        " [store] path of --config)",
    )


# -- gateway run --------------------------------------------------------------------------------


def cmd_gateway_run(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError, load
    from signet_gateway.ingest.instance_lock import InstanceLockError
    from signet_gateway.ingest.service import Gateway
    from signet_gateway.store.model import StoreOpenError

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s signet-gateway %(levelname)s %(message)s",
    )
    logging.getLogger("signet.gateway").setLevel(logging.INFO)
    try:
        config = load(args.config)
        gateway = Gateway(config)
    except ConfigError as exc:
        return _fail(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        gateway.request_stop()  # from this instant no message is taken
        stop.set()

    # SIGHUP: the terminal or ssh session it ran in went away; stopping gracefully beats
    # dying mid-batch (nothing would be lost either way, but the drain is cleaner).
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        gateway.start()
    except (ConfigError, StoreOpenError, InstanceLockError) as exc:  # [aggregate] is checked
        # when the aggregator loads; a missing database is created by `signet db init` only;
        # another gateway on this database: not a failure a restart would cure
        return _fail(str(exc))
    except Exception as exc:
        logging.getLogger("signet.gateway").critical("cannot start: %s", exc)
        return _fail(f"cannot start the gateway: {exc}", EXIT_STORAGE)
    return gateway.run(stop)


# -- enrollment ---------------------------------------------------------------------------------


def cmd_enroll(args: argparse.Namespace) -> int:
    from signet_gateway.store.model import StoreError, StoreOpenError
    from signet_gateway.store.sqlite import Store
    from signet_tools.records.keystore import KeyStoreError, load_pem

    try:
        key = load_pem(args.pubkey)
    except KeyStoreError as exc:
        return _fail(str(exc))
    evidence = None
    if args.evidence is not None:
        try:
            evidence = args.evidence.read_bytes()
        except OSError as exc:
            return _fail(f"cannot read evidence {args.evidence}: {exc.strerror}")
        if not evidence:
            return _fail(f"evidence file {args.evidence} is empty")
    if args.tier == "hardware" and evidence is None:
        return _fail(
            "--tier hardware needs --evidence FILE (the secure element's certificate chain or"
            " a signed enrollment statement)"
        )
    if args.tier == "software" and evidence is not None:
        return _fail("--evidence is for --tier hardware only")
    try:
        path, _config = gateway_db(args.db, args.config)
        with Store(path) as store:
            device = store.enroll(key, args.tier, name=args.name, evidence=evidence)
    except StoreOpenError as exc:  # no database (only `signet db init` makes one): set-up
        return _fail(str(exc))
    except (StoreError, FileNotFoundError) as exc:
        return _fail(str(exc), EXIT_REFUSED if isinstance(exc, StoreError) else EXIT_USAGE)
    except Exception as exc:  # config errors, unwritable database
        return _fail(str(exc))
    label = f", name {device.name!r}" if device.name else ""
    print(f"enrolled {device.kid} ({key.curve}, tier {device.tier}{label}) in {path}")
    return EXIT_OK


def cmd_devices(args: argparse.Namespace) -> int:
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store

    try:
        path, _config = gateway_db(args.db, args.config)
        with Store(path, readonly=True) as store:
            rows = []
            for d in store.devices():
                rows.append(
                    {
                        "device": d.kid,
                        "curve": d.curve,
                        "tier": d.tier,
                        "name": d.name,
                        "status": "active" if d.active else "revoked",
                        "flagged": d.flagged,
                        "enrolled_ms": d.enrolled_ms,
                        "revoked_ms": d.revoked_ms,
                        "ack": store.ack(d.kid),
                        "highest": store.highest(d.kid),
                        "missing": store.missing(d.kid),
                        "evidence_bytes": len(d.evidence) if d.evidence else 0,
                    }
                )
    except (StoreError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        return _fail(str(exc))
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return EXIT_OK
    print(
        f"{'device':32}  {'curve':9}  {'tier':8}  {'status':7}  {'flag':4}  {'ack':>8}"
        f"  {'missing':>7}  name"
    )
    for r in rows:
        print(
            f"{r['device']:32}  {r['curve']:9}  {r['tier']:8}  {r['status']:7}"
            f"  {'EQUIV' if r['flagged'] else '-':4}  {r['ack']:>8}  {r['missing']:>7}"
            f"  {r['name'] or ''}"
        )
    print(f"{counted(len(rows), 'device')} in {path}", file=sys.stderr)
    return EXIT_OK


def cmd_gateway_status(args: argparse.Namespace) -> int:
    """The readiness a running gateway reports for its database (what /readyz will serve):
    0 ready; 1 not ready (a fault it is riding out) or no gateway running; 2 usage."""
    from signet_gateway.config import ConfigError
    from signet_gateway.ingest.instance_lock import read_status
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store

    try:
        path, _config = gateway_db(args.db, args.config)
        Store(path, readonly=True).close()  # the same refusal of a missing database as elsewhere
    except (ConfigError, FileNotFoundError, StoreError) as exc:
        return _fail(str(exc))
    status = read_status(path)
    if args.json:
        print(json.dumps(status or {"ready": False, "running": False}, sort_keys=True))
    elif status is None:
        print(f"not running: no gateway is running on {path}")
    else:
        state = "ready" if status.get("ready") else "not ready"
        problems = "; ".join(status.get("problems") or ())
        print(
            f"{state} (pid {status['pid']}, since {status.get('since', '?')})"
            + (f": {problems}" if problems else "")
        )
    return EXIT_OK if status is not None and status.get("ready") else EXIT_REFUSED


def cmd_revoke(args: argparse.Namespace) -> int:
    from signet_gateway.store.model import DeviceLookupError, StoreError, StoreOpenError
    from signet_gateway.store.sqlite import Store

    try:
        path, _config = gateway_db(args.db, args.config)
        with Store(path) as store:
            device = store.revoke(store.resolve_device(args.device).kid)
    except (DeviceLookupError, StoreOpenError) as exc:  # which device / which database: usage
        return _fail(str(exc))
    except StoreError as exc:  # already revoked
        return _fail(str(exc), EXIT_REFUSED)
    except Exception as exc:  # config errors, unwritable database
        return _fail(str(exc))
    print(f"revoked {device.kid}: its records are refused (unknown_key) from now on")
    return EXIT_OK


# -- bench --------------------------------------------------------------------------------------


def cmd_bench_gateway(args: argparse.Namespace) -> int:
    from signet_tools.bench import gateway as bench_gateway

    try:
        result = bench_gateway.run(
            records=args.records,
            devices=args.devices,
            workdir=args.dir,
            verify_threads=args.threads,
        )
    except bench_gateway.BenchError as exc:
        return _fail(str(exc), EXIT_REFUSED)
    print(bench_gateway.format_report(result))
    return EXIT_OK if result.ratio >= bench_gateway.TARGET_RATIO else EXIT_REFUSED


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser("gateway", help="the verifying MQTT gateway")
    gw = p.add_subparsers(dest="gateway_command", required=True, metavar="SUBCOMMAND")
    r = gw.add_parser(
        "run",
        help="run the gateway until SIGTERM, SIGINT (Ctrl-C) or SIGHUP, then drain and exit 0",
        description="Run the gateway until SIGTERM, SIGINT (Ctrl-C) or SIGHUP, then drain,"
        " commit, acknowledge and exit 0. It rides out a broker that goes away or hangs and a"
        " store that is full or cannot be written (it stops acknowledging and waits); see"
        " docs/GATEWAY.md, Faults. Exit 2: a set-up error (configuration, no database,"
        " another gateway on it); 3: the store is unusable, a thread failed, or it could not"
        " start.",
    )
    r.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the gateway's configuration (default: ./{DEFAULT_CONFIG})",
    )
    r.add_argument("--verbose", action="store_true", help="also log paho/debug lines")
    r.set_defaults(func=cmd_gateway_run)
    st = gw.add_parser(
        "status",
        help="is the gateway on this database running and ready? (exit 0 ready, 1 not)",
        description="The readiness the running gateway writes beside its database: ready, or"
        " not ready with the faults it is riding out (broker not connected, store full or"
        " unwritable, stopping). Exit 0 ready; 1 not ready or no gateway running; 2 usage.",
    )
    st.add_argument("--json", action="store_true", help="the status as one JSON object")
    add_db_args(st)
    st.set_defaults(func=cmd_gateway_status)

    p = sub.add_parser("enroll", help="enroll a device public key at the gateway")
    p.add_argument("--pubkey", type=Path, required=True, help="the device's public key (PEM)")
    p.add_argument("--tier", choices=("software", "hardware"), required=True)
    p.add_argument(
        "--evidence",
        type=Path,
        help="hardware tier: certificate chain / statement (default: none, software tier)",
    )
    p.add_argument(
        "--name",
        type=device_name,
        help="a label for people (machine name, site); unique among active devices (default: none)",
    )
    add_db_args(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("devices", help="list enrolled devices with their ack and missing counts")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    add_db_args(p)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("revoke", help="revoke a device key: its records are refused from now on")
    p.add_argument("device", help=DEVICE_HELP)
    add_db_args(p)
    p.set_defaults(func=cmd_revoke)

    b = bench.add_parser("gateway", help="drain a 50k-record Mosquitto backlog vs raw verify")
    b.add_argument(
        "--records",
        type=positive_int,
        default=50_000,
        help="records in the backlog (default: 50000)",
    )
    b.add_argument(
        "--devices", type=positive_int, default=100, help="devices publishing them (default: 100)"
    )
    b.add_argument(
        "--threads", type=positive_int, default=2, help="gateway verifier threads (default: 2)"
    )
    b.add_argument("--dir", type=Path, default=None, help="working directory (default: temp)")
    b.set_defaults(func=cmd_bench_gateway)
