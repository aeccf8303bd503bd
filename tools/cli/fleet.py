"""`signet simulate`: a virtual fleet running the real agent code against a broker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from signet_gateway.mcr.display import counted

from .args import non_negative_number, positive_seconds
from .exits import EXIT_OK, EXIT_REFUSED
from .exits import fail as _fail
from .gateway import add_db_args, gateway_db

EXIT_INCOMPLETE = EXIT_REFUSED  # ran, but not every device was acknowledged before the deadline


def cmd_simulate(args: argparse.Namespace) -> int:
    from signet_tools.fleet import simulate

    try:
        broker = simulate.parse_broker(args.broker)
        outages = [simulate.OutageSpec.parse(s) for s in args.outage]
        from signet_gateway.config import ConfigError
        from signet_gateway.mcr.aggregate import settings_from_config

        try:
            db, config = gateway_db(args.db, args.config)
            tolerance = None if config is None else settings_from_config(config.aggregate)
        except ConfigError as exc:
            return _fail(str(exc))
        params = simulate.FleetParams(
            devices=args.devices,
            duration_s=args.duration,
            broker=broker,
            out=args.out,
            db=db,
            rate_per_min=args.rate,
            outages=outages,
            reboots=args.reboots,
            reboot_down_s=args.reboot_down,
            heartbeat_s=args.heartbeat,
            hb_tolerance=simulate.hb_tolerance_of(db, tolerance),
            hardware=args.hardware,
            name_prefix=args.name_prefix,
            seed=args.seed,
            drain_timeout_s=args.drain_timeout,
        )
        fleet = simulate.Fleet(params)
        fleet.create()
    except simulate.SimulationError as exc:
        return _fail(str(exc))
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    say(
        f"simulating {counted(params.devices, 'device')} for {params.duration_s:g} s against "
        f"{args.broker}: heartbeat {params.heartbeat_s} s, {params.rate_per_min:g} sales/min"
        f" per device, {counted(params.reboots, 'reboot')}, outages: "
        + (", ".join(str(o) for o in outages) or "none")
    )
    for dev in fleet.devices:
        say(f"  enrolled {dev.name}  {dev.kid}  {dev.curve:9}  tier {dev.tier}"
            + (f"  (key in {simulate.KEY_LABELS[dev.key_kind]})" if dev.tier == "hardware"
               else ""))  # fmt: skip
    if fleet.trust:
        say("  the hardware devices' test roots, for gateway.toml (signet devices --evidence):")
        say("    [trust]")
        for name, paths in fleet.trust.items():
            say(f"    {name} = {json.dumps(paths)}")
    fleet.events = say
    try:
        ok = fleet.run(
            progress=None if args.quiet else lambda f, t: say(simulate.progress_line(f, t))
        )
    except simulate.SimulationError as exc:
        fleet.write_truth()
        return _fail(str(exc))
    path = fleet.write_truth()
    truth = fleet.truth()
    tot = truth["totals"]
    say(
        f"{counted(tot['records'], 'record')} signed "
        f"({counted(tot['heartbeats'], 'heartbeat')}), revenue "
        f"{simulate.fmt_money(tot['revenue'])}, {counted(tot['reboots'], 'reboot')}; "
        f"ground truth -> {path}"
    )
    if not ok:
        late = [d.name for d in fleet.devices if not d.done or not d.drained()]
        print(
            f"signet: not every device was acknowledged within {params.drain_timeout_s:g} s"
            f" (is a gateway running on this broker and database?): {', '.join(late)}",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    say("every device's journal is acknowledged up to its last record")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser(
        "simulate",
        help="run virtual devices (the real agent code) against a broker and a gateway",
        description=(
            "Runs N virtual devices with the real agent code under CPython, enrolled in the"
            " gateway's database, then waits until every device is acknowledged and writes"
            " the ground truth to OUT/truth.json. Exit 0: all acknowledged; 1: deadline"
            " missed; 2: usage error."
        ),
    )
    p.add_argument("--devices", type=int, required=True, help="number of virtual devices")
    p.add_argument(
        "--duration", type=positive_seconds, required=True, help="seconds of simulated trade"
    )
    p.add_argument(
        "--rate",
        type=non_negative_number,
        default=6.0,
        help="sales per device per minute (default: 6)",
    )
    p.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="AT+DUR[:K]",
        help="network outage: at AT s for DUR s, on the first K devices (default all); repeat",
    )
    p.add_argument(
        "--reboots", type=int, default=0, help="crash-and-reboot events in the run (default: 0)"
    )
    p.add_argument(
        "--reboot-down",
        type=positive_seconds,
        default=3.0,
        help="seconds a rebooting device is off (default: 3)",
    )
    p.add_argument(
        "--heartbeat", type=int, default=2, help="heartbeat interval, seconds (default: 2)"
    )
    p.add_argument(
        "--hardware",
        type=int,
        default=0,
        help="the first K devices keep their key in an emulated ATECC608 (every second one in a "
        "swtpm when installed) and enroll as hardware tier on verified evidence (default: 0)",
    )
    p.add_argument(
        "--name-prefix",
        default="sim",
        help="devices are named PREFIX-01, PREFIX-02, ...: names are unique among active"
        " devices, so a second fleet on one database needs its own prefix (default: sim)",
    )
    p.add_argument(
        "--seed", type=int, help="random seed: sales, reboot schedule (default: a new one each run)"
    )
    p.add_argument(
        "--drain-timeout",
        type=positive_seconds,
        default=60.0,
        help="seconds to wait for acks after the run (default: 60)",
    )
    p.add_argument("--broker", required=True, metavar="HOST:PORT", help="MQTT broker")
    add_db_args(p, "--gateway-config")
    p.add_argument("--out", type=Path, required=True, help="directory for keys, journals, truth")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_simulate)
