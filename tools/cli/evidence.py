"""`signet evidence verify`: re-check enrollment evidence against the roots, offline.

For an auditor who does not take the gateway's word that a key is `hardware`: every check
`signet enroll` made, with the certificates judged at the enrollment time, except the
challenge's freshness (consumed at enrollment; it must only be present). Two ways in:

- ``--device ID`` (or ``--all``): the evidence, key and enrollment time as stored in the
  gateway's database (read only);
- ``--file EVIDENCE --pubkey PEM [--at TIME]``: an evidence file exported with
  ``signet devices --evidence``, no database at all.

The roots come from a gateway.toml's [trust] section: --roots FILE (which may hold only
that section: an auditor writes their own, naming roots they obtained independently), else
the --config file, else ./gateway.toml. Exit 0: every evidence verified; 1: some refused (each named
with its reason); 2: usage or set-up (no such device, unreadable file, bad config).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from .exits import EXIT_OK, EXIT_REFUSED, fail
from .gateway import DEFAULT_CONFIG, add_db_args, gateway_db


def _moment_ms(text: str) -> int:
    """--at: ISO-8601 with a time zone, or unix milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (2026-12-01T10:00:00Z) nor unix milliseconds"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +01:00)")
    return int(moment.timestamp() * 1000)


def _trust(args: argparse.Namespace, config: Any) -> Any:
    """The [trust] section to trust: --roots, the gateway's config, or ./gateway.toml."""
    from signet_gateway.config import TrustConfig, load

    if args.roots is not None:
        return load(args.roots).trust
    if config is not None:
        return config.trust
    return load(DEFAULT_CONFIG).trust if DEFAULT_CONFIG.exists() else TrustConfig()


def _check(
    raw: bytes, key: Any, trust: Any, at_ms: int | None, label: str
) -> tuple[bool, dict[str, Any]]:
    from signet_gateway.trust import EvidenceRefused, load_policy, verify_stored

    policy = load_policy(trust, now_ms=at_ms)
    try:
        verified = verify_stored(raw, key, policy)
    except EvidenceRefused as refused:
        return False, {
            "device": label,
            "verified": False,
            "reason": refused.reason,
            "sentence": refused.sentence,
        }
    return True, {
        "device": label,
        "verified": True,
        "kind": verified.kind,
        "checked_at_ms": policy.check_time_ms(),
        "summary": verified.summary,
    }


def _stored(args: argparse.Namespace) -> tuple[Any, list[tuple[bytes, Any, int, str]]]:
    """The trust config and (evidence, key, enrolled_ms, label) of the devices asked for."""
    from signet_gateway.store.sqlite import Store
    from signet_gateway.verify.pubkeys import DevicePublicKey

    path, config = gateway_db(args.db, args.config)
    trust = _trust(args, config)
    with Store(path, readonly=True) as store:
        devices = (
            [d for d in store.devices() if d.evidence]
            if args.all
            else [store.resolve_device(args.device)]
        )
        items = []
        for d in devices:
            if not d.evidence:
                raise LookupError(f"device {d.kid} has no stored evidence (tier {d.tier})")
            key = DevicePublicKey.from_sec1(d.public_key, d.curve)  # type: ignore[arg-type]
            label = d.kid if not d.name else f"{d.kid} ({d.name})"
            items.append((bytes(d.evidence), key, d.enrolled_ms, label))
    return trust, items


def _from_file(args: argparse.Namespace) -> tuple[Any, list[tuple[bytes, Any, int | None, str]]]:
    from signet_gateway.config import load
    from signet_tools.records.keystore import KeyStoreError, load_pem

    if args.pubkey is None:
        raise LookupError("--file needs --pubkey PEM: the key the evidence is for")
    try:
        key = load_pem(args.pubkey)
    except KeyStoreError as exc:
        raise LookupError(str(exc)) from None
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise LookupError(f"cannot read evidence {args.file}: {exc.strerror}") from None
    trust = _trust(args, load(args.config) if args.config is not None else None)
    return trust, [(raw, key, args.at, key.device_id)]


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    if args.file is None and args.device is None and not args.all:
        return fail("say what to check: --device ID, --all, or --file EVIDENCE --pubkey PEM")
    if args.file is not None and (args.device is not None or args.all or args.db is not None):
        return fail("--file checks an exported file: it takes no --device, --all or --db")
    if args.file is None and args.at is not None:
        return fail("--at is for --file: stored evidence is judged at its enrollment time")
    try:
        trust, items = _from_file(args) if args.file is not None else _stored(args)
        results = [_check(raw, key, trust, at, label) for raw, key, at, label in items]
    except LookupError as exc:  # DeviceLookupError, no evidence, unreadable input
        return fail(str(exc))
    except Exception as exc:  # config errors, no database
        return fail(str(exc))
    if args.json:
        print(json.dumps([r for _, r in results], indent=2))
    else:
        for ok, r in results:
            if ok:
                print(f"verified  {r['device']}  {r['kind']}  {_one_line(r['summary'])}")
            else:
                print(f"REFUSED   {r['device']}  {r['reason']}: {r['sentence']}")
    if not results:
        print("no device has stored evidence")
    return EXIT_OK if all(ok for ok, _ in results) else EXIT_REFUSED


def _one_line(summary: dict[str, Any]) -> str:
    """What an auditor reads first: the chip, the line, the root the chain ends at."""
    parts = []
    chip = summary.get("chip")
    if isinstance(chip, dict) and "serial" in chip:
        parts.append(f"chip {chip['serial']}")
    if "line" in summary:
        parts.append(f"line {summary['line']!r}")
    chain = summary.get("chain") or summary.get("ak_chain")
    if isinstance(chain, list) and chain:
        parts.append(f"chain to {chain[-1]['issuer']}")
    return ", ".join(parts)


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evidence", help="re-check enrollment evidence against the roots")
    verbs = p.add_subparsers(dest="evidence_cmd", required=True, metavar="verify")
    v = verbs.add_parser(
        "verify",
        help="re-check stored or exported evidence offline (docs/TRUST.md, auditing)",
        description=(
            "Re-check the evidence a hardware-tier key was enrolled on: the certificate"
            " chain to the [trust] roots, the key, the proof or statement, the chip's"
            " configuration or the TPM key's attributes, with the certificates judged at the"
            " enrollment time. Exit 0 all verified, 1 some refused, 2 usage or set-up."
        ),
    )
    which = v.add_mutually_exclusive_group()
    which.add_argument(
        "--device", help="a device id, id prefix or name in the database (default: none)"
    )
    which.add_argument(
        "--all", action="store_true", help="every device with stored evidence (default: off)"
    )
    which.add_argument(
        "--file",
        type=Path,
        help="an evidence file: signet devices --evidence DEVICE > FILE (default: none)",
    )
    v.add_argument(
        "--pubkey", type=Path, help="with --file: the device's public key, PEM (default: none)"
    )
    v.add_argument(
        "--at",
        type=_moment_ms,
        help="with --file: the enrollment time the certificates are judged at, ISO-8601 or"
        " unix ms (default: now)",
    )
    v.add_argument(
        "--roots",
        type=Path,
        help="a TOML file whose [trust] section names the trusted roots and line keys"
        " (default: the --config file, else ./gateway.toml)",
    )
    v.add_argument("--json", action="store_true", help="one JSON array (default: text lines)")
    add_db_args(v)
    v.set_defaults(func=cmd_evidence_verify)
