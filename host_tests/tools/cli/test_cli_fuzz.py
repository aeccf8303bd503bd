"""Every `signet` command with missing, empty, negative, non-numeric and path-like arguments.

The commands are walked from build_parser (cli_tree.py), so a new command or option is fuzzed
without being listed here; BASELINE only gives commands arguments that let them get past
their first check, so that each bad value is what the command has to deal with. Each case
runs in-process through main(argv) with captured output. What must hold:

- never a traceback: main returns a status or exits through argparse, nothing else escapes;
- a value that cannot be right is a usage error, exit 2, with an error line: a missing
  required argument, an empty one, a choice not offered, a number that is not a number (or
  negative where it must not be), a path below a regular file (nothing can be read or created
  there);
- any other value gets a documented status (0, 1 or 2).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_tree import commands, exclusive_with, name, options, takes_value

from signet_tools.cli.main import main
from signet_tools.records import keygen
from signet_tools.runners.gateway_process import create_gateway_database

pytestmark = pytest.mark.timeout(60)

# Placeholders in BASELINE, filled in from the `world` fixture.
KEY, PUB, RECORDS, DB, BOARD, DEVICE, TMP = (
    "{key}",
    "{pub}",
    "{records}",
    "{db}",
    "{board}",
    "{device}",
    "{tmp}",
)

# Arguments that get each command past its first check (None: a flag). Numbers are small, so
# that a command that wrongly accepted a bad value would still end quickly.
BASELINE: dict[str, dict[str, str | None]] = {
    "keygen": {"--out": f"{TMP}/new.key"},
    "sign": {"--key": KEY, "--seq": "1", "--kind": "evt", "--field": "ev=door_open", "--hex": None},
    "inspect": {"file": RECORDS},
    "verify": {"file": RECORDS, "--pubkey": PUB},
    "bench sign": {"--count": "1"},
    "bench verify": {"--seconds": "0.1"},
    "bench agent": {"--count": "1"},
    "bench gateway": {"--records": "2", "--devices": "1", "--threads": "1"},
    "demo": {"--devices": "2", "--duration": "1", "--seed": "1"},
    "device flash": {"--port": f"{TMP}/ttyNONE"},
    "device provision": {
        "--port": f"{TMP}/ttyNONE",
        "--config-template": BOARD,
        "--out-pubkey": f"{TMP}/board.pem",
    },
    "device logs": {"--port": f"{TMP}/ttyNONE"},
    "gateway run": {"--config": f"{TMP}/none.toml"},
    "enroll": {"--pubkey": PUB, "--tier": "software", "--db": DB},
    "devices": {"--db": DB},
    "revoke": {"device": DEVICE, "--db": DB},
    "report": {"--db": DB},
    "export peaq": {"--db": DB, "--out": f"{TMP}/events.json"},
    "simulate": {
        "--devices": "1",
        "--duration": "0.1",
        "--drain-timeout": "0.1",
        "--broker": "127.0.0.1:1",
        "--db": DB,
        "--out": f"{TMP}/sim",
    },
}
AGENT_CLIENTS = ("agent record rev", "agent record meter", "agent record evt", "agent status")
for client in AGENT_CLIENTS:
    BASELINE[client] = {"--socket": f"{TMP}/agent.sock", "--timeout": "1"}

# Commands that would do long work if a value were valid: only values that can never be
# valid (expected exit 2, refused before any work) are tried on them.
LONG_RUNNING = {"demo", "simulate", "bench sign", "bench verify", "bench agent", "bench gateway"}

# Numbers for which a negative value means something (a refund, a quantity sent back).
NEGATIVE_OK = {
    ("agent record rev", "--amount"),
    ("agent record meter", "--q"),
    ("demo", "--seed"),
    ("simulate", "--seed"),
}


@dataclass(frozen=True)
class Case:
    command: str
    option: str
    value: str | None  # None: the argument is left out
    must_be_usage_error: bool

    def __str__(self) -> str:
        shown = "missing" if self.value is None else repr(self.value)
        return f"{self.command} {self.option}={shown}"


def _kind(action: argparse.Action) -> str:
    if action.choices:
        return "choices"
    convert = action.type or str
    try:
        sample = convert("1")
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return "text"
    if isinstance(sample, (int, float)):
        return "number"
    return "path" if isinstance(sample, Path) else "text"


def _cases() -> Iterator[Case]:
    for path, parser in commands():
        command = " ".join(path)
        for action in options(parser):
            if not takes_value(action):
                continue
            opt, kind = name(action), _kind(action)
            if action.required or not action.option_strings:
                yield Case(command, opt, None, True)
            values = {
                "": True,
                "-1": kind in ("choices", "number") and (command, opt) not in NEGATIVE_OK,
                "abc": kind in ("choices", "number"),
                "nan": kind in ("choices", "number"),
                "inf": kind in ("choices", "number"),
                "{pathlike}": kind in ("choices", "number", "path"),
            }
            for value, usage in values.items():
                if usage or command not in LONG_RUNNING:
                    yield Case(command, opt, value, usage)


CASES = list(_cases())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("world")
    key = root / "dev.key"
    signer = keygen.generate("p256", key)
    records = root / "records.cbor"
    argv = ["sign", "--key", str(key), "--seq", "1", "--kind", "hb", "--field", "iv=1000"]
    assert main([*argv, "--field", "st=ok", "--out", str(records)]) == 0
    db = root / "gateway.db"
    create_gateway_database(db)
    pub = f"{key}.pub.pem"
    assert main(["enroll", "--pubkey", pub, "--tier", "software", "--db", str(db)]) == 0
    board = root / "board.json"
    board.write_text(
        '{"wifi": {"ssid": "w", "password": "p"}, "mqtt": {"host": "b", "port": 1883},'
        ' "key": {"type": "file", "path": "signet.key"}}'
    )
    a_file = root / "a-file"
    a_file.write_text("a regular file: nothing can be below it\n")
    return {
        "key": str(key),
        "pub": pub,
        "records": str(records),
        "db": str(db),
        "board": str(board),
        "device": signer.device_id,
        "pathlike": str(a_file / "x"),
    }


def _argv(case: Case, world: dict[str, str], tmp: Path) -> list[str]:
    values = dict(world, tmp=str(tmp))
    if "{db}" in str(BASELINE.get(case.command, {}).values()):
        shutil.copy(world["db"], tmp / "gateway.db")  # commands may change it: one per case
        values["db"] = str(tmp / "gateway.db")
    args = dict(BASELINE.get(case.command, {}))
    parser = dict(commands())[tuple(case.command.split())]
    for action in options(parser):  # required arguments the baseline does not give
        if (action.required or not action.option_strings) and name(action) not in args:
            args[name(action)] = _filler(action)
    for other in exclusive_with(parser, next(a for a in options(parser) if name(a) == case.option)):
        args.pop(other, None)
    args.pop(case.option, None)
    if case.value is not None:
        args[case.option] = case.value
    argv = case.command.split()
    for opt, value in args.items():
        if opt.startswith("-"):
            argv.append(opt)
        if value is not None:
            argv.append(value.format(**values))
    return argv


def _filler(action: argparse.Action) -> str:
    kind = _kind(action)
    if kind == "choices":
        return str(next(iter(action.choices)))
    return {"number": "1", "path": "{tmp}/missing"}.get(kind, "x")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_arguments_never_give_a_traceback(
    case: Case,
    world: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./gateway.toml; relative outputs land here
    argv = _argv(case, world, tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage errors (2), --help (0)
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, f"signet {' '.join(argv)}\n{err}"
    if case.must_be_usage_error:
        assert code == 2, f"signet {' '.join(argv)} exited {code}\n{err}"
    else:
        # agent record/status: 3 = the agent was not reached (docs/AGENT.md)
        allowed = (0, 1, 2, 3) if case.command in AGENT_CLIENTS else (0, 1, 2)
        assert code in allowed, f"signet {' '.join(argv)} exited {code}\n{err}"
    if code in (2, 3):
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert last.startswith("signet") and ": error: " in last, f"{argv}\n{err}"
