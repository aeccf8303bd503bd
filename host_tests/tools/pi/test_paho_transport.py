"""tools/pi/paho_transport.py against a real Mosquitto (runners/mosquitto.py) on a loopback port."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signet_tools.pi import paho_transport
from signet_tools.pi.paho_transport import PahoTransport
from signet_tools.runners.mosquitto import Mosquitto, free_port

pytestmark = pytest.mark.timeout(60)

DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path_factory.mktemp("mosq"))
    b.start()
    yield b
    b.stop()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p in self.messages if t == topic]


def poll_until(cond: Callable[[], bool], *transports: PahoTransport) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        for t in transports:
            t.poll()
        # Wait for traffic instead of spinning (not a synchronisation sleep: the loop re-checks).
        fds = [fd for t in transports if (fd := t.fileno()) is not None]
        select.select(fds, [], [], 0.05)


def subscribe_and_wait(t: PahoTransport, inbox: Inbox, topic: str, probe_topic: str) -> None:
    """Subscribe, then prove the subscription is live: the broker handles one connection's
    packets in order, so once our own probe comes back, the SUBSCRIBE took effect."""
    t.subscribe(topic)
    t.publish(probe_topic, b"probe")
    poll_until(lambda: inbox.on(probe_topic) == [b"probe"], t)
    inbox.messages.clear()


def make(broker: Mosquitto, client_id: str, **kw: object) -> tuple[PahoTransport, Inbox]:
    t = PahoTransport("127.0.0.1", broker.port, client_id, **kw)  # type: ignore[arg-type]
    inbox = Inbox()
    t.set_callback(inbox)
    return t, inbox


def test_publish_subscribe_roundtrip(broker: Mosquitto) -> None:
    dev, _ = make(broker, "dev-a")
    gw, inbox = make(broker, "gw-a")
    dev.connect("t/a/status", b"offline")
    gw.connect("t/gw/status", b"offline")
    subscribe_and_wait(gw, inbox, "t/a/rec", "t/a/rec")
    payloads = [bytes([i]) * (i + 1) for i in range(50)]
    for p in payloads:  # memoryview payloads (journal slices) are accepted as bytes
        dev.publish("t/a/rec", memoryview(p))
    poll_until(lambda: len(inbox.on("t/a/rec")) == len(payloads), dev, gw)
    assert inbox.on("t/a/rec") == payloads  # QoS 1, one connection: in order
    dev.disconnect()
    gw.disconnect()
    assert not dev.connected


def test_retained_status_and_will_on_abrupt_close(broker: Mosquitto) -> None:
    dev, _ = make(broker, "dev-b")
    dev.connect("t/b/status", b"offline")
    dev.publish("t/b/status", b"online", retain=True)
    watcher, inbox = make(broker, "watch-b")
    watcher.connect("t/wb/status", b"offline")
    watcher.subscribe("t/b/status")
    poll_until(lambda: inbox.on("t/b/status") == [b"online"], dev, watcher)  # retained copy
    dev.close()  # no DISCONNECT: the broker must publish the will
    poll_until(lambda: inbox.on("t/b/status")[-1:] == [b"offline"], watcher)
    # and the will is retained: a late subscriber sees "offline"
    late, late_inbox = make(broker, "late-b")
    late.connect("t/lb/status", b"offline")
    late.subscribe("t/b/status")
    poll_until(lambda: late_inbox.on("t/b/status") == [b"offline"], late)
    for t in (watcher, late):
        t.disconnect()


def test_clean_disconnect_flushes_queued_publishes_and_sends_no_will(broker: Mosquitto) -> None:
    watcher, inbox = make(broker, "watch-c")
    watcher.connect("t/wc/status", b"offline")
    subscribe_and_wait(watcher, inbox, "t/c/#", "t/c/probe")
    dev, _ = make(broker, "dev-c")
    dev.connect("t/c/status", b"will-fired")
    big = b"x" * (8 << 20)
    # Freeze the broker so the socket fills: the publishes are still queued in paho when
    # disconnect() is called (the case under test), whatever the kernel's buffer sizes.
    broker.pause()
    try:
        dev.publish("t/c/big", big)
        dev.publish("t/c/status", b"offline", retain=True)
        assert dev._client is not None and dev._client.want_write()
    finally:
        broker.resume()
    dev.disconnect()
    poll_until(lambda: inbox.on("t/c/status")[-1:] == [b"offline"], watcher)
    assert inbox.on("t/c/big") == [big]
    assert b"will-fired" not in inbox.on("t/c/status")
    watcher.disconnect()


def test_retained_ack_arrives_on_subscribe_after_reconnect(broker: Mosquitto) -> None:
    gw, _ = make(broker, "gw-d")
    gw.connect("t/gd/status", b"offline")
    gw.publish("t/d/ack", b"\xa1\x61n\x05", retain=True)
    gw.disconnect()
    dev, inbox = make(broker, "dev-d")
    for _ in range(2):  # and again after a reconnect on the same object
        inbox.messages.clear()
        dev.connect("t/d/status", b"offline")
        dev.subscribe("t/d/ack")
        poll_until(lambda: inbox.on("t/d/ack") == [b"\xa1\x61n\x05"], dev)
        dev.close()


def test_poll_never_blocks(broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    dev, _ = make(broker, "dev-e")
    dev.connect("t/e/status", b"offline")
    dev.subscribe("t/e/x")
    timeouts: list[float] = []
    real = select.select

    def spy(r: list, w: list, x: list, timeout: float | None = None) -> tuple:
        timeouts.append(timeout)  # type: ignore[arg-type]
        return real(r, w, x, timeout)

    monkeypatch.setattr(paho_transport.select, "select", spy)
    for _ in range(20):
        dev.publish("t/e/x", b"data")
        dev.poll()
        dev.ping()
    monkeypatch.undo()
    assert timeouts and all(t == 0 for t in timeouts)  # never waits on the socket
    sock_fd = dev.fileno()
    assert sock_fd is not None
    assert fcntl.fcntl(sock_fd, fcntl.F_GETFL) & os.O_NONBLOCK  # paho's writes never block
    dev.disconnect()


def test_dead_port_raises_oserror() -> None:
    port = free_port()  # nothing listens there
    t = PahoTransport("127.0.0.1", port, "dev-f", timeout=2.0)
    with pytest.raises(OSError) as info:
        t.connect("t/f/status", b"offline")
    assert info.value.errno == errno.ECONNREFUSED
    assert f"127.0.0.1:{port}" in str(info.value)
    assert not t.connected
    with pytest.raises(OSError, match="not connected"):
        t.publish("t/f/rec", b"x")
    with pytest.raises(OSError, match="not connected"):
        t.poll()


def test_unresolvable_host_raises_oserror() -> None:
    t = PahoTransport("no-such-host.invalid", 1883, "dev-g", timeout=2.0)
    with pytest.raises(OSError, match=r"no-such-host\.invalid:1883"):
        t.connect("t/g/status", b"offline")


def _fake_broker(reply: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A listener that reads CONNECT and answers `reply` (None: never answers)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            if reply is not None:
                conn.sendall(reply)
            conn.recv(1024)  # until the client goes away

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_connack_refusal_raises_readable_oserror() -> None:
    server, thread = _fake_broker(b"\x20\x02\x00\x05")  # CONNACK: not authorised
    try:
        t = PahoTransport("127.0.0.1", server.getsockname()[1], "dev-h", username="u", password="p")
        with pytest.raises(OSError, match="refused the connection: Not authorized"):
            t.connect("t/h/status", b"offline")
        assert "p" not in repr(t).replace("PahoTransport", "").replace("port", "")
        thread.join(DEADLINE_S)
    finally:
        server.close()


def test_silent_server_times_out_with_oserror() -> None:
    server, thread = _fake_broker(None)
    try:
        t = PahoTransport("127.0.0.1", server.getsockname()[1], "dev-i", timeout=0.3)
        with pytest.raises(OSError, match=r"no CONNACK within 0\.3s"):
            t.connect("t/i/status", b"offline")
        thread.join(DEADLINE_S)
    finally:
        server.close()


def test_broker_stop_surfaces_as_oserror_from_poll(tmp_path: Path) -> None:
    b = Mosquitto(tmp_path / "mosq").start()
    try:
        dev, _ = make(b, "dev-j")
        dev.connect("t/j/status", b"offline")
        b.stop()
        deadline = time.monotonic() + DEADLINE_S
        with pytest.raises(OSError, match=f"127.0.0.1:{b.port}"):
            while time.monotonic() < deadline:
                dev.poll()
                dev.publish("t/j/rec", b"x")
                select.select([], [], [], 0.02)
        b.start()
        dev.connect("t/j/status", b"offline")  # the same object reconnects
        assert dev.connected
        dev.disconnect()
    finally:
        b.stop()


def test_tls_files_missing_is_oserror() -> None:
    t = PahoTransport("127.0.0.1", 8883, "dev-k", tls_ca="/nonexistent/ca.pem")
    with pytest.raises(OSError, match="mqtt tls: cannot load"):
        t.connect("t/k/status", b"offline")


def test_ping_sends_a_pingreq_and_the_pingresp_counts_in_rx(broker: Mosquitto) -> None:
    """The link's dead-peer check rests on these two: ping() goes out now (paho's private
    _send_pingreq, pinned paho 2.2.x), and what comes back moves rx."""
    t, _ = make(broker, "dev-ping", keepalive=60)
    t.connect("t/ping/status", b"offline")
    for k in range(1, 4):
        t.ping()
        poll_until(lambda k=k: t.rx >= k, t)  # nothing else is on its way: the PINGRESP
    t.disconnect()
