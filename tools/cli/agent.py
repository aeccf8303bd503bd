"""`signet agent ...`: run the device agent on CPython (a Raspberry Pi); `signet bench agent`."""

from __future__ import annotations

import argparse
import json
import sys
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
