"""`signet agent ...`: run the device agent on CPython (a Raspberry Pi); `signet bench agent`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .args import positive_int, positive_seconds
from .exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, fail
from .extras import add_micropython_option, needs_extra

DEFAULT_SOCKET = "/run/signet/agent.sock"  # signet.config's default for a local source

# `agent record` and `agent status` (docs/AGENT.md, "Recording from the machine's software"):
# 0 recorded (or already recorded under the same ref), 1 refused by the agent, 2 usage error,
# and two ways of getting no answer, which a caller must retry differently:
EXIT_NOT_DELIVERED = 3  # the request never reached the agent: not recorded, safe to retry
EXIT_UNKNOWN = 4  # sent, no answer: it may be recorded; retry with the same --ref


# -- signet agent run / record / status (HOSTAGENT) ---------------------------------------


def cmd_agent_run(args: argparse.Namespace) -> int:
    """0 after a clean stop, 2 when the agent cannot start, 1 when it failed while running."""
    from signet_tools.pi import run as agent_run

    try:
        return EXIT_OK if agent_run.run(args.config) else EXIT_REFUSED
    except agent_run.StartError as exc:
        return fail(str(exc), EXIT_USAGE)


def _socket_path(args: argparse.Namespace) -> str:
    """--socket, else the first local source of --config, else the default path."""
    if args.socket:
        return str(args.socket)
    if args.config:
        from signet_tools.pi import run as agent_run

        cfg = agent_run.load_config(args.config)
        for src in cfg.sources:
            if src["type"] == "local":
                return str(src["path"])
        raise agent_run.StartError(f"{args.config}: no source of type 'local' (no socket)")
    return DEFAULT_SOCKET


def _ask(args: argparse.Namespace, req: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    from signet_tools.pi import local_socket
    from signet_tools.pi import run as agent_run

    recording = req["kind"] != "stats"
    try:
        answer = local_socket.request(_socket_path(args), req, timeout=args.timeout)
    except agent_run.StartError as exc:
        return fail(str(exc)), None
    except local_socket.NotDelivered as exc:
        hint = "; not recorded, safe to retry" if recording else ""
        return fail(f"{exc}{hint}", EXIT_NOT_DELIVERED), None
    except local_socket.OutcomeUnknown as exc:
        hint = ""
        if req.get("ref"):
            hint = "; it may have been recorded: retry with the same --ref"
        elif recording:
            hint = "; it may have been recorded, and a retry without a ref may record it twice"
        return fail(f"{exc}{hint}", EXIT_UNKNOWN), None
    error = str(answer.get("error", answer))
    if not answer.get("ok"):
        if error.startswith("busy:"):  # the agent did not read the request
            busy = f"the agent did not take the request ({error}); not recorded, safe to retry"
            return fail(busy, EXIT_NOT_DELIVERED), None
        print(f"signet: refused: {error}", file=sys.stderr)
        return EXIT_REFUSED, answer
    return EXIT_OK, answer


def cmd_agent_record(args: argparse.Namespace) -> int:
    req: dict[str, Any] = {"kind": args.kind}
    if args.kind == "rev":
        req.update(amount=args.amount, currency=args.currency)
        optional = {"ref": args.ref, "src": args.src}
    elif args.kind == "meter":
        req.update(q=args.q, unit=args.unit)
        optional = {"src": args.src}
    else:
        req.update(ev=args.ev)
        optional = {"msg": args.msg}
    req.update({k: v for k, v in optional.items() if v is not None})
    code, answer = _ask(args, req)
    if answer is not None and code == EXIT_OK:
        if answer.get("repeat"):
            # A retry of a sale the agent already recorded under this ref: nothing new was
            # signed, and the n is the original record's.
            print(f"already recorded {args.kind} n={answer['n']} (ref {args.ref})")
        else:
            print(f"recorded {args.kind} n={answer['n']}")
    return code


def cmd_agent_status(args: argparse.Namespace) -> int:
    code, answer = _ask(args, {"kind": "stats"})
    if answer is not None and code == EXIT_OK:
        print(json.dumps(answer["stats"], indent=2, sort_keys=True))
    return code


def _hex_bytes(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None
    if not 1 <= len(value) <= 64:
        raise argparse.ArgumentTypeError(f"{len(value)} bytes; expected 1..64 (64 hex digits)")
    return value


class _Stop(Exception):
    """Provisioning or rotation stops here: the error line and the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Made:
    """A key provisioned: what the report prints and what enrollment needs."""

    public_key: bytes
    lines: list[tuple[str, str]]
    pubkey: Path
    evidence: Path | None

    @property
    def device_id(self) -> str:
        from signet.cose import kid_for

        return kid_for(self.public_key).hex()


def cmd_agent_provision(args: argparse.Namespace) -> int:
    """0 provisioned (evidence written), 1 the chip/TPM is refused or a step is left to do,
    2 usage or set-up error."""
    from signet_tools.pi import run as agent_run

    try:
        cfg = agent_run.load_config(args.config)
    except agent_run.StartError as exc:
        return fail(str(exc))
    key_cfg = cfg.key
    backend = args.backend or key_cfg["type"]
    if backend != key_cfg["type"]:
        return fail(
            f"--backend {backend}: the config's key.type is {key_cfg['type']!r}; set key.type "
            f"to {backend!r} (and its fields: docs/DEVICE.md section 7) first"
        )
    try:
        made = _provision(args, key_cfg, args.new_key)
    except _Stop as stop:
        return fail(str(stop), stop.code)
    _report(made, [])
    return EXIT_OK


def _provision(args: argparse.Namespace, key_cfg: dict[str, Any], new_key: bool) -> _Made:
    from signet_tools.pi import provision

    try:
        if key_cfg["type"] == "atecc608":
            return _provision_atecc608(args, key_cfg, provision, new_key)
        if key_cfg["type"] == "tpm2":
            return _provision_tpm2(args, key_cfg, provision, new_key)
        return _provision_file(args, key_cfg, provision, new_key)
    except provision.ProvisionError as exc:
        raise _Stop(str(exc), EXIT_REFUSED if exc.refused else EXIT_USAGE) from None


def _outputs(args: argparse.Namespace, key_path: str) -> tuple[Path, Path]:
    from signet_tools.records import evidence

    # Default: beside the key, named after it: chip.json -> chip.pem, chip.evidence.json.
    pubkey = args.out_pubkey or Path(key_path).with_suffix(".pem")
    return pubkey, args.out_evidence or evidence.default_path(pubkey)


def _write_pem(public_key: bytes, out: Path) -> None:
    from signet_gateway.verify.pubkeys import DevicePublicKey

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(DevicePublicKey.from_sec1(public_key, "p256").to_pem())


def _report(made: _Made, extra: list[str]) -> None:
    """The provisioned key and the enroll command that works as printed (extra: more
    arguments for it, a rotation's)."""
    from .device import enroll_commands

    print(f"device id  {made.device_id}")
    for label, text in made.lines:
        print(f"{label:<10} {text}")
    print(f"public     {made.pubkey}")
    if made.evidence is not None:
        print(f"evidence   {made.evidence}")
    init, enroll = enroll_commands(made.pubkey, evidence=made.evidence)
    if extra:  # a rotation: the machine keeps its name, the new key gets none of its own
        enroll = enroll[: enroll.index("--name")] + enroll[enroll.index("--name") + 2 :] + extra
    print("next       enroll it on the gateway's host:")
    print(f"             signet {shlex.join(enroll)}")
    if not extra:
        print(f"           (a new gateway creates its database first: signet {shlex.join(init)})")


def _provision_atecc608(
    args: argparse.Namespace, key_cfg: dict[str, Any], provision: Any, new_key: bool
) -> _Made:
    from signet import keyfile
    from signet_tools.records import evidence

    trust_and_go = getattr(args, "chain", None) is not None
    if trust_and_go == (args.line_key is not None):
        raise _Stop(
            "--backend atecc608 needs either --challenge HEX and --chain FILE.pem (a Trust&GO "
            "part: its certificates) or --line-key FILE (a chip you configured and locked: "
            "a statement signed by your line's key)"
        )
    if trust_and_go and args.challenge is None:
        raise _Stop("--chain needs --challenge HEX (from `signet challenge` on the gateway)")
    chain: list[bytes] = []
    line_signer = None
    try:
        if trust_and_go:
            chain = evidence.read_chain(args.chain)
        else:
            line_signer = keyfile.load(str(args.line_key))
    except evidence.EvidenceInputError as exc:
        raise _Stop(str(exc)) from None
    except (OSError, keyfile.KeyFileError) as exc:
        raise _Stop(f"--line-key: {args.line_key}: {exc}") from None
    generate = "always" if new_key else ("never" if trust_and_go else "if_empty")
    facts = provision.atecc608(key_cfg, args.challenge if trust_and_go else None, generate)
    public_key = bytes.fromhex(facts["public_key"])
    pubkey, evidence_path = _outputs(args, key_cfg["path"])
    try:
        obj = evidence.for_chip(facts, chain if trust_and_go else None, line_signer, args.line_name)
    except evidence.EvidenceInputError as exc:
        raise _Stop(str(exc)) from None
    _write_pem(public_key, pubkey)
    evidence.write(obj, evidence_path)
    what = "made by GenKey in the chip" if facts["state"] == "new" else "already in the chip (kept)"
    lines = [
        (
            "chip",
            f"{facts['chip']} serial {facts['serial']}, slot {facts['slot']}, "
            f"address 0x{key_cfg['address']:02x}",
        ),
        ("key", f"{what}; self-test passed; the private key cannot leave the chip"),
        ("binding", key_cfg["path"]),
        ("kind", obj["kind"]),
    ]
    return _Made(public_key, lines, pubkey, evidence_path)


def _provision_tpm2(
    args: argparse.Namespace, key_cfg: dict[str, Any], provision: Any, new_key: bool
) -> _Made:
    from signet_tools.records import evidence

    ak_path = args.ak or Path(key_cfg["path"]).with_name(Path(key_cfg["path"]).name + ".ak")
    ak = provision.tpm2_ak(key_cfg["tcti"], ak_path)
    if args.ak_chain is None:
        ak_pem = ak_path.with_name(ak_path.name + ".pub.pem")
        from cryptography.hazmat.primitives import serialization

        ak_pem.write_bytes(
            ak.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        print(f"attestation key  {ak_path} (its public key: {ak_pem})")
        print("next       have your TPM CA certify that AK (docs/TRUST.md), then run again with")
        print("           --ak-chain AK-CERT.pem --challenge HEX")
        raise _Stop("the attestation key has no certificate yet (--ak-chain)", EXIT_REFUSED)
    if args.challenge is None:
        raise _Stop("--backend tpm2 needs --challenge HEX (from `signet challenge` on the gateway)")
    try:
        chain = evidence.read_chain(args.ak_chain, "--ak-chain")
    except evidence.EvidenceInputError as exc:
        raise _Stop(str(exc)) from None
    obj = provision.tpm2(key_cfg, args.challenge, ak, chain, new_key)
    public_key = bytes.fromhex(obj["public_key"])
    pubkey, evidence_path = _outputs(args, key_cfg["path"])
    _write_pem(public_key, pubkey)
    evidence.write(obj, evidence_path)
    lines = [
        ("tpm", f"{key_cfg['tcti']}: key blob {key_cfg['path']}, AK {ak_path}"),
        ("kind", "tpm2-certify"),
    ]
    return _Made(public_key, lines, pubkey, evidence_path)


def _provision_file(
    args: argparse.Namespace, key_cfg: dict[str, Any], provision: Any, new_key: bool
) -> _Made:
    signer, state = provision.software(key_cfg, new_key)
    pubkey, _ = _outputs(args, key_cfg["path"])
    _write_pem(signer.public_key, pubkey)
    what = "generated (mode 0600)" if state == "new" else "already there (kept)"
    return _Made(signer.public_key, [("key", f"{key_cfg['path']} {what}")], pubkey, None)


def _next_key_path(path: str) -> str:
    """dev.key -> dev-2.key (-3, ... while taken): the new key never overwrites one."""
    p = Path(path)
    stem, suffix = p.stem, p.suffix
    base = stem.rsplit("-", 1)[0] if stem.rsplit("-", 1)[-1].isdigit() else stem
    i = 2
    while (candidate := p.with_name(f"{base}-{i}{suffix}")).exists():
        i += 1
    return str(candidate)


def cmd_agent_rotate(args: argparse.Namespace) -> int:
    """0 rotated (statement, new key and evidence written), 1 refused (records still to drain,
    the old key cannot sign), 2 usage or set-up error."""
    from signet import config as config_mod
    from signet import statement
    from signet_tools.pi import rotate
    from signet_tools.pi import run as agent_run
    from signet_tools.pi.keys import KeyUnusable, open_device_key

    config_path = Path(args.config)
    try:
        cfg = agent_run.load_config(config_path)
        old = open_device_key(cfg.key)
    except agent_run.StartError as exc:
        return fail(str(exc))
    except KeyUnusable as exc:
        return fail(str(exc))
    if old.selftest_error is not None or old.signer is None:
        return fail(
            f"the old key cannot sign the rotate statement ({old.event_message()}): a key "
            "that failed is revoked (signet revoke), not rotated",
            EXIT_REFUSED,
        )
    old_id = old.signer.device_id
    raw = json.loads(config_path.read_text())
    backend = args.new_backend or cfg.key["type"]
    new_section: dict[str, Any] = {"type": backend}
    if backend == cfg.key["type"]:  # same backend: its settings carry over
        new_section.update({k: v for k, v in raw["key"].items() if k != "fallback_path"})
        new_section["type"] = backend
    if args.new_key_path is not None:
        new_section["path"] = args.new_key_path
    elif backend == cfg.key["type"] and backend != "atecc608":
        new_section["path"] = _next_key_path(raw["key"]["path"])
    elif backend == "atecc608":
        new_section["path"] = _next_key_path(raw["key"].get("path", "signet-se.json"))
    else:
        return fail(f"--new-backend {backend} needs --new-key-path (where its key goes)")
    if args.new_slot is not None:
        new_section["slot"] = args.new_slot
    if (
        backend == "atecc608"
        and cfg.key["type"] == "atecc608"
        and new_section.get("slot", 0) == cfg.key["slot"]
    ):
        return fail(
            f"--new-slot: the old key is in slot {cfg.key['slot']} and must sign the statement "
            "after the new key exists: give the new key another slot (GenKey allowed there)"
        )
    try:
        new_cfg = config_mod.parse({**raw, "key": new_section})
    except config_mod.ConfigError as exc:
        return fail(f"the new key: {exc}")
    base = config_path.resolve().parent
    new_key_cfg = new_cfg.key
    new_key_cfg["path"] = str(base / new_key_cfg["path"])
    if Path(new_key_cfg["path"]).exists() and backend != "atecc608":
        return fail(f"--new-key-path: {new_key_cfg['path']} exists; a new key needs a new file")
    try:
        lock = rotate.lock(cfg.journal["dir"])
    except rotate.RotateRefused as exc:
        return fail(str(exc), EXIT_REFUSED)
    try:
        last = rotate.check_drained(cfg, rotate.open_journal(cfg), old_id)
        made = _provision(args, new_key_cfg, backend == "atecc608")
        signed = statement.rotate(
            old.signer, made.public_key, "p256", last, int(time.time() * 1000)
        )
        out = args.out_statement or made.pubkey.with_name(made.pubkey.stem + ".rotate.cbor")
        out.write_bytes(signed)
        aside = rotate.move_aside(cfg.journal["dir"], old_id)
    except rotate.RotateRefused as exc:
        return fail(str(exc), EXIT_REFUSED)
    except _Stop as stop:
        return fail(str(stop), stop.code)
    finally:
        lock.release()
    backup = rotate.rewrite_config(config_path, new_section, old_id)
    print(f"rotated    {old_id} -> {made.device_id}: the old key signed up to n={last}")
    print(f"statement  {out} (signed by the old key)")
    print(f"journal    the old one kept in {aside}; the new key starts its own")
    print(f"config     {config_path} now names the new key (the old one: {backup})")
    _report(made, ["--rotate-from", old_id, "--statement", str(out)])
    return EXIT_OK


def _client_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", help=f"the agent's local socket (default {DEFAULT_SOCKET})")
    where.add_argument(
        "--config",
        help="take the socket path from this agent config (default: --socket's default)",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds to wait for the agent (default 10)",
    )


def _register_agent(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    p = sub.add_parser("agent", help="the device agent on CPython (Raspberry Pi)")
    agent = p.add_subparsers(dest="agent_command", required=True, metavar="AGENT_COMMAND")

    r = agent.add_parser(
        "run",
        help="run the agent until SIGTERM (systemd: signet-agent.service)",
        description="Run the device agent until SIGTERM/SIGINT. One agent per journal "
        "directory: a second one on the same journal.dir refuses to start, naming the "
        "holder's pid. Exit 0 after a clean stop, 1 when it failed while running, 2 when it "
        "cannot start (config, journal.dir unset or held by another agent, key, TLS files, "
        "socket).",
    )
    r.add_argument("--config", required=True, help="agent config JSON (docs/DEVICE.md)")
    r.set_defaults(func=cmd_agent_run)

    v = agent.add_parser(
        "provision",
        help="make or find the device key (file, ATECC608, TPM) and write its evidence",
        description="Provision the key the config's key section names, and write the public "
        "key PEM and the evidence file `signet enroll --tier hardware --evidence` checks "
        "(docs/TRUST.md, 'Enrolling a device step by step'). atecc608, a Trust&GO part: "
        "--challenge HEX --chain FILE.pem (the chip answers the gateway's challenge; the chain "
        "is the device certificate, then the signer's). atecc608, a chip you configured and "
        "locked: --line-key FILE (GenKey in the slot if it is empty or with --new-key; your "
        "line's key signs a statement). tpm2: --challenge HEX --ak-chain FILE.pem (first run "
        "without --ak-chain creates the attestation key for your CA). file: a key file "
        "(software tier). Exit 0 provisioned, 1 the chip or TPM is refused or a step is left "
        "(the message says which), 2 usage or set-up error.",
    )
    v.add_argument("--config", required=True, help="agent config JSON (its key section)")
    v.add_argument("--backend", choices=("atecc608", "tpm2", "file"), help="(default: key.type)")
    v.add_argument(
        "--challenge",
        type=_hex_bytes,
        help="the gateway's challenge, hex (signet challenge; default: none)",
    )
    v.add_argument(
        "--chain", type=Path, help="atecc608 Trust&GO: device + signer certs, PEM (default: none)"
    )
    v.add_argument(
        "--line-key", type=Path, help="atecc608: the line's key (signet line keygen; default: none)"
    )
    v.add_argument(
        "--line-name", default="line-1", help="the line's name in its statement (default: line-1)"
    )
    v.add_argument("--ak", type=Path, help="tpm2: attestation key blob (default: KEY.ak)")
    v.add_argument(
        "--ak-chain", type=Path, help="tpm2: the AK's certificate (+ CAs), PEM (default: none)"
    )
    v.add_argument(
        "--new-key",
        action="store_true",
        help="make a new key even if there is one (a NEW device identity)",
    )
    v.add_argument("--out-pubkey", type=Path, help="public key PEM (default: KEY-stem.pem)")
    v.add_argument(
        "--out-evidence", type=Path, help="evidence JSON (default: PUBKEY-stem.evidence.json)"
    )
    v.set_defaults(func=cmd_agent_provision)

    rot = agent.add_parser(
        "rotate",
        help="hand the machine over to a new key (statement signed by the old one)",
        description="Rotate the device key (docs/TRUST.md, 'Rotating a key'). The agent must "
        "be stopped. Refused while the journal holds records the gateway has not acknowledged "
        "(its retained ack is read from the broker): they must drain first. Then the new key "
        "is made (as `signet agent provision` makes one: the same options), the old key signs "
        "the rotate statement (last = its highest journaled n), the old journal is moved aside "
        "(kept), the config names the new key, and the enroll command (--rotate-from, "
        "--statement) is printed. Exit 0 rotated, 1 refused, 2 usage or set-up error.",
    )
    rot.add_argument("--config", required=True, help="agent config JSON")
    rot.add_argument(
        "--new-backend",
        choices=("atecc608", "tpm2", "file"),
        help="where the new key lives (default: where the old one does)",
    )
    rot.add_argument(
        "--new-key-path", help="the new key's file (default: the old one's name + -2, -3, ...)"
    )
    rot.add_argument(
        "--new-slot", type=int, help="atecc608: the new key's slot (default: the config's)"
    )
    rot.add_argument(
        "--challenge", type=_hex_bytes, help="tpm2: the gateway's challenge (default: none)"
    )
    rot.add_argument("--line-key", type=Path, help="atecc608: the line's key (default: none)")
    rot.add_argument("--line-name", default="line-1", help="the line's name (default: line-1)")
    rot.add_argument("--ak", type=Path, help="tpm2: attestation key blob (default: KEY.ak)")
    rot.add_argument(
        "--ak-chain", type=Path, help="tpm2: the AK's certificate, PEM (default: none)"
    )
    rot.add_argument("--out-pubkey", type=Path, help="new public key PEM (default: KEY-stem.pem)")
    rot.add_argument(
        "--out-evidence", type=Path, help="evidence JSON (default: PUBKEY-stem.evidence.json)"
    )
    rot.add_argument(
        "--out-statement", type=Path, help="the statement (default: PUBKEY-stem.rotate.cbor)"
    )
    rot.set_defaults(func=cmd_agent_rotate)

    rec = agent.add_parser(
        "record",
        help="hand a revenue/meter/event record to a running agent",
        description="Hand one record to the running agent over its local socket. Exit 0: "
        "recorded (signed and journaled), the record's n printed; a rev whose --ref the agent "
        "already recorded is not signed again: exit 0 with the original n ('already "
        "recorded'). 1: refused by the agent (the reason is printed; a ref already recorded "
        "with another amount is ref_conflict). 2: usage error, nothing sent. 3: not "
        "delivered (no agent, nothing listening, busy): not recorded, safe to retry. 4: sent "
        "but no answer (timeout, the agent died): it may be recorded; retry with the same "
        "--ref (without a ref a retry may count the sale twice). docs/AGENT.md.",
    )
    kinds = rec.add_subparsers(dest="kind", required=True, metavar="KIND")
    k = kinds.add_parser("rev", help="revenue: integer amount in minor units (250 = 2.50 EUR)")
    k.add_argument("--amount", type=int, required=True, help="minor units; negative = refund")
    k.add_argument("--currency", required=True, help="ISO 4217 code, e.g. EUR")
    k.add_argument(
        "--ref",
        help="payment reference (1..64 bytes, no personal data; default: none), also the "
        "sale's idempotency key: a retry with the same ref is recorded once",
    )
    k.add_argument("--src", help="source token (default: the local source's src)")
    _client_options(k)
    k.set_defaults(func=cmd_agent_record)
    k = kinds.add_parser("meter", help="metered quantity: integer q in unit")
    k.add_argument("--q", type=int, required=True, help="quantity (integer), e.g. 1500")
    k.add_argument("--unit", required=True, help="unit, e.g. Wh, mL, m^3")
    k.add_argument("--src", help="sensor or interface name (token; default: none)")
    _client_options(k)
    k.set_defaults(func=cmd_agent_record)
    k = kinds.add_parser("evt", help="fault or status event")
    k.add_argument("--ev", required=True, help="event code (token), e.g. door_open")
    k.add_argument("--msg", help="detail text (1..64 bytes; default: none)")
    _client_options(k)
    k.set_defaults(func=cmd_agent_record)

    s = agent.add_parser(
        "status",
        help="a running agent's counters (JSON)",
        description="Print a running agent's counters as JSON. Exit 0, or as agent record: "
        "2 usage error, 3 the agent was not reached, 4 no answer.",
    )
    _client_options(s)
    s.set_defaults(func=cmd_agent_status)
    return agent


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    _register_agent(sub)
    # signet bench agent (AGENT)
    b = bench.add_parser("agent", help="device agent on MicroPython: records/s, heap, flash")
    needs_extra(b, "bench")
    b.add_argument("--count", type=positive_int, default=300, help="records to time (default 300)")
    add_micropython_option(b)
    b.set_defaults(func=cmd_bench_agent)


def cmd_bench_agent(args: argparse.Namespace) -> int:
    from signet_tools.bench import agent as bench_agent
    from signet_tools.device import micropython

    try:
        binary = micropython.binary(args.micropython)
    except micropython.BinaryUnusable as exc:
        return fail(str(exc))
    result = bench_agent.run(count=args.count, binary=binary)
    print(bench_agent.format_report(result))
    return EXIT_OK
