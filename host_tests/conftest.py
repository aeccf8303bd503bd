"""Fixtures shared by the host tests (helpers to import are in kit/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.gatewaykit import Mqtt
from kit.paths import FIRMWARE_TESTS
from signet_tools.device.micropython import FIRMWARE_LIB, compile_tree
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mpy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware package and the firmware test modules, compiled to .mpy.

    Loading .mpy (as a device does) keeps the compiler's own heap use out of
    the 64 KiB MicroPython runs.
    """
    root = tmp_path_factory.mktemp("mpy")
    compile_tree(FIRMWARE_LIB, root)
    compile_tree(FIRMWARE_TESTS, root)
    return root


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port, for one test."""
    mosquitto = Mosquitto(tmp_path / "broker").start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def procs() -> Iterator[tuple[list[GatewayProcess], list[Mqtt]]]:
    """Gateway processes and MQTT clients a test starts: killed and closed after it."""
    started: list[GatewayProcess] = []
    clients: list[Mqtt] = []
    yield started, clients
    for c in clients:
        c.close()
    for g in started:
        g.kill()
