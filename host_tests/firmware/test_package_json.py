"""firmware/package.json (what `mpremote mip install` copies to a board) lists every
module of the firmware package: a module missing there is an ImportError on the board
the first time the agent needs it (a module loaded lazily fails late). The precomputed
comb tables are there as their bytes (comb_<curve>.bin, read beside the modules), not
as modules: only a frozen firmware uses those."""

from __future__ import annotations

import json

from signet_tools.device.manifest import FROZEN_ONLY
from signet_tools.device.micropython import FIRMWARE, FIRMWARE_LIB


def test_package_json_lists_every_firmware_module() -> None:
    package = json.loads((FIRMWARE / "package.json").read_text())
    listed = {dest for dest, _ in package["urls"]}
    sources = {src for _, src in package["urls"]}
    modules = {
        p.relative_to(FIRMWARE_LIB).as_posix()
        for p in FIRMWARE_LIB.rglob("*.py")
        if p.name not in FROZEN_ONLY
    }
    tables = {"signet/comb_p256.bin", "signet/comb_secp256k1.bin"}
    assert all((FIRMWARE_LIB / t).is_file() for t in tables)
    assert listed == modules | tables
    assert sources == {f"lib/{m}" for m in modules | tables}
