"""The gateway's MQTT link (paho 2.x, MQTT v5): subscribe, receive, PUBACK after COMMIT, acks.

Durability: the session is persistent (clean_start=False + session expiry) and
``manual_ack=True``: the broker gets the PUBACK for a message only after the
transaction holding its records committed (``synchronous=FULL``). A gateway
killed at any moment before that leaves the message unacknowledged in its
session; the broker redelivers it on the next connection and the sequencer
classifies it as new or duplicate. The device's ``ack`` is published only
after COMMIT too, so an ack never covers anything that is not on disk.

Reconnects: packet ids of an old connection mean nothing on a new one. Every
message is stamped with the connection epoch; after a reconnect, messages of
the old epoch are still stored but not PUBACKed (the broker redelivers them:
they become duplicates). The epoch check and the PUBACK happen under one lock
that the connect/disconnect callbacks also take.
"""

from __future__ import annotations

import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from signet_gateway.config import ConfigError, MqttConfig

from . import paho_fast
from .wire import REC_SUBSCRIPTION, ack_payload, ack_topic
from .writer import Message

__all__ = ["MqttLink"]

log = logging.getLogger("signet.gateway")

_PUBACK_CMD: Final = 0x40
_PUBACK: Final = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id


class _BufferedClient(mqtt.Client):
    """paho reads every packet with three or more recv() calls (type byte, each length byte,
    then the body). At thousands of messages a second those system calls cost as much as the
    Python part of verification. Here one recv() of up to 64 KiB serves many packets.

    select() cannot see bytes already in our buffer, so loop_read() keeps parsing until the
    buffer is empty (paho's _packet_read copes with packets split across reads). The buffer
    is dropped with the socket, so a reconnect never sees bytes of the old connection.
    """

    _rbuf: bytes = b""
    _rpos: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(65536)
            if not buf:
                return buf
            self._rbuf, pos = buf, 0
        end = pos + bufsize
        self._rpos = end
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while (
            rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._rpos < len(self._rbuf)
            and self._sock is not None
        ):
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def puback_many(self, mids: list[int]) -> None:
        """PUBACK several QoS 1 messages as one queued write.

        ``ack(mid)`` queues one 4-byte packet per message, wakes the network thread per
        message and costs one send() each. PUBACKs carry no state in paho (nothing to
        confirm or call back), so the concatenation goes through paho's own queue as one
        item: one wake-up and one send() per committed batch.
        """
        if mids:
            pack = _PUBACK.pack
            self._packet_queue(_PUBACK_CMD, b"".join([pack(_PUBACK_CMD, 2, m) for m in mids]), 0, 0)


class MqttLink:
    """The paho client: persistent v5 session, manual PUBACK, retained acks out."""

    def __init__(
        self,
        config: MqttConfig,
        on_message: Callable[[Message], None],
        on_connected: Callable[[bool], None],
    ) -> None:
        self.config = config
        paho_fast.install()
        self._deliver = on_message
        self._on_connected = on_connected
        self.epoch = 0
        self.connected = threading.Event()
        self.ack_lock = threading.Lock()
        self.connects = 0
        self.connect_failures = 0
        self._stopping = False
        self.acks_published = 0
        self._pending: list[mqtt.MQTTMessageInfo] = []
        client = _BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls_ca is not None or config.tls_cert is not None:
            try:
                client.tls_set(
                    ca_certs=str(config.tls_ca) if config.tls_ca else None,
                    certfile=str(config.tls_cert) if config.tls_cert else None,
                    keyfile=str(config.tls_key) if config.tls_key else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (ssl.SSLError, OSError) as exc:
                # The loader checked that the files are readable; this is their content (not
                # PEM, a key that does not match the certificate): a configuration error too.
                files = ", ".join(
                    f"mqtt.{key} = {path}"
                    for key in ("tls_ca", "tls_cert", "tls_key")
                    if (path := getattr(config, key)) is not None
                )
                raise ConfigError(f"cannot load the TLS files ({files}): {exc}") from None
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        # Our own outgoing QoS 1 acks: let many be in flight (one per device per batch).
        client.max_inflight_messages_set(1000)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_connect_fail = self._handle_connect_fail
        self.client = client

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        # connect_async + loop_start: the network thread keeps retrying while the broker is
        # down (at start or later) instead of failing the service.
        self.client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for acks in flight, then a clean DISCONNECT (the session stays)."""
        deadline = time.monotonic() + timeout
        for info in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.connected.is_set():
                break
            try:
                info.wait_for_publish(remaining)
            except (RuntimeError, ValueError):
                break
        self._pending.clear()
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    # -- callbacks (network thread) --------------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        with self.ack_lock:
            self.epoch += 1
        self.connects += 1
        self.connected.set()
        session = bool(getattr(flags, "session_present", False))
        log.info(
            "connected to mqtt://%s:%d as %s (session present: %s)",
            self.config.host,
            self.config.port,
            self.config.client_id,
            "yes" if session else "no",
        )
        client.subscribe(REC_SUBSCRIPTION, options=SubscribeOptions(qos=1))
        self._on_connected(session)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.connect_failures += 1
        if self.connect_failures in (1, 10) or self.connect_failures % 100 == 0:
            log.warning(
                "cannot connect to mqtt://%s:%d (attempt %d); retrying with backoff",
                self.config.host,
                self.config.port,
                self.connect_failures,
            )

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        codes = [getattr(r, "value", r) for r in reasons]
        if any(c >= 0x80 for c in codes):
            log.error("subscription to %s refused by the broker: %s", REC_SUBSCRIPTION, reasons)
        else:
            log.info("subscribed to %s (QoS 1)", REC_SUBSCRIPTION)

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self.ack_lock:
            self.epoch += 1
        was = self.connected.is_set()
        self.connected.clear()
        if self._stopping:
            log.info("disconnected from the broker (session kept for the next start)")
        elif was:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Keep this minimal: it runs on the network thread for every message. The topic is
        # taken as bytes: paho's .topic decodes UTF-8 and raises on garbage, and a garbled
        # topic must become a bad_topic refusal, not an exception in the network thread.
        self._deliver(
            Message(
                msg.mid, msg.qos, self.epoch, msg._topic, msg.payload, time.time_ns() // 1_000_000
            )
        )

    # -- called by the writer thread ---------------------------------------------------------

    def puback(self, messages: list[Message]) -> int:
        """PUBACK committed messages of the current connection; returns how many."""
        client = self.client
        with self.ack_lock:
            epoch = self.epoch
            mids = [m.mid for m in messages if m.qos == 1 and m.epoch == epoch]
            client.puback_many(mids)
            for m in messages:  # QoS 2 cannot happen (we subscribe at QoS 1); be correct anyway
                if m.qos == 2 and m.epoch == epoch:
                    client.ack(m.mid, m.qos)
        return len(mids)

    def publish_acks(self, acks: dict[str, int]) -> None:
        pending = [i for i in self._pending if not i.is_published()]
        for kid, n in acks.items():
            pending.append(self.client.publish(ack_topic(kid), ack_payload(n), qos=1, retain=True))
        self.acks_published += len(acks)
        # Keep only what is still unconfirmed (for the bounded wait at shutdown).
        self._pending = pending[-5000:]
