"""signet.AGENT_MODULES, the order main.py loads the agent in (signet.load, a collection
after each module): every module the agent imports at its top, each after the ones it
imports, so that each load brings in one module and its garbage is freed before the next."""

from __future__ import annotations

import signet
from signet_tools.device import manifest


def _top_imports(name: str) -> set[str]:
    path = manifest.FIRMWARE_LIB / manifest.PACKAGE / f"{name}.py"
    prefix = manifest.PACKAGE + "."
    return {m[len(prefix) :] for m in manifest.imports(path).top if m.startswith(prefix)}


def test_agent_modules_hold_what_the_agent_imports_each_after_its_imports() -> None:
    order = list(signet.AGENT_MODULES)
    assert len(set(order)) == len(order)
    needed: set[str] = set()
    todo = ["agent"]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(_top_imports(name))
    assert needed <= set(order), sorted(needed - set(order))
    for i, name in enumerate(order):
        assert _top_imports(name) <= set(order[:i]), (name, _top_imports(name) - set(order[:i]))


def test_load_imports_the_modules_named() -> None:
    signet.load("cbor", "record")
    assert signet.cbor.Encoder and signet.record.KINDS
