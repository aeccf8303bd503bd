"""Every thread and child process of the gateway, failing: recovered by design (a verifier
process that dies or hangs is replaced), or said in one CRITICAL line and exit 3 (the
writer, a verifier thread, the MQTT network thread). The gateway runs in this process so
that a fault can be put inside it; the broker is a real Mosquitto. On SQLite only: the
faults are the threads' and processes', whatever the store."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import signet_gateway.ingest.intake as intake_module
from kit.gatewaykit import Dev, Mqtt, enrolled_gateway
from signet_gateway.config import load
from signet_gateway.ingest.service import Gateway
from signet_gateway.store.sqlite import Store
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until


class Running:
    """A Gateway started in this process, run() in a thread; stop() ends it."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, devs: list[Dev]) -> None:
        cfg = enrolled_gateway(tmp_path, broker.port, devs)
        self.db = tmp_path / "gateway.db"
        self.gateway = Gateway(load(cfg))
        self.gateway.start()
        self._stop = threading.Event()
        self.code: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(self.gateway.link.connected.is_set, 20, "the gateway connected")

    def _run(self) -> None:
        self.code = self.gateway.run(self._stop)

    def exited(self, timeout: float) -> int:
        """Wait for run() to return by itself; its exit status."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the gateway did not stop by itself"
        assert self.code is not None
        return self.code

    def stop(self) -> int:
        self._stop.set()
        return self.exited(40)


@pytest.fixture
def running(tmp_path: Path, broker: Mosquitto) -> Iterator[list[Running]]:
    made: list[Running] = []
    yield made
    for r in made:
        if r._thread.is_alive():
            r.stop()


@pytest.fixture
def gateway_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="signet.gateway")
    return caplog


def _said(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def _publish(broker: Mosquitto, dev: Dev, count: int, clients: list[Mqtt]) -> Mqtt:
    client = Mqtt(broker.port, f"pub-{dev.kid[:6]}-{len(clients)}")
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(count)])
    return client


def _fail_on_call(exc: BaseException) -> Any:
    def raiser(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return raiser


# -- recovered by design ---------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_verifier_process_killed_is_replaced_and_nothing_is_lost(
    tmp_path: Path, broker: Mosquitto, procs, running, gateway_log
) -> None:
    _started, clients = procs
    dev = Dev(500)
    gw = Running(tmp_path, broker, [dev])
    running.append(gw)
    client = _publish(broker, dev, 20, clients)
    client.wait_acks({dev.kid: 20})
    workers = gw.gateway.intake.workers
    before = {w.pid for w in workers if w is not None}
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    client.publish_all([(dev.topic, r) for r in dev.chain(300)])
    client.wait_acks({dev.kid: 320}, 60)
    after = {w.pid for w in workers if w is not None}
    assert len(after) == len(before) and not after & before
    assert any("verifier process failed" in line and "restarting it" in line
               for line in _said(gateway_log, logging.ERROR))  # fmt: skip
    assert gw.stop() == 0
    with Store(gw.db, readonly=True) as store:
        assert store.record_count(dev.kid) == 320


@pytest.mark.timeout(120)
def test_a_hung_verifier_process_is_killed_and_replaced(
    tmp_path: Path, broker: Mosquitto, procs, running, gateway_log, monkeypatch
) -> None:
    _started, clients = procs
    monkeypatch.setattr(intake_module, "WORKER_ANSWER_S", 1.0)
    dev = Dev(510)
    gw = Running(tmp_path, broker, [dev])
    running.append(gw)
    client = _publish(broker, dev, 5, clients)
    client.wait_acks({dev.kid: 5})
    workers = gw.gateway.intake.workers
    stopped = [w.pid for w in workers if w is not None]
    for pid in stopped:  # every worker: whichever gets the next chunk holds it unanswered
        os.kill(pid, signal.SIGSTOP)
    try:
        client.publish_all([(dev.topic, r) for r in dev.chain(50)])
        client.wait_acks({dev.kid: 55}, 30)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):  # killed and reaped, as it should be
                os.kill(pid, signal.SIGCONT)
    lines = _said(gateway_log, logging.ERROR)
    assert any("has not answered for" in line and "killing it" in line for line in lines), lines
    assert gw.stop() == 0
    with Store(gw.db, readonly=True) as store:
        assert store.record_count(dev.kid) == 55


# -- failures no design recovers from: said, exit 3 -------------------------------------------


@pytest.mark.timeout(60)
def test_a_failing_mqtt_network_thread_stops_the_gateway_with_exit_3(
    tmp_path: Path, broker: Mosquitto, procs, running, gateway_log
) -> None:
    _started, clients = procs
    dev = Dev(520)
    gw = Running(tmp_path, broker, [dev])
    running.append(gw)
    # A bug in the message callback: paho re-raises it out of its loop, ending the thread.
    gw.gateway.link._deliver = _fail_on_call(RuntimeError("injected in on_message"))
    _publish(broker, dev, 1, clients)
    assert gw.exited(30) == 3
    critical = _said(gateway_log, logging.CRITICAL)
    assert critical == [
        "the MQTT network thread failed, stopping (exit 3): RuntimeError: injected in on_message"
    ]


@pytest.mark.timeout(60)
def test_a_failing_verifier_thread_stops_the_gateway_with_exit_3(
    tmp_path: Path, broker: Mosquitto, procs, running, gateway_log
) -> None:
    _started, clients = procs
    dev = Dev(530)
    gw = Running(tmp_path, broker, [dev])
    running.append(gw)
    intake = gw.gateway.intake
    # The worker's answer cannot be read, and the recovery fails too: the thread is lost,
    # and the chunk it held would never be done.
    intake._receive_remote = _fail_on_call(RuntimeError("unreadable answer"))  # type: ignore[method-assign]
    intake.verify_in_thread = _fail_on_call(ValueError("injected"))  # type: ignore[method-assign]
    _publish(broker, dev, 1, clients)
    assert gw.exited(30) == 3
    critical = _said(gateway_log, logging.CRITICAL)
    assert len(critical) == 1 and critical[0].startswith("verifier thread signet-verify-")
    assert critical[0].endswith(" failed, stopping (exit 3): ValueError: injected")
    with Store(gw.db, readonly=True) as store:
        assert store.ack(dev.kid) == 0


@pytest.mark.timeout(60)
def test_a_failing_writer_thread_stops_the_gateway_with_exit_3(
    tmp_path: Path, broker: Mosquitto, procs, running, gateway_log
) -> None:
    _started, clients = procs
    dev = Dev(540)
    gw = Running(tmp_path, broker, [dev])
    running.append(gw)
    gw.gateway._account = _fail_on_call(KeyError("injected"))  # type: ignore[method-assign]
    _publish(broker, dev, 1, clients)
    assert gw.exited(30) == 3
    assert _said(gateway_log, logging.CRITICAL) == [
        "the writer thread failed, stopping (exit 3): KeyError: 'injected'"
    ]
