"""`signet line ...`: a manufacturing line's key, for makers who provision their own chips
(line-statement evidence, docs/TRUST.md)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .exits import EXIT_OK, fail


def cmd_line_keygen(args: argparse.Namespace) -> int:
    from signet_tools.records import keygen

    try:
        signer = keygen.generate("p256", args.out, force=args.force)
    except (FileExistsError, OSError) as exc:
        return fail(str(exc))
    pub = keygen.pub_path(args.out)
    print(f"line key   {args.out}  (mode 0600: it vouches for every device it signs for)")
    print(f"public     {pub}")
    print(f"key id     {signer.device_id}")
    print("next       give the public key to the gateway, in gateway.toml:")
    print("             [trust]")
    print(f'             line_keys = ["{pub}"]')
    print(f"           and provision with it: signet agent provision ... --line-key {args.out}")
    return EXIT_OK


def cmd_line_sign(args: argparse.Namespace) -> int:
    """A line statement for a device key provisioned elsewhere (its PEM and chip serial)."""
    from signet import keyfile, statement
    from signet_tools.records import evidence
    from signet_tools.records.keystore import KeyStoreError, load_pem

    try:
        line_signer = keyfile.load(str(args.key))
    except (OSError, keyfile.KeyFileError) as exc:
        return fail(f"--key: {args.key}: {exc}")
    try:
        device = load_pem(args.pubkey)
    except KeyStoreError as exc:
        return fail(str(exc))
    if device.curve != "p256":
        return fail(f"--pubkey: {args.pubkey} is a {device.curve} key; a chip's key is p256")
    try:
        serial = bytes.fromhex(args.serial)
        config = bytes.fromhex(args.config_zone) if args.config_zone else None
    except ValueError:
        return fail("--serial and --config-zone are hex")
    if config is not None and len(config) != 128:
        return fail(f"--config-zone is {len(config)} bytes; the ATECC608's is 128")
    public_key = device.compressed
    signed = statement.line(
        line_signer, public_key, serial, int(time.time() * 1000), args.line_name, config
    )
    out = args.out_evidence or evidence.default_path(args.pubkey)
    evidence.write(evidence.line_statement(public_key, signed), out)
    print(f"evidence   {out} (line-statement for {device.device_id}, line {args.line_name!r})")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` (no benchmarks)."""
    p = sub.add_parser("line", help="a manufacturing line's key (line-statement evidence)")
    line = p.add_subparsers(dest="line_command", required=True, metavar="LINE_COMMAND")
    k = line.add_parser("keygen", help="a new line key (P-256 key file + public PEM)")
    k.add_argument("--out", type=Path, required=True, help="the line key file to write")
    k.add_argument("--force", action="store_true", help="overwrite an existing file")
    k.set_defaults(func=cmd_line_keygen)
    s = line.add_parser(
        "sign",
        help="sign a line statement for a device key made on the line",
        description="Write line-statement evidence for a device whose key was generated in its "
        "chip on your line (signet agent provision --line-key does this in one step).",
    )
    s.add_argument("--key", type=Path, required=True, help="the line key (signet line keygen)")
    s.add_argument("--pubkey", type=Path, required=True, help="the device's public key PEM")
    s.add_argument("--serial", required=True, help="the chip's serial number, hex (18 digits)")
    s.add_argument("--line-name", default="line-1", help="the line's name (default line-1)")
    s.add_argument("--config-zone", help="the chip's 128-byte config zone, hex (default: none)")
    s.add_argument("--out-evidence", type=Path, help="default: PUBKEY-stem.evidence.json")
    s.set_defaults(func=cmd_line_sign)
