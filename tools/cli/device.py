"""`signet device ...`: flash, provision and read logs of a MicroPython board over mpremote."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .args import positive_int
from .exits import EXIT_OK, EXIT_REFUSED
from .exits import fail as _fail
from .extras import needs_extra

if TYPE_CHECKING:
    from signet_tools.device.board import Board

EXIT_INCOMPLETE = EXIT_REFUSED


def _board(args: argparse.Namespace, probe: bool = True) -> Board:
    from signet_tools.device import board as device_cmd

    port = device_cmd.find_port(args.port)
    if probe:
        device_cmd.probe(port)
    return device_cmd.Board(port, reset=not args.no_reset)


def cmd_flash(args: argparse.Namespace) -> int:
    from signet_tools.device import board as device_cmd

    try:
        if args.config is not None:  # a wrong file is named before any board is looked for
            device_cmd.board_config(args.config)
        board = _board(args)
        print(f"board on {board.port}")
        complete = device_cmd.flash(board, args.config, source=args.py, deps=not args.no_deps)
    except device_cmd.DeviceError as exc:
        return _fail(str(exc))
    if not complete:
        print("flashed, but umqtt.simple is missing: the agent cannot reach a broker without it")
        return EXIT_INCOMPLETE
    print("flashed: reset the board (or `mpremote reset`) to start the agent")
    return EXIT_OK


def cmd_provision(args: argparse.Namespace) -> int:
    from signet_tools.device import board as device_cmd

    if args.se is not None:
        return _provision_se(args)
    try:
        device_cmd.board_config(args.config_template, args.key_path)  # before any board
        board = _board(args)
        result = device_cmd.provision(
            board,
            args.curve,
            args.config_template,
            args.out_pubkey,
            key_path=args.key_path,
            replace=args.replace_key,
            out_config=args.out_config,
        )
    except device_cmd.DeviceError as exc:
        return _fail(str(exc))
    what = "generated on the board" if result.state == "new" else "already on the board (kept)"
    print(f"device id  {result.device_id}")
    print(f"curve      {result.curve}")
    print(f"key        :{args.key_path} {what}; the private key never left the board")
    print(f"public     {args.out_pubkey}")
    print(f"config     :{device_cmd.BOARD_CONFIG} written (key.path = {args.key_path})")
    for line in enroll_next_step(args.out_pubkey):
        print(line)
    return EXIT_OK


def _provision_se(args: argparse.Namespace) -> int:
    """`--se atecc608`: the chip-side steps on the board, the evidence written here."""
    from signet import keyfile
    from signet_tools.device import board as device_cmd
    from signet_tools.records import evidence

    trust_and_go = args.chain is not None
    if trust_and_go == (args.line_key is not None):
        return _fail(
            "--se atecc608 needs either --challenge HEX and --chain FILE.pem (a Trust&GO part) "
            "or --line-key FILE (a chip you configured and locked)"
        )
    if trust_and_go and args.challenge is None:
        return _fail("--chain needs --challenge HEX (from `signet challenge` on the gateway)")
    key_path = args.key_path if args.key_path != device_cmd.BOARD_KEY else "signet-se.json"
    key = device_cmd.se_key_entry(
        key_path, args.address, args.slot, args.i2c_id, args.scl, args.sda
    )
    try:
        chain = evidence.read_chain(args.chain) if trust_and_go else None
        line_signer = None if trust_and_go else keyfile.load(str(args.line_key))
        device_cmd.board_config(args.config_template, key=key)  # before any board
        board = _board(args)
        generate = "always" if args.replace_key else ("never" if trust_and_go else "if_empty")
        facts = device_cmd.provision_se(
            board,
            args.config_template,
            key,
            args.challenge if trust_and_go else None,
            generate,
            out_config=args.out_config,
        )
        obj = evidence.for_chip(facts, chain, line_signer, args.line_name)
    except device_cmd.ChipRefused as exc:
        return _fail(str(exc), EXIT_REFUSED)
    except (device_cmd.DeviceError, evidence.EvidenceInputError) as exc:
        return _fail(str(exc))
    except (OSError, keyfile.KeyFileError) as exc:
        return _fail(f"--line-key: {args.line_key}: {exc}")
    from signet_gateway.verify.pubkeys import DevicePublicKey

    public_key = bytes.fromhex(facts["public_key"])
    args.out_pubkey.parent.mkdir(parents=True, exist_ok=True)
    args.out_pubkey.write_bytes(DevicePublicKey.from_sec1(public_key, "p256").to_pem())
    out_evidence = args.out_evidence or evidence.default_path(args.out_pubkey)
    evidence.write(obj, out_evidence)
    what = "made by GenKey in the chip" if facts["state"] == "new" else "already in the chip (kept)"
    print(f"device id  {facts['device_id']}")
    print(f"chip       {facts['chip']} serial {facts['serial']}, slot {facts['slot']}, "
          f"address 0x{args.address:02x}")  # fmt: skip
    print(f"key        {what}; self-test passed; the private key cannot leave the chip")
    print(f"binding    :{key_path}")
    print(f"public     {args.out_pubkey}")
    print(f"evidence   {out_evidence} ({obj['kind']})")
    print(f"config     :{device_cmd.BOARD_CONFIG} written (key.type = atecc608)")
    for line in enroll_next_step(args.out_pubkey, out_evidence):
        print(line)
    return EXIT_OK


def enroll_commands(
    pubkey: Path, config: str = "gateway.toml", evidence: Path | None = None
) -> tuple[list[str], list[str]]:
    """The `signet` arguments that enroll a provisioned key as printed (docs/DEVICE.md
    section 6): creating the gateway's database (needed once, if it has none yet), then the
    enrollment. A key in a file is software tier; with an evidence file, hardware tier. The
    name suggested is the PEM file's, e.g. coffee-01 for keys/coffee-01.pem."""
    init = ["db", "init", "--config", config]
    tier = ["--tier", "software"] if evidence is None else [
        "--tier", "hardware", "--evidence", str(evidence)]  # fmt: skip
    enroll = ["enroll", "--pubkey", str(pubkey), *tier, "--name", pubkey.stem,
              "--config", config]  # fmt: skip
    return init, enroll


def enroll_next_step(pubkey: Path, evidence: Path | None = None) -> list[str]:
    """What `signet device provision` and `signet agent provision` print last: commands that
    work as printed."""
    init, enroll = enroll_commands(pubkey, evidence=evidence)
    return [
        "next       enroll it on the gateway's host:",
        f"             signet {shlex.join(enroll)}",
        f"           (a new gateway creates its database first: signet {shlex.join(init)})",
    ]


def cmd_manifest(args: argparse.Namespace) -> int:
    """Write the freeze manifest for a board config: the modules it loads, nothing else."""
    from signet import config as config_mod
    from signet_tools.device import board as device_cmd
    from signet_tools.device import manifest

    try:
        obj = device_cmd.board_config(args.config)
    except device_cmd.DeviceError as exc:
        return _fail(str(exc))
    cfg = config_mod.parse(obj, board=True)
    out = args.out
    try:
        text = manifest.render(cfg, args.port, out or Path("manifest.py"), args.config.name)
    except manifest.NoEntryPoint as exc:
        return _fail(str(exc))
    if out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        out.write_text(text)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}")
    need = manifest.needs(cfg)
    print(f"wrote {out}: {len(need.files)} modules of the signet package, "
          f"{', '.join(need.packages)} from micropython-lib")  # fmt: skip
    print("build (in MicroPython's source tree):")
    print("  " + manifest.BUILD_COMMANDS[args.port].format(manifest=out.resolve().as_posix()))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from signet_tools.device import board as device_cmd

    try:
        port = device_cmd.find_port(args.port)
        print(f"signet: streaming {port} (Ctrl-C to stop)", file=sys.stderr)
        device_cmd.logs(port, lines=args.lines)
    except device_cmd.DeviceError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _pin(text: str) -> int | str:
    return int(text) if text.isdigit() else text  # ESP32 GPIO numbers, rp2 names ("GP5")


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def _port_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", help="serial port, e.g. /dev/ttyUSB0 (default: the first USB one)")


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
    p = sub.add_parser("device", help="a MicroPython board over USB: flash, provision, logs")
    device = p.add_subparsers(dest="device_command", required=True, metavar="DEVICE_COMMAND")

    f = device.add_parser("flash", help="copy the agent (+ config) to the board with mpremote")
    needs_extra(f, "tools")
    _port_options(f)
    f.add_argument(
        "--config",
        type=Path,
        help="board config JSON to copy to :config.json (default: none, the board's is kept)",
    )
    f.add_argument("--py", action="store_true", help="copy .py sources instead of .mpy")
    f.add_argument("--no-deps", action="store_true", help="do not mip-install umqtt.simple")
    f.add_argument(
        "--no-reset", action="store_true", help="do not soft-reset first (mpremote resume)"
    )
    f.set_defaults(func=cmd_flash)

    v = device.add_parser("provision", help="generate the device key ON the board; get its pubkey")
    needs_extra(v, "tools")
    _port_options(v)
    v.add_argument("--curve", choices=("p256", "secp256k1"), default="p256", help="(default: p256)")
    v.add_argument(
        "--config-template",
        type=Path,
        required=True,
        help="board config JSON (wifi, mqtt, ...); key.path is filled in",
    )
    v.add_argument("--out-pubkey", type=Path, required=True, help="write the public key PEM here")
    v.add_argument(
        "--out-config",
        type=Path,
        help="also keep a copy of the written config here (default: no copy)",
    )
    v.add_argument(
        "--key-path",
        default="signet.key",
        help="key file on the board (default: signet.key; with --se its binding file, "
        "signet-se.json)",
    )
    v.add_argument(
        "--replace-key",
        action="store_true",
        help="generate a new key even if one exists (a NEW device identity)",
    )
    v.add_argument(
        "--no-reset", action="store_true", help="do not soft-reset first (mpremote resume)"
    )
    se = v.add_argument_group(
        "secure element",
        "--se atecc608: the key is in an ATECC608 on the board's I2C bus (docs/TRUST.md, "
        "'Enrolling a device step by step'); --curve and the key file do not apply",
    )
    se.add_argument("--se", choices=("atecc608",), help="the key's chip (default: none, a file)")
    se.add_argument(
        "--address",
        type=lambda t: int(t, 0),
        default=0x60,
        help="the chip's I2C address (default 0x60; Trust&GO parts: 0x35)",
    )
    se.add_argument("--slot", type=int, default=0, help="the key's slot (default 0)")
    se.add_argument("--i2c-id", type=int, default=0, help="machine.I2C bus id (default 0)")
    se.add_argument("--scl", type=_pin, help="SCL pin (default: the port's pin for the id)")
    se.add_argument("--sda", type=_pin, help="SDA pin (default: the port's pin for the id)")
    se.add_argument("--challenge", type=_hex, help="the gateway's challenge, hex (default: none)")
    se.add_argument(
        "--chain", type=Path, help="Trust&GO: device + signer certs, PEM (default: none)"
    )
    se.add_argument(
        "--line-key", type=Path, help="your line's key (signet line keygen; default: none)"
    )
    se.add_argument("--line-name", default="line-1", help="the line's name (default: line-1)")
    se.add_argument("--out-evidence", type=Path, help="default: PUBKEY-stem.evidence.json")
    v.set_defaults(func=cmd_provision)

    m = device.add_parser(
        "manifest",
        help="a freeze manifest with only the modules a board config loads",
        description="Write a MicroPython freeze manifest (FROZEN_MANIFEST) that freezes the "
        "firmware modules this board config loads and nothing else: the key's backend, the "
        "sources, NTP, TLS and the window of sale refs only when configured "
        "(docs/DEVICE.md, 'mip or a frozen firmware'). firmware/manifest.py freezes everything.",
    )
    m.add_argument("--config", type=Path, required=True, help="the board config JSON")
    m.add_argument(
        "--port",
        choices=("esp32", "rp2"),
        default="esp32",
        help="the MicroPython port whose own manifest it includes: esp32 (ESP32_GENERIC) "
        "or rp2 (RPI_PICO_W) (default: esp32)",
    )
    m.add_argument("--out", type=Path, help="write it here (default: print it)")
    m.set_defaults(func=cmd_manifest)

    g = device.add_parser("logs", help="stream the agent's log lines from the board")
    needs_extra(g, "tools")
    _port_options(g)
    g.add_argument("--lines", type=positive_int, help="stop after this many lines (default: never)")
    g.set_defaults(func=cmd_logs)
