"""The `signet` command: keys, records, verification and benchmarks."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .args import positive_int, positive_seconds, refuse_empty_values
from .exits import EXIT_OK, EXIT_REFUSED, os_error_line
from .exits import fail as _fail
from .extras import add_micropython_option, missing_extra_line, needs_extra

# Command groups that live in their own modules. Each has register(sub, bench):
# `sub` takes top-level commands, `bench` takes `signet bench NAME` benchmarks.
COMMAND_GROUPS = (
    "agent",
    "device",
    "gateway",
    "db",
    "report",
    "fleet",
    "line",
    "evidence",
    "broker",
    "log",
    "audit",
    "token",
)


def cmd_keygen(args: argparse.Namespace) -> int:
    from signet_tools.records import keygen

    try:
        signer = keygen.generate(args.curve, args.out, force=args.force)
    except (FileExistsError, OSError) as exc:
        return _fail(str(exc))
    print(f"device id  {signer.device_id}")
    print(f"curve      {args.curve} ({'ES256' if args.curve == 'p256' else 'ES256K'})")
    print(f"private    {args.out}  (mode 0600, keep it secret)")
    print(f"public     {keygen.pub_path(args.out)}")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from signet_tools.records import sign as sign_cmd

    if args.out is None and not args.hex and sys.stdout.isatty():
        return _fail(
            "refusing to write a binary record to a terminal: give --out FILE (a record"
            " file), --hex, or redirect stdout to a file"
        )
    try:
        record = sign_cmd.sign(
            key=args.key,
            seq=args.seq,
            kind=args.kind,
            fields=sign_cmd.parse_fields(args.kind, args.field),
            boot=args.boot,
            uptime=args.uptime,
            unix_ms=sign_cmd.parse_time(args.time),
            prev=args.prev,
            out=args.out,
        )
    except sign_cmd.SignError as exc:
        return _fail(str(exc))
    if args.out is not None:
        print(f"appended {len(record)}-byte record n={args.seq} to {args.out}", file=sys.stderr)
    elif args.hex:
        print(record.hex())
    else:
        sys.stdout.buffer.write(record)
    return EXIT_OK


def _read(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    return path.read_bytes()


def cmd_inspect(args: argparse.Namespace) -> int:
    from signet_tools.records import inspect as inspect_cmd

    try:
        data = _read(args.file)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}")
    malformed = 0
    for item in inspect_cmd.describe_all(data):
        malformed += "error" in item or "payload_error" in item
        print(json.dumps(item))
    if malformed:
        print(f"signet: {malformed} malformed item(s) in {args.file}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from signet_tools.records import keystore
    from signet_tools.records import verify as verify_cmd

    try:
        data = _read(args.file)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}")
    try:
        if args.pubkey is not None:
            key = keystore.load_pem(args.pubkey)
            keys = {key.kid: key}
            expected = key.kid  # a record from any other key is a kid_mismatch
        else:
            keys = keystore.load_dir(args.key_dir)
            expected = None
    except keystore.KeyStoreError as exc:
        return _fail(str(exc))
    verdicts = verify_cmd.verify_file(data, keys, expected_kid=expected)
    for line in verify_cmd.render(verdicts, as_json=args.json):
        print(line)
    if not verdicts:
        print(f"signet: no records in {args.file}", file=sys.stderr)
        return EXIT_REFUSED
    print(verify_cmd.summary(verdicts), file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK if all(v.valid for v in verdicts) else EXIT_REFUSED


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "sign":
        from signet_tools.bench import sign as bench_sign
        from signet_tools.device import micropython

        try:
            binary = micropython.binary(args.micropython)
        except micropython.BinaryUnusable as exc:
            return _fail(str(exc))
        result = bench_sign.run(count=args.count, binary=binary)
        print(bench_sign.format_report(result))
        return EXIT_OK
    from signet_tools.bench import verify as bench_verify

    print(bench_verify.format_report(bench_verify.run(args.seconds)))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from signet_tools.fleet import demo

    return demo.run(args.dir, devices=args.devices, duration_s=args.duration, seed=args.seed)


def _version() -> str:
    """The installed package's version (pyproject.toml), as pip knows it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("signet")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from signet import record
    from signet_tools.records import fields as kind_fields

    parser = argparse.ArgumentParser(
        prog="signet",
        description="Signet: signed machine telemetry (keys, records, verification)",
        epilog="Exit status: 0 success, 1 something was refused or a target missed, 2 usage"
        " or set-up error (the gateway also has 3: docs/GATEWAY.md).",
    )
    parser.add_argument("--version", action="version", version=f"signet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="generate a device key file and its public key PEM")
    p.add_argument("--curve", choices=("p256", "secp256k1"), default="p256", help="(default: p256)")
    p.add_argument("--out", type=Path, required=True, help="private key file (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "sign",
        help="build and sign one record with the firmware code",
        description="Build and sign one record with the firmware code. With --out the file"
        " is checked first and left untouched if the record would not fit it: a file that"
        " ends in a cut-off record, a file that is not a record file (a PEM, a key), or a"
        " record whose key and n the file already holds (an equivocation).",
        epilog=kind_fields.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--key", type=Path, required=True, help="key file from `signet keygen`")
    p.add_argument("--seq", type=int, required=True, help="sequence number n (>= 1)")
    p.add_argument("--kind", required=True, choices=record.KINDS)
    p.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a field of the kind (listed below), e.g. am=250; repeat for each field"
        " (default: none)",
    )
    p.add_argument("--boot", type=int, default=1, help="boot counter b (default: 1)")
    p.add_argument("--uptime", type=int, default=0, help="ms since boot u (default: 0)")
    p.add_argument("--time", default="now", help="unix ms t, 'now' or 'null' (default: now)")
    p.add_argument(
        "--prev",
        help="SHA-256 hex of the previous payload, or 'genesis' (default: "
        "chain to this key's last record in --out, else genesis)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="append to this record file, a CBOR sequence (default: write to stdout, which"
        " must not be a terminal: use --hex there)",
    )
    p.add_argument(
        "--hex", action="store_true", help="write the record as hex to stdout, not bytes"
    )
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser(
        "inspect",
        help="show the records in a file, one JSON line each",
        description="Show the records in a file, one JSON line each (structure only: `signet"
        " verify` checks signatures). Exit 0 if every item is a readable record, 1 if any"
        ' is malformed (its line has an "error"), 2 if the file cannot be read.',
    )
    p.add_argument("file", type=Path, help="CBOR-sequence file ('-' for stdin)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("verify", help="verify every record in a file (exit 0 only if all valid)")
    p.add_argument("file", type=Path, help="CBOR-sequence file ('-' for stdin)")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--pubkey", type=Path, help="the one device public key (PEM)")
    keys.add_argument("--key-dir", type=Path, help="directory of trusted *.pem public keys")
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("bench", help="benchmarks that print their figures")
    bench = p.add_subparsers(dest="what", required=True, metavar="BENCHMARK")
    b = bench.add_parser(
        "sign",
        help="firmware signing on MicroPython vs ecdsa on CPython; the emulated ATECC608 path",
    )
    needs_extra(b, "bench")
    b.add_argument(
        "--count",
        type=positive_int,
        default=300,
        help="records per curve (default: 300; at most 40 on the ATECC608 path)",
    )
    add_micropython_option(b)
    b.set_defaults(func=cmd_bench)
    b = bench.add_parser("verify", help="host decode+verify vs bare OpenSSL verify")
    b.add_argument(
        "--seconds", type=positive_seconds, default=3.0, help="measuring time (default: 3)"
    )
    b.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "demo",
        help="the main demo: Mosquitto, the gateway, a virtual fleet with outages and "
        "attacks, then the MCR report checked against the ground truth",
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("out/demo"),
        help="working directory, emptied of a previous demo first (default: out/demo)",
    )
    p.add_argument("--devices", type=positive_int, default=12, help="virtual devices (default: 12)")
    p.add_argument(
        "--duration",
        type=positive_seconds,
        default=50.0,
        help="seconds of trading (default: 50)",
    )
    p.add_argument(
        "--seed", type=int, help="random seed, for a repeatable run (default: a new one each run)"
    )
    p.set_defaults(func=cmd_demo)

    for name in COMMAND_GROUPS:
        importlib.import_module(f"{__package__}.{name}").register(sub, bench)
    refuse_empty_values(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `signet inspect big.cbor | head` is fine
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        # A file or directory a command could not use (`--dir` below a regular file, a full
        # disk): the error line names it. Commands check the paths they are given where
        # they can say more; this is the one place for the rest, so it is never a traceback.
        return _fail(os_error_line(exc))
    except (ImportError, RuntimeError) as exc:  # a module or program of an extra missing?
        line = missing_extra_line(exc, args)
        if line is None:
            raise
        return _fail(line)
