"""Gateway commands: `signet gateway run`, `signet challenge`, `signet enroll`, `signet devices`,
`signet revoke`, and the `signet bench gateway` benchmark."""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from signet_gateway.mcr.display import counted

from .args import positive_int
from .exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from .exits import fail as _fail
from .extras import needs_extra

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


def gateway_db(
    db: Path | str | None, config: Path | None
) -> tuple[Path | str, GatewayConfig | None]:
    """The gateway database a command works on (a SQLite file's path, or a PostgreSQL URL:
    what Store opens), and the configuration if one was read.

    The one rule of every command that works on the gateway's database (add_db_args):
    --db wins; else the [store] path or url of --config, or of ./gateway.toml when neither
    was given and it exists. Raises FileNotFoundError (nothing to go by) or ConfigError.
    """
    from signet_gateway.config import load

    if db is not None:
        return db, None
    if config is None:
        if not DEFAULT_CONFIG.exists():
            raise FileNotFoundError(
                "no database given: use --config gateway.toml or --db PATH"
                " (./gateway.toml does not exist)"
            )
        config = DEFAULT_CONFIG
    loaded = load(config)
    return loaded.store.location, loaded


def store_arg(text: str) -> Path | str:
    """--db: a SQLite file's path, or a postgresql:// URL (kept as text: a Path would fold
    its '//')."""
    from signet_gateway.store.sqlite import is_url

    return text if is_url(text) else Path(text)


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
        type=store_arg,
        help="the gateway's SQLite database file or a postgresql:// URL, instead of a"
        " gateway.toml (default: the [store] path or url of --config)",
    )


# -- gateway run --------------------------------------------------------------------------------


def _log_to_stderr(log_format: str, verbose: bool) -> None:
    """The gateway's log on stderr (the journal): text lines, or JSON lines ([logging])."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from signet_gateway.web.json_log import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s signet-gateway %(levelname)s %(message)s")
        )
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("signet.gateway").setLevel(logging.INFO)


def cmd_gateway_run(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError, for_worker, load
    from signet_gateway.ingest.instance_lock import InstanceLockError
    from signet_gateway.ingest.service import Gateway, StoppedWaiting
    from signet_gateway.store.model import StoreOpenError

    try:
        config = for_worker(load(args.config), args.worker)
        gateway = Gateway(config)
    except ConfigError as exc:
        return _fail(str(exc))
    _log_to_stderr(config.logging.format, args.verbose)
    console = None
    if config.http.enabled:
        # The console needs the gateway extra: a missing module is said by main() in one line.
        from signet_gateway.web.console import Console, HttpServerError

        try:
            console = Console.bind(config)  # a port in use stops here, before anything starts
        except HttpServerError as exc:
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
        gateway.start()  # waits for a PostgreSQL server that cannot be reached yet
    except StoppedWaiting as exc:  # SIGTERM meanwhile: nothing was taken
        if console is not None:
            console.stop()
        logging.getLogger("signet.gateway").info("%s", exc)
        return EXIT_OK
    except (ConfigError, StoreOpenError, InstanceLockError) as exc:  # [aggregate] is checked
        # when the aggregator loads; a missing database is created by `signet db init` only;
        # another gateway on this database: not a failure a restart would cure
        if console is not None:
            console.stop()
        return _fail(str(exc))
    except Exception as exc:
        if console is not None:
            console.stop()
        logging.getLogger("signet.gateway").critical("cannot start: %s", exc)
        return _fail(f"cannot start the gateway: {exc}", EXIT_STORAGE)
    if console is None:
        return gateway.run(stop)
    try:
        console.start(gateway)
    except Exception as exc:
        logging.getLogger("signet.gateway").critical("cannot start the console: %s", exc)
        stop.set()
        gateway.run(stop)  # drains and stops what did start
        console.stop()
        return _fail(f"cannot start the console: {exc}", EXIT_STORAGE)
    try:
        return gateway.run(stop)
    finally:
        console.stop()  # after the drain: /readyz says "stopping" meanwhile


# -- enrollment ---------------------------------------------------------------------------------


def _read_file(path: Path, what: str) -> bytes:
    """A file's bytes for `enroll`; OSError/ValueError become the one error line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not data:
        raise ValueError(f"{what} file {path} is empty")
    return data


def _statement_bytes(data: bytes) -> bytes:
    """A rotation statement file: the COSE_Sign1 bytes, or them in hex (text)."""
    text = data.strip()
    if text and all(c in b"0123456789abcdefABCDEF" for c in text):
        try:
            return bytes.fromhex(text.decode())
        except ValueError:
            pass
    return data


def cmd_enroll(args: argparse.Namespace) -> int:
    from signet_gateway.config import TrustConfig
    from signet_gateway.store.admission import enroll
    from signet_gateway.store.model import DeviceLookupError, StoreError, StoreOpenError
    from signet_gateway.store.sqlite import Store, store_name
    from signet_gateway.trust import EvidenceRefused, load_policy
    from signet_tools.records.keystore import KeyStoreError, load_pem

    try:
        key = load_pem(args.pubkey)
    except KeyStoreError as exc:
        return _fail(str(exc))
    tier = args.tier or ("software" if args.rotate_from else None)
    if tier is None:
        return _fail("--tier is required (software, or hardware with --evidence FILE)")
    try:
        evidence = None if args.evidence is None else _read_file(args.evidence, "evidence")
        statement = None
        if args.statement is not None:
            statement = _statement_bytes(_read_file(args.statement, "statement"))
    except ValueError as exc:
        return _fail(str(exc))
    if tier == "hardware" and evidence is None:
        return _fail(
            "--tier hardware needs --evidence FILE (written by `signet device provision --se`"
            " or `signet agent provision`)"
        )
    if tier == "software" and evidence is not None:
        return _fail("--evidence is for --tier hardware only")
    if (args.rotate_from is None) != (statement is None):
        return _fail("--rotate-from OLD and --statement FILE go together (a key rotation)")
    try:
        path, config = gateway_db(args.db, args.config)
        policy = load_policy(config.trust if config is not None else TrustConfig())
        with Store(path) as store:
            old = None if args.rotate_from is None else store.resolve_device(args.rotate_from)
            device = enroll(
                store,
                key,
                tier,
                policy=policy,
                evidence=evidence,
                name=args.name,
                rotate_from=None if old is None else old.kid,
                statement=statement,
            )
    except EvidenceRefused as refused:
        return _fail(f"enrollment refused ({refused.reason}): {refused.sentence}", EXIT_REFUSED)
    except StoreOpenError as exc:  # no database (only `signet db init` makes one): set-up
        return _fail(str(exc))
    except (StoreError, FileNotFoundError) as exc:  # DeviceLookupError (--rotate-from): usage
        refused_here = isinstance(exc, StoreError) and not isinstance(exc, DeviceLookupError)
        return _fail(str(exc), EXIT_REFUSED if refused_here else EXIT_USAGE)
    except Exception as exc:  # config errors, unwritable database
        return _fail(str(exc))
    label = f", name {device.name!r}" if device.name else ""
    via = f", evidence {device.evidence_kind}" if device.evidence_kind else ""
    where = store_name(path)
    print(f"enrolled {device.kid} ({key.curve}, tier {device.tier}{via}{label}) in {where}")
    if device.replaces is not None:
        old_device = device.replaces
        print(
            f"rotated: machine {device.machine} now signs with {device.kid}; records of"
            f" {old_device} up to its last n stay valid, those above are refused (rotated)"
        )
    return EXIT_OK


def cmd_challenge(args: argparse.Namespace) -> int:
    """A fresh enrollment challenge: 32 random bytes, stored, single use, with an expiry."""
    from signet_gateway.config import TrustConfig
    from signet_gateway.mcr.report import iso_ms
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store

    try:
        path, config = gateway_db(args.db, args.config)
        ttl_s = args.ttl
        if ttl_s is None:
            ttl_s = (
                TrustConfig().challenge_ttl_s if config is None else config.trust.challenge_ttl_s
            )
        with Store(path) as store:
            nonce, expires_ms = store.issue_challenge(ttl_s * 1000)
    except (StoreError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # config errors, unwritable database
        return _fail(str(exc))
    if args.json:
        print(
            json.dumps(
                {"challenge": nonce.hex(), "expires_ms": expires_ms, "expires": iso_ms(expires_ms)},
                sort_keys=True,
            )
        )
    else:
        print(nonce.hex())
        print(f"expires {iso_ms(expires_ms)} (in {ttl_s} s); single use", file=sys.stderr)
    return EXIT_OK


def _device_row(store: Any, d: Any) -> dict[str, Any]:
    return {
        "device": d.kid,
        "curve": d.curve,
        "tier": d.tier,
        "name": d.name,
        "status": d.status(),
        "flagged": d.flagged,
        "enrolled_ms": d.enrolled_ms,
        "revoked_ms": d.revoked_ms,
        "ack": store.ack(d.kid),
        "highest": store.highest(d.kid),
        "missing": store.missing(d.kid),
        "evidence_bytes": len(d.evidence) if d.evidence else 0,
        "evidence_kind": d.evidence_kind,
        "evidence_summary": d.evidence_summary,
        "evidence": base64.b64encode(d.evidence).decode() if d.evidence else None,
        "machine": d.machine,
        "replaces": d.replaces,
        "last_n": d.last_n,
    }


def cmd_devices(args: argparse.Namespace) -> int:
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store, store_name

    try:
        path, _config = gateway_db(args.db, args.config)
        with Store(path, readonly=True) as store:
            if args.evidence is not None:
                device = store.resolve_device(args.evidence)
                if not device.evidence:
                    return _fail(f"device {device.kid} has no stored evidence", EXIT_REFUSED)
                sys.stdout.buffer.write(device.evidence)
                sys.stdout.flush()
                return EXIT_OK
            rows = [_device_row(store, d) for d in store.devices()]
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
    print(f"{counted(len(rows), 'device')} in {store_name(path)}", file=sys.stderr)
    return EXIT_OK


def cmd_gateway_status(args: argparse.Namespace) -> int:
    """The readiness a running gateway reports for its database (what /readyz serves):
    0 ready; 1 not ready (a fault it is riding out) or no gateway running; 2 usage."""
    from signet_gateway.config import ConfigError
    from signet_gateway.ingest.instance_lock import read_status
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store, is_url, store_name

    try:
        path, _config = gateway_db(args.db, args.config)
        Store(path, readonly=True).close()  # the same refusal of a missing database as elsewhere
    except (ConfigError, FileNotFoundError, StoreError) as exc:
        return _fail(str(exc))
    if is_url(path):  # no instance lock, so no readiness file: several workers may run
        return _fail(
            f"{store_name(path)} is a PostgreSQL database: its gateway workers keep no"
            " readiness file beside it; ask each worker's console (/readyz)"
        )
    status = read_status(path)
    if args.json:
        print(json.dumps(status or {"ready": False, "running": False}, sort_keys=True))
    elif status is None:
        print(f"not running: no gateway is running on {store_name(path)}")
    else:
        state = "ready" if status.get("ready") else "not ready"
        problems = "; ".join(status.get("problems") or ())
        print(
            f"{state} (pid {status['pid']}, since {status.get('since', '?')})"
            + (f": {problems}" if problems else "")
        )
    return EXIT_OK if status is not None and status.get("ready") else EXIT_REFUSED


def revoke_moment(text: str) -> int | None:
    """argparse type of `revoke --at`: 'now' (None: read by the store in its transaction) or
    an ISO 8601 moment with a time zone, as Unix ms."""
    if text.strip().lower() == "now":
        return None
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected 'now' or an ISO 8601 moment such as 2026-05-04T10:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the time zone (2026-05-04T10:00:00Z or +02:00): a revocation"
            " moment must not depend on the machine's local time"
        )
    return int(when.timestamp() * 1000)


def cmd_revoke(args: argparse.Namespace) -> int:
    from signet_gateway.mcr.report import iso_ms
    from signet_gateway.store.model import DeviceLookupError, StoreError, StoreOpenError
    from signet_gateway.store.sqlite import Store

    try:
        path, _config = gateway_db(args.db, args.config)
        with Store(path) as store:
            device = store.revoke(store.resolve_device(args.device).kid, args.at)
    except (DeviceLookupError, StoreOpenError) as exc:  # which device / which database: usage
        return _fail(str(exc))
    except StoreError as exc:  # already revoked, a moment in the past
        return _fail(str(exc), EXIT_REFUSED)
    except Exception as exc:  # config errors, unwritable database
        return _fail(str(exc))
    assert device.revoked_ms is not None
    print(
        f"revoked {device.kid} from {iso_ms(device.revoked_ms)}: records received from then"
        " on are refused (revoked); those received before stay counted"
    )
    return EXIT_OK


# -- bench --------------------------------------------------------------------------------------


def _worker_counts(text: str) -> list[int]:
    """--workers: worker counts, comma-separated (1,2)."""
    try:
        counts = [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (a list like 1,2)") from None
    return sorted(set(counts))


def cmd_bench_gateway(args: argparse.Namespace) -> int:
    from signet_tools.bench import gateway as bench_gateway

    if args.store == "postgres":
        return _bench_workers(args)
    if args.workers is not None:
        return _fail("--workers: needs --store postgres (one SQLite store takes one gateway)")
    try:
        result = bench_gateway.run(
            records=args.records,
            devices=args.devices,
            workdir=args.dir,
            verify_threads=args.threads,
            rounds=args.rounds,
        )
    except bench_gateway.BenchError as exc:
        return _fail(str(exc), EXIT_REFUSED)
    print(bench_gateway.format_report(result))
    return EXIT_OK if result.ratio >= bench_gateway.TARGET_RATIO else EXIT_REFUSED


def _bench_workers(args: argparse.Namespace) -> int:
    """--store postgres: one and several workers on PostgreSQL, SQLite's one beside them."""
    from signet_tools.bench import gateway as bench_gateway
    from signet_tools.bench import gateway_workers

    try:
        result = gateway_workers.run(
            records=args.records,
            devices=args.devices,
            workers=args.workers or [1, 2],
            rounds=args.rounds,
            workdir=args.dir,
        )
    except bench_gateway.BenchError as exc:
        return _fail(str(exc), EXIT_REFUSED)
    print(gateway_workers.format_report(result))
    return EXIT_OK if result.meets else EXIT_REFUSED


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
    r.add_argument(
        "--worker",
        metavar="NAME",
        help="this worker's name, one of several sharing [mqtt] shared_group: its client id is"
        " mqtt.client_id-NAME (signet-gateway@NAME.service passes it; default: none, the only"
        " gateway)",
    )
    r.add_argument("--verbose", action="store_true", help="also log paho/debug lines")
    needs_extra(r, "gateway")  # only [http] enabled imports it (the console)
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
    from .gateway_key import add_parsers as add_key_parsers

    add_key_parsers(gw)

    p = sub.add_parser(
        "challenge",
        help="issue a single-use enrollment challenge (hex) for hardware evidence",
        description="Issue a fresh 32-byte challenge, stored in the gateway database: the"
        " device's provisioning signs it into its evidence, and `signet enroll --tier hardware`"
        " accepts it once, before it expires. Prints the hex on stdout (the expiry on stderr).",
    )
    p.add_argument(
        "--ttl",
        type=positive_int,
        help="seconds it may be answered (default: [trust] challenge_ttl_s, 900)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object: challenge, expiry")
    add_db_args(p)
    p.set_defaults(func=cmd_challenge)

    p = sub.add_parser(
        "enroll",
        help="enroll a device public key at the gateway (or rotate a device to a new key)",
        description="Enroll a device key. Hardware tier only on evidence the gateway verifies"
        " against [trust] (docs/TRUST.md); refused evidence prints `enrollment refused"
        " (REASON): SENTENCE` and exits 1. With --rotate-from and --statement, the key"
        " replaces an enrolled key of the same machine (docs/TRUST.md, Rotation).",
    )
    p.add_argument("--pubkey", type=Path, required=True, help="the device's public key (PEM)")
    p.add_argument(
        "--tier",
        choices=("software", "hardware"),
        help="required, except for a rotation (default then: software)",
    )
    p.add_argument(
        "--evidence",
        type=Path,
        help="hardware tier: the evidence file from the device's provisioning (JSON;"
        " default: none, software tier)",
    )
    p.add_argument(
        "--name",
        type=device_name,
        help="a label for people (machine name, site); unique among active devices (default:"
        " none; a rotation keeps the old key's)",
    )
    p.add_argument(
        "--rotate-from",
        metavar="DEVICE",
        help=f"rotation: the key this one replaces ({DEVICE_HELP}; default: none, a new machine)",
    )
    p.add_argument(
        "--statement",
        type=Path,
        help="rotation: the 'rotate' statement signed by the old key, bytes or hex (default:"
        " none; required with --rotate-from)",
    )
    add_db_args(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("devices", help="list enrolled devices with their ack and missing counts")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    p.add_argument(
        "--evidence",
        metavar="DEVICE",
        help="write that device's stored enrollment evidence to stdout, for an auditor"
        " (default: list the devices)",
    )
    add_db_args(p)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "revoke",
        help="revoke a device key: records received from the moment on are refused",
        description="Revoke a device key at a moment (default now): records received at or"
        " after it are refused 'revoked', records received before stay counted. A moment"
        " ahead schedules it; a moment in the past is refused (exit 1).",
    )
    p.add_argument("device", help=DEVICE_HELP)
    p.add_argument(
        "--at",
        type=revoke_moment,
        default=None,
        metavar="ISO-8601|now",
        help="when it takes effect, with a time zone (2026-05-04T10:00:00Z); default now",
    )
    add_db_args(p)
    p.set_defaults(func=cmd_revoke)

    b = bench.add_parser(
        "gateway",
        help="drain a 50k-record Mosquitto backlog vs raw verify, the transparency log on and off",
    )
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
    b.add_argument(
        "--rounds",
        type=positive_int,
        default=2,
        help="drains with the transparency log on, with it off and with the console polled,"
        " in alternating order; the best of each counts for the log, the medians for the"
        " console (default: 2)",
    )
    b.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: drain the backlog with 1 and then several workers on one PostgreSQL"
        " database (each with one verifier process; --threads is not used), SQLite's one"
        " worker beside them: records/s, their ratio, CPU per record of every process, each"
        " worker's RSS (default: sqlite, the log and console drains)",
    )
    b.add_argument(
        "--workers",
        type=_worker_counts,
        default=None,
        metavar="N,N",
        help="with --store postgres: the worker counts to drain with (default: 1,2)",
    )
    b.add_argument("--dir", type=Path, default=None, help="working directory (default: temp)")
    b.set_defaults(func=cmd_bench_gateway)
