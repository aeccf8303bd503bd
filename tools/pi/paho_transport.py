"""The agent's MQTT transport on CPython: paho-mqtt 2.x behind the same small interface as
firmware/lib/signet/mqtt.py (umqtt.simple on devices).

Contract (docs/AGENT.md): connect(will_topic, will_payload) raises OSError; subscribe(topic);
publish(topic, payload, retain=False) at QoS 1 (payload: bytes, or a catch-up batch
that streams itself: `write_to(write)`); poll() never blocks and delivers incoming
messages to the callback; ping(); disconnect() is clean; close() drops the connection without
DISCONNECT so the broker publishes the will; set_callback(cb(topic: str, payload: bytes)).

Design choices:
- MQTT 3.1.1, like umqtt.simple: the broker sees the same protocol from every agent, and an
  agent needs nothing from v5 (the gateway's shared subscriptions are a gateway-side matter).
- Single-threaded. No loop_start(): poll() does the socket work itself with select() and a
  zero timeout, through paho's external-event-loop calls (loop_read / loop_write /
  loop_misc), so the agent's main loop stays the only thread, as on a device.
- A fresh paho client per connect() with a clean session: anything paho still had queued
  from a dead connection is dropped, because the agent republishes from its journal anyway
  (it prunes only on the gateway's ack, never on PUBACK).
- Every failure surfaces as OSError, which is what the agent catches to reconnect with
  backoff.
- The agent's link decides when the broker is dead, as on a board (docs/AGENT.md,
  "Keepalive"): `rx` counts the reads that brought bytes, ping() sends a PINGREQ now, and
  the link drops a connection that received nothing for keepalive_s. paho's own keepalive
  (from loop_misc in poll) stays on underneath; the link's pings keep it from firing first.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

Callback = Callable[[str, bytes], None]


class StreamedPayload(Protocol):
    """A message that writes itself in pieces (the link's catch-up batch, firmware link.py)."""

    def __len__(self) -> int: ...

    def write_to(self, write: Callable[[memoryview], object]) -> None: ...


Payload = bytes | bytearray | memoryview | StreamedPayload

_QOS = 1
# Packets handled per poll() at most: poll must return promptly even under a flood.
_MAX_ROUNDS = 64
# How long disconnect() waits for queued publishes (the "offline" status) to be acknowledged.
_FLUSH_S = 2.0
# Publishes remembered for that wait; pruned of acknowledged ones when it grows past this.
_TRACK_MAX = 256


class PahoTransport:
    """One MQTT connection for one agent. Not thread-safe: use it from the agent's loop only."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        client_id: str = "",
        *,
        keepalive: int = 60,
        timeout: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive = keepalive
        self.timeout = timeout
        self.username = username
        self._password = password
        # TLS when asked, or implied by a CA/cert; no CA file = the system's trusted CAs.
        self.tls = tls or bool(tls_ca or tls_cert)
        self.tls_ca = tls_ca
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self._client: mqtt.Client | None = None
        self._callback: Callback | None = None
        self._connack: Any = None  # reason code once CONNACK arrived
        self._lost: str | None = None  # why the connection went away, for the OSError
        self._inflight: list[mqtt.MQTTMessageInfo] = []
        self.rx = 0  # socket reads that brought bytes: the link's proof that the broker answers

    @classmethod
    def from_config(cls, mqtt_section: dict[str, Any], client_id: str) -> PahoTransport:
        """From the validated `mqtt` section of the agent config (signet.config)."""
        tls = mqtt_section.get("tls")
        password = mqtt_section.get("password")
        return cls(
            mqtt_section["host"],
            mqtt_section["port"],
            mqtt_section.get("client_id") or client_id,
            keepalive=mqtt_section["keepalive_s"],
            timeout=mqtt_section["timeout_ms"] / 1000,
            username=mqtt_section.get("user"),
            password=password.reveal() if password is not None else None,
            tls=tls is not None,
            tls_ca=tls["ca"] if tls else None,
            tls_cert=tls["cert"] if tls else None,
            tls_key=tls["key"] if tls else None,
        )

    def __repr__(self) -> str:  # never the password
        tls = " tls" if self.tls else ""
        return f"PahoTransport({self.host}:{self.port}{tls}, client_id={self.client_id!r})"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def set_callback(self, cb: Callback) -> None:
        self._callback = cb

    def fileno(self) -> int | None:
        """The socket, for a select()-based sleep (tools/pi/platform.py); None if closed."""
        sock = self._client.socket() if self._client is not None else None
        return sock.fileno() if sock is not None else None

    # -- connection lifecycle ------------------------------------------------------------

    def connect(self, will_topic: str, will_payload: bytes) -> None:
        """Connect and wait for CONNACK (at most `timeout` seconds); OSError on any failure."""
        self.close()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.connect_timeout = self.timeout
        client.will_set(will_topic, bytes(will_payload), qos=_QOS, retain=True)
        if self.username is not None:
            client.username_pw_set(self.username, self._password)
        if self.tls:
            try:
                client.tls_set(
                    ca_certs=self.tls_ca,
                    certfile=self.tls_cert,
                    keyfile=self.tls_key,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise OSError(f"mqtt tls: cannot load CA/cert/key: {exc}") from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._connack = None
        self._lost = None
        where = f"mqtt broker {self.host}:{self.port}"
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive)
        except ssl.SSLCertVerificationError as exc:
            raise OSError(f"{where}: TLS certificate not trusted: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise OSError(f"{where}: TLS handshake failed: {exc.reason or exc}") from None
        except TimeoutError:
            raise OSError(f"{where}: no answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise OSError(exc.errno, f"{where}: {exc.strerror or exc}") from None
        except ValueError as exc:  # paho's own argument checks (empty host, bad port)
            raise OSError(f"{where}: {exc}") from None
        self._client = client
        try:
            self._await_connack(where)
        except OSError:
            self.close()
            raise

    def _await_connack(self, where: str) -> None:
        assert self._client is not None
        deadline = time.monotonic() + self.timeout
        while self._connack is None:
            remaining = deadline - time.monotonic()
            sock = self._client.socket()
            if sock is None:
                raise OSError(f"{where}: connection closed before CONNACK ({self._lost})")
            if remaining <= 0:
                raise OSError(f"{where}: no CONNACK within {self.timeout:g}s")
            wlist = [sock] if self._client.want_write() else []
            readable, writable, _ = select.select([sock], wlist, [], remaining)
            rc = self._client.loop_write() if writable else mqtt.MQTT_ERR_SUCCESS
            if not rc and readable:
                rc = self._client.loop_read()
            if rc and self._connack is None:  # a refusing CONNACK also ends in an error rc
                self._check(rc)
        if self._connack.is_failure:
            raise OSError(f"{where}: broker refused the connection: {self._connack}")

    def disconnect(self) -> None:
        """Clean disconnect: queued publishes (the "offline" status) go out first, bounded."""
        client = self._client
        if client is None:
            return
        deadline = time.monotonic() + _FLUSH_S
        try:
            while time.monotonic() < deadline and (client.want_write() or self._unacked()):
                self._pump(min(0.05, max(0.0, deadline - time.monotonic())))
            client.disconnect()
            while client.want_write() and time.monotonic() < deadline:
                self._pump(0.05)
        except OSError:
            pass  # already gone: nothing left to do cleanly
        finally:
            self.close()

    def close(self) -> None:
        """Drop the connection without DISCONNECT (the broker then publishes the will)."""
        client, self._client = self._client, None
        if client is None:
            return
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._inflight.clear()

    # -- traffic -------------------------------------------------------------------------

    def subscribe(self, topic: str) -> None:
        client = self._live()
        rc, _mid = client.subscribe(topic, qos=_QOS)
        self._check(rc)

    def publish(self, topic: str, payload: Payload, retain: bool = False) -> None:
        """Queue at QoS 1 and write what the socket takes now; the rest goes out in poll().

        A catch-up batch (the link's streamed `_Batch`) is collected into bytes first: paho
        queues whole messages, and a Pi has the memory a board saves by streaming it.
        """
        client = self._live()
        if isinstance(payload, memoryview):
            payload = bytes(payload)
        elif not isinstance(payload, (bytes, bytearray)):
            whole = bytearray()
            payload.write_to(whole.extend)
            payload = bytes(whole)
        info = client.publish(topic, payload, qos=_QOS, retain=retain)
        # MQTT_ERR_QUEUE_SIZE cannot happen (unbounded queue); everything else is a failure.
        self._check(info.rc)
        self._inflight.append(info)
        if len(self._inflight) > _TRACK_MAX:
            self._unacked()

    def _unacked(self) -> int:
        """QoS 1 publishes not yet PUBACKed (only disconnect() waits for them)."""
        self._inflight = [i for i in self._inflight if not i.is_published()]
        return len(self._inflight)

    def poll(self) -> None:
        """Do whatever socket work is ready now, deliver incoming messages; never blocks."""
        self._live()
        self._pump(0.0)

    def ping(self) -> None:
        """Send a PINGREQ now (the link's keepalive and dead-peer probe); OSError if gone.

        paho has no public call for it: _send_pingreq is private, and paho is pinned to 2.2.x
        (pyproject.toml) for the gateway's use of its internals; test_paho_transport.py checks
        that the broker's PINGRESP arrives."""
        client = self._live()
        self._check(client._send_pingreq())
        self._pump(0.0)

    # -- internals -----------------------------------------------------------------------

    def _pump(self, wait: float) -> None:
        client = self._live()
        for _ in range(_MAX_ROUNDS):
            sock = client.socket()
            if sock is None:
                raise self._gone()
            pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
            buffered = pending() if pending is not None else 0
            wlist = [sock] if client.want_write() else []
            readable, writable, _ = select.select([sock], wlist, [], 0 if buffered else wait)
            wait = 0.0
            if not readable and not writable and not buffered:
                break
            if writable:
                self._check(client.loop_write())
            if readable or buffered:
                self._check(client.loop_read())  # an error if it read nothing (EOF)
                self.rx += 1
        self._check(client.loop_misc())

    def _live(self) -> mqtt.Client:
        if self._client is None or self._client.socket() is None:
            raise self._gone()
        return self._client

    def _gone(self) -> OSError:
        why = self._lost or "not connected"
        return OSError(f"mqtt broker {self.host}:{self.port}: {why}")

    def _check(self, rc: mqtt.MQTTErrorCode | int) -> None:
        if rc != mqtt.MQTT_ERR_SUCCESS:
            if self._lost is None:
                self._lost = mqtt.error_string(rc).rstrip(".").lower()
            raise self._gone()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connack = reason

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self._lost is None:
            self._lost = f"connection lost ({reason})"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._callback is not None:
            self._callback(msg.topic, bytes(msg.payload))
