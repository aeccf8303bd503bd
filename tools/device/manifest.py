"""`signet device manifest`: a MicroPython freeze manifest for one board config.

The manifest freezes the firmware modules that config loads and nothing else: what
`firmware/main.py` imports, and everything those modules import, followed through the
sources (`ast`), so a module added to the firmware or an import moved needs no list
kept by hand here. Imports inside functions are the ones the agent makes only when the
config asks for them (the key's backend, the sources, the window of sale refs, NTP,
TLS); `LAZY` says which config each of them belongs to. An import inside a function
that `LAZY` does not name is frozen for every config: wrong only in costing flash.

host_tests/firmware/test_board_manifest_micropython.py runs `main.py` on the unix port
for each kind of config and checks that every module it loaded is in the manifest.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import signet
from signet import FIRMWARE_VERSION
from signet.settings import Config

from .micropython import FIRMWARE

PACKAGE = "signet"
# The folder that holds the package: firmware/lib in a checkout, site-packages when installed.
FIRMWARE_LIB = Path(signet.__file__).resolve().parent.parent
MAIN = FIRMWARE / "main.py"
# The port's own frozen modules (network stack, asyncio, the port's drivers) come first:
# FROZEN_MANIFEST replaces the port's manifest, it does not add to it.
PORT_MANIFESTS = {
    "esp32": "$(PORT_DIR)/boards/manifest.py",  # ESP32_GENERIC has no manifest of its own
    "rp2": "$(BOARD_DIR)/manifest.py",  # RPI_PICO_W's: cyw43 Wi-Fi, bundle-networking
}
BUILD_COMMANDS = {
    "esp32": "make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST={manifest}",
    "rp2": "make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST={manifest}",
}
# micropython-lib packages the firmware imports (`require`d); every other module outside
# the package is built into MicroPython's C code (machine, network, hashlib, ...).
MIP_PACKAGES = ("umqtt.simple", "ntptime", "ssl")
# Package files that only a frozen firmware holds: the precomputed comb tables as modules
# (32 KiB of constants each) stay in flash there, while imported from a file they would
# take 32 KiB of heap; a board's file install gets the same bytes as comb_<curve>.bin
# instead (read a point at a time by ec.comb_table), so `signet device flash` and mip
# leave the modules out. The .bin files are never frozen (a manifest's package() takes
# only modules): a frozen firmware does not need them.
FROZEN_ONLY = frozenset({"comb_p256.py", "comb_secp256k1.py"})


def _key_file(cfg: Config) -> bool:
    key = cfg.key
    return key["type"] == "file" or key.get("fallback_path") is not None


def _chip(cfg: Config) -> bool:
    return cfg.key["type"] == "atecc608"


def _source(kind: str) -> Callable[[Config], bool]:
    return lambda cfg: any(src["type"] == kind for src in cfg.sources)


# Modules imported inside a function, and the configs that make the agent import them.
# A module imported at the top of a module the config loads is loaded with it, whatever
# this says.
LAZY: dict[str, Callable[[Config], bool]] = {
    "signet.keyfile": _key_file,  # a key file, or a chip's fallback key
    "signet.signer": _key_file,
    "signet.ec": _key_file,
    "signet.comb": _key_file,  # the comb table's build, forgotten after it
    # the precomputed comb tables: used frozen only (the curve is in the key file)
    "signet.comb_p256": _key_file,
    "signet.comb_secp256k1": _key_file,
    "signet.ecdsa": _key_file,
    "signet.rfc6979": _key_file,
    "signet.atecc608": _chip,
    "signet.se_signer": _chip,
    "signet.binding": _chip,
    "signet.pulse": _source("pulse"),
    "signet.uartline": _source("uart"),
    "signet.refwindow": lambda cfg: cfg.journal["ref_window"] > 0,
    "ntptime": lambda cfg: bool(cfg.time["ntp_host"]),
    "ssl": lambda cfg: cfg.mqtt["tls"] is not None,
    # Agent.stats: a Pi's `signet agent status` and the tests; main.py never asks
    "signet.stats": lambda cfg: False,
    # provisioning only (`signet device provision --se` sends its own script)
    "signet.se_provision": lambda cfg: False,
    "signet.statement": lambda cfg: False,
}


@dataclass(frozen=True)
class Imports:
    """What one source file imports: at its top (always) and inside functions (lazy)."""

    top: frozenset[str]
    lazy: frozenset[str]


def _module_file(name: str, lib: Path) -> Path | None:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return lib / PACKAGE / "__init__.py"
    path = lib.joinpath(*parts).with_suffix(".py")
    return path if path.exists() else None


def _names(node: ast.Import | ast.ImportFrom, lib: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = PACKAGE if node.level else (node.module or "")
    if node.level and node.module:
        base = f"{PACKAGE}.{node.module}"
    out = [base]
    for alias in node.names:  # `from . import ec`: a module, `from . import X`: a name
        sub = f"{base}.{alias.name}"
        if _module_file(sub, lib) is not None:
            out.append(sub)
    return out


def imports(path: Path, lib: Path = FIRMWARE_LIB) -> Imports:
    """The modules a firmware source file imports (`from . import x` as signet.x)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top: set[str] = set()
    lazy: set[str] = set()
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (lazy if inside else top).update(_names(child, lib))
            visit(child, inside or isinstance(child, functions))

    visit(tree, False)
    return Imports(frozenset(top), frozenset(lazy))


@dataclass(frozen=True)
class Needs:
    """What a config loads: firmware module files and micropython-lib packages."""

    files: tuple[str, ...]  # relative to the package: "__init__.py", "agent.py", ...
    packages: tuple[str, ...]  # require()d from micropython-lib

    @property
    def modules(self) -> frozenset[str]:
        return frozenset(
            PACKAGE if f == "__init__.py" else f"{PACKAGE}.{f[:-3]}" for f in self.files
        )


class NoEntryPoint(Exception):
    """firmware/main.py is not there (an installed package has no device entry point)."""


def needs(cfg: Config, main: Path | None = None, lib: Path = FIRMWARE_LIB) -> Needs:
    """The modules `main` (the device's entry point, default MAIN) loads for this config.

    Raises NoEntryPoint without main (a checkout has it, an installed package does not)."""
    main = main or MAIN
    if not main.is_file():
        raise NoEntryPoint(
            f"{main} is missing: run this from a checkout of the repository, whose "
            "firmware/main.py is the device's entry point"
        )
    seen: set[str] = {PACKAGE}
    pending = [main, _module_file(PACKAGE, lib)]
    while pending:
        path = pending.pop()
        if path is None:
            continue
        found = imports(path, lib)
        for name in (*found.top, *(m for m in found.lazy if LAZY.get(m, _always)(cfg))):
            if name not in seen:
                seen.add(name)
                pending.append(_module_file(name, lib))
    files = sorted(
        path.relative_to(lib / PACKAGE).as_posix()
        for path in (_module_file(m, lib) for m in seen)
        if path is not None
    )
    return Needs(tuple(files), tuple(p for p in MIP_PACKAGES if p in seen))


def _always(cfg: Config) -> bool:
    return True


def render(cfg: Config, port: str, manifest_path: Path, source: str = "board.json") -> str:
    """The manifest's text for `port` (a key of PORT_MANIFESTS), to be written at
    manifest_path (named in the build command it gives)."""
    need = needs(cfg)
    build = BUILD_COMMANDS[port].format(manifest=manifest_path.resolve().as_posix())
    lines = [
        f"# Generated by `signet device manifest --config {source} --port {port}`",
        f"# (Signet {FIRMWARE_VERSION}): the firmware modules this config loads, frozen into",
        "# the firmware so that their code stays in flash instead of the heap",
        '# (docs/DEVICE.md, "mip or a frozen firmware"). The config: ' + ", ".join(_describe(cfg)),
        "# Regenerate it after changing key.type, the sources, time.ntp_host, mqtt.tls or",
        "# journal.ref_window. main.py and config.json stay on the board's file system",
        "# (signet device flash --config ...). Build from MicroPython's source tree:",
        f"#   {build}",
        f'include("{PORT_MANIFESTS[port]}")',
    ]
    lines += [f'require("{p}")' for p in need.packages]
    lines.append(f'package("{PACKAGE}", files=[')
    lines += [f'    "{f}",' for f in need.files]
    lines.append(f'], base_path="{FIRMWARE_LIB.as_posix()}")')
    return "\n".join(lines) + "\n"


def _describe(cfg: Config) -> list[str]:
    key = cfg.key
    out = [f"key {key['type']}" + (" with a fallback key file" if _chip(cfg) and
                                     key.get("fallback_path") else "")]  # fmt: skip
    kinds = sorted({src["type"] for src in cfg.sources})
    out.append("sources " + "+".join(kinds) if kinds else "no sources")
    out.append(f"ref_window {cfg.journal['ref_window']}")
    out.append("NTP" if cfg.time["ntp_host"] else "no NTP")
    out.append("TLS" if cfg.mqtt["tls"] is not None else "no TLS")
    return out
