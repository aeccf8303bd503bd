"""Operating the gateway process: one gateway per database, signals to its process group,
set-up errors, and what it logs about its broker connection. A signal in the middle of a
drain and a stop asked for while the store opens, on both stores (store_at); the rest on
SQLite only: the instance lock and the readiness file beside it are a SQLite file's
(PostgreSQL takes several workers), the broker's part is not the store's."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, enrolled_gateway, write_config
from signet_gateway.config import MqttConfig, load
from signet_gateway.ingest.instance_lock import InstanceLock, lock_path
from signet_gateway.ingest.link_state import Throttle
from signet_gateway.ingest.mqtt_link import MqttLink
from signet_gateway.ingest.service import Gateway
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto, free_port
from signet_tools.runners.waiting import wait_until


@pytest.mark.timeout(90)
def test_second_gateway_on_a_database_refuses_and_a_killed_holder_blocks_nothing(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    dev = Dev(70)
    cfg = enrolled_gateway(tmp_path, broker.port, [dev])
    first = GatewayProcess(cfg, tmp_path / "gw1.log").start()
    started.append(first)

    second = GatewayProcess(cfg, tmp_path / "gw2.log")
    started.append(second)
    second.start(wait=False)
    assert second.wait(30) == 2, second.tail()
    said = second.text()
    assert f"is in use by another gateway (pid {first.pid}; lock " in said
    assert "Traceback" not in said and "subscribed" not in said

    # The first one never noticed: no session takeover, it still stores and acks.
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(3)])
    client.wait_acks({dev.kid: 3})
    assert "disconnected from the broker" not in first.text()

    first.kill()  # SIGKILL: the lock file stays, the kernel released the lock
    assert lock_path(tmp_path / "gateway.db").exists()
    third = GatewayProcess(cfg, tmp_path / "gw3.log").start()
    started.append(third)
    client.publish_all([(dev.topic, r) for r in dev.chain(2)])
    client.wait_acks({dev.kid: 5})
    assert third.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("store_at", "signum"),
    [
        ("sqlite", signal.SIGINT),
        ("sqlite", signal.SIGTERM),
        ("sqlite", signal.SIGHUP),
        # Each signal ends in the same stop: on PostgreSQL the drain is stopped once.
        ("postgresql", signal.SIGTERM),
    ],
    ids=[
        "sqlite-ctrl-c",
        "sqlite-systemd-stop",
        "sqlite-terminal-closed",
        "postgresql-systemd-stop",
    ],
    indirect=["store_at"],
)
def test_a_signal_to_the_process_group_stops_it_as_sigterm_does(
    store_at: Path | str, tmp_path: Path, broker: Mosquitto, procs, signum: int
) -> None:
    """Ctrl-C in a terminal sends SIGINT, systemd's stop SIGTERM, and a terminal (or ssh
    session) that goes away SIGHUP, to every process of the gateway, verifier processes
    included, here in the middle of a backlog drain: the gateway stops as on its own
    SIGTERM (drain what was taken, exit 0, no traceback) and nothing is lost."""
    started, clients = procs
    devs = [Dev(72 + i) for i in range(4)]
    cfg = enrolled_gateway(tmp_path, broker.port, devs, db=store_at, ingest={"batch_max": 50})
    gw = GatewayProcess(cfg, tmp_path / "gw.log", new_session=True).start()
    started.append(gw)
    assert gw.stop() == 0  # its persistent session now queues the backlog
    client = Mqtt(broker.port)
    clients.append(client)
    per = 400
    client.publish_all([(d.topic, r) for i in range(per) for d in devs for r in [d.make("hb")]])

    gw.start()
    wait_until(lambda: sum(client.acks.values()) > 0, 30, "the first acks of the drain")
    gw.signal_group(signum)
    acked_at_signal = sum(client.acks.values())
    assert gw.wait(30) == 0
    assert acked_at_signal < per * len(devs), "the drain ended before the signal: test nothing"
    log = gw.text()
    for wrong in ("Traceback", "KeyboardInterrupt", "verifier process failed", "ERROR"):
        assert wrong not in log, log
    assert "stopping: no new messages" in log and "stopped: " in log

    again = GatewayProcess(cfg, tmp_path / "gw2.log").start()
    started.append(again)
    client.wait_acks({d.kid: per for d in devs}, 60)
    assert again.stop() == 0
    with Store(store_at, readonly=True) as store:
        for d in devs:
            assert store.record_count(d.kid) == per and store.findings(d.kid)["verified"] == per


@pytest.mark.timeout(60)
def test_a_stop_requested_while_starting_is_honoured(store_at: Path | str, tmp_path: Path) -> None:
    """SIGTERM or Ctrl-C can arrive while start() is still opening the database: the signal
    handler's request_stop() must work then, and the gateway stops without taking anything."""
    cfg = load(enrolled_gateway(tmp_path, free_port(), [], db=store_at))
    gateway = Gateway(cfg)
    gateway.request_stop()  # the handler ran before start() had made the intake
    gateway.start()
    assert gateway.intake.closed
    assert gateway.run(threading.Event()) == 0
    if isinstance(store_at, Path):  # SQLite's instance lock (PostgreSQL takes several workers)
        InstanceLock.acquire(store_at).release()  # stop() released it


# -- the broker connection: causes, backoff, state --------------------------------------------


def _mqtt5_connect(client_id: str, clean_start: bool) -> bytes:
    """A minimal MQTT v5 CONNECT packet (keepalive 60 s, no properties)."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x05" + bytes([0x02 if clean_start else 0]) + b"\x00\x3c\x00"
    body += len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """(first byte, body) of one MQTT packet; (0, b"") when the peer closed."""
    head = sock.recv(1)
    if not head:
        return 0, b""
    length, shift = 0, 0
    while True:
        byte = sock.recv(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return 0, b""
        body += chunk
    return head[0], body


def _take_over(port: int, client_id: str) -> None:
    """Connect as client_id (taking the session's connection over), then leave cleanly."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_mqtt5_connect(client_id, clean_start=False))
        assert _read_packet(sock)[0] == 0x20  # CONNACK
        sock.sendall(b"\xe0\x00")  # DISCONNECT, normal


def _broker_reports_takeover(port: int) -> bool:
    """Whether this Mosquitto sends DISCONNECT 0x8E to a client whose session is taken
    over (2.0.15 and later) or only closes its connection (before)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
        first.sendall(_mqtt5_connect("takeover-probe", clean_start=True))
        assert _read_packet(first)[0] == 0x20
        _take_over(port, "takeover-probe")
        kind, body = _read_packet(first)
        return kind == 0xE0 and body[:1] == b"\x8e"


@pytest.mark.timeout(60)
def test_a_session_taken_over_on_a_real_mosquitto_is_logged_once_as_what_happened(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, _clients = procs
    cfg = enrolled_gateway(tmp_path, broker.port, [])
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client_id = load(cfg).mqtt.client_id
    _take_over(broker.port, client_id)  # another client with the gateway's client id
    wait_until(lambda: gw.text().count("subscribed to") == 2, 20, "the gateway back")
    drops = [line for line in gw.text().splitlines() if "disconnected from the broker" in line]
    if _broker_reports_takeover(broker.port):  # Mosquitto >= 2.0.15
        cause = f"session taken over by another client with client id {client_id!r}"
    else:  # Mosquitto 2.0.11 (Debian 12) closes the connection without a DISCONNECT
        cause = "the broker closed the connection"
    assert len(drops) == 1 and f"({cause}" in drops[0], drops
    assert drops[0].endswith("; reconnecting in 1 s")
    assert "Unspecified error" not in gw.text()
    assert gw.stop() == 0


class _TakeoverBroker:
    """A stand-in for a broker that reports session takeovers (MQTT v5 DISCONNECT 0x8E), as
    Mosquitto 2.0.15 and later do, which the Mosquitto of Debian 12 does not: it answers
    CONNECT and SUBSCRIBE, then takes the first `takeovers` connections over."""

    def __init__(self, takeovers: int) -> None:
        self.takeovers = takeovers
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(sock,), daemon=True).start()

    def _session(self, sock: socket.socket) -> None:
        with sock:
            taken_over = self.connections <= self.takeovers
            while True:
                kind, body = _read_packet(sock)
                if kind == 0x10:  # CONNECT -> CONNACK, no session, no properties
                    sock.sendall(b"\x20\x03\x00\x00\x00")
                elif kind == 0x82:  # SUBSCRIBE -> SUBACK granting QoS 1
                    sock.sendall(b"\x90\x04" + body[:2] + b"\x00\x01")
                    if taken_over:
                        sock.sendall(b"\xe0\x02\x8e\x00")  # DISCONNECT: Session taken over
                        return
                elif kind in (0, 0xE0):
                    return

    def close(self) -> None:
        self.server.close()


@pytest.mark.timeout(60)
def test_session_takeovers_reported_by_the_broker_are_logged_once(tmp_path: Path, procs) -> None:
    started, _clients = procs
    stand_in = _TakeoverBroker(takeovers=3)
    try:
        cfg = write_config(tmp_path / "gateway.toml", stand_in.port, tmp_path / "gateway.db")
        gw = GatewayProcess(cfg, tmp_path / "gw.log").start(wait=False)
        started.append(gw)
        wait_until(lambda: gw.text().count("subscribed to") == 4, 30, "four connections")
        log = gw.text()
        takeovers = [line for line in log.splitlines() if "session taken over" in line]
        client_id = load(cfg).mqtt.client_id
        assert len(takeovers) == 1, log
        assert (
            "disconnected from the broker (session taken over by another client with client id"
            f" {client_id!r}: is a second gateway using this mqtt.client_id?); reconnecting in 1 s"
        ) in takeovers[0]
        assert "Unspecified error" not in log and "disconnected" not in log.replace(
            takeovers[0], ""
        )
        assert gw.stop() == 0
        summary = gw.text().splitlines()[-1]  # the counted takeovers are in the summary line
        assert "summary: " in summary and summary.endswith("session taken over 3 times")
    finally:
        stand_in.close()


@pytest.mark.timeout(60)
def test_an_unreachable_broker_is_logged_with_each_cause_and_backoff_then_connects(
    tmp_path: Path, procs
) -> None:
    started, _clients = procs
    port = free_port()  # nothing listens here yet
    db = tmp_path / "gateway.db"
    cfg = write_config(tmp_path / "gateway.toml", port, db, ingest={"summary_s": 1})
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start(wait=False)
    started.append(gw)
    refused = "[Errno 111] Connection refused"
    for attempt, delay in ((1, 1), (2, 2), (3, 4)):
        gw.wait_log(
            f"cannot connect to mqtt://127.0.0.1:{port} (attempt {attempt}): {refused};"
            f" next attempt in {delay} s",
            15,
        )
    gw.wait_log(f"failed attempts, last error: {refused})", 10)  # the summary says it too
    summaries = [line for line in gw.text().splitlines() if "summary: " in line]
    assert summaries and "; broker connecting since " in summaries[-1]

    broker = Mosquitto(tmp_path / "broker", port=port).start()  # the broker appears
    try:
        gw.wait_log("subscribed to signet/v1/+/rec", 20)
        wait_until(
            lambda: "; broker connected since " in gw.text().split("subscribed to", 1)[1],
            10,
            "a summary line saying connected",
        )
        assert gw.stop() == 0
    finally:
        broker.stop()
    assert "Traceback" not in gw.text()


@pytest.mark.timeout(60)
def test_a_long_outage_does_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """Every failed attempt is counted; only the first ten of an outage are logged, then
    one line per five minutes (Throttle, below), whatever the backoff."""
    link = MqttLink(MqttConfig(port=free_port()), lambda m: None, lambda s: None)
    link.client.reconnect_delay_set(min_delay=0.01, max_delay=0.01)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="signet.gateway"):
        link.start()
        try:
            wait_until(lambda: link.state.attempts >= 30, 30, "30 failed attempts")
        finally:
            link.stop()
    lines = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert [line.split("(attempt ")[1].split(")")[0] for line in lines] == [
        str(i) for i in range(1, 11)
    ]
    attempts = link.state.attempts  # final: the network thread has stopped
    assert f"({attempts} failed attempts, last error: [Errno 111] Connection refused)" in (
        link.state.describe()
    )


def test_throttle_lets_a_burst_through_then_one_per_period_with_the_count_held_back() -> None:
    now = [0.0]
    throttle = Throttle(burst=3, every_s=300, clock=lambda: now[0])
    assert [throttle.allow() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 299.0
    assert throttle.allow() is None
    now[0] = 301.0
    assert throttle.allow() == 3  # three were not logged since the last line
    assert throttle.allow() is None
    throttle.reset()  # a new outage: a new burst
    assert [throttle.allow() for _ in range(4)] == [1, 0, 0, None]


@pytest.mark.timeout(120)
def test_gateway_status_says_ready_not_ready_and_not_running(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, _ = procs
    cfg = enrolled_gateway(tmp_path, broker.port, [Dev(71)])
    signet = str(Path(sys.executable).parent / "signet")

    def status(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [signet, "gateway", "status", "--config", str(cfg), *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    before = status()
    assert (before.returncode, before.stdout) == (1, f"not running: no gateway is running on "
                                                     f"{tmp_path / 'gateway.db'}\n")  # fmt: skip
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    ready = wait_until(lambda: (r := status()).returncode == 0 and r, 30, "ready")
    assert ready.stdout.startswith(f"ready (pid {gw.pid}, since "), ready.stdout

    broker.stop()  # the gateway rides it out, and says so
    down = wait_until(lambda: (r := status()).returncode == 1 and r, 30, "not ready")
    assert down.stdout.startswith(f"not ready (pid {gw.pid}, since "), down.stdout
    assert "broker" in down.stdout
    as_json = json.loads(status("--json").stdout)
    assert as_json["ready"] is False and as_json["pid"] == gw.pid
    assert any(p.startswith("broker") for p in as_json["problems"])

    broker.start()
    wait_until(lambda: status().returncode == 0, 60, "ready again")
    assert gw.stop() == 0
    assert status().returncode == 1
