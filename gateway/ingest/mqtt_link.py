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

Acks: published through :class:`~.ack_outbox.AckOutbox`, which never asks paho's message
infos anything (they raise for a publish that did not go out at once) and makes the
broker end up holding every device's latest committed ack, across reconnects.

A hung broker (stopped, or a frozen host: the TCP connection stays open, nothing answers)
is found within one keepalive of the last byte it sent (``_BufferedClient._check_keepalive``:
paho's own check takes up to two keepalives), logged as ``broker not answering``, and
the connection is closed and made again with the usual backoff. A connection attempt that
gets no CONNACK within the keepalive fails the same way.

Several workers (``mqtt.shared_group``): the record filter becomes the MQTT v5 shared
subscription ``$share/<group>/signet/v1/+/rec``, so the broker gives each record message to
one worker of the group; the status filter stays plain, so that every worker's console sees
every device's online/offline word (they are few, and a worker keeps them in memory only).
Mosquitto 2 keeps handing a group member its share while the member is disconnected, killed
or stopped cleanly alike (queued in its persistent session until it comes back; docs/
GATEWAY.md, Several workers). A stopping worker keeps its subscription all the same: were it
to leave the group, a stop of every worker at once (an upgrade) would leave the group with
no member, and the broker would drop the records published meanwhile instead of queueing
them; a worker that stops comes back (systemd restarts it), and its share with it.

The network thread never ends by itself: if it does (an exception escaped paho's loop, a
bug), ``on_failure`` is told, and the service stops with exit 3 (docs/GATEWAY.md).
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
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion, _ConnectionState
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from signet_gateway.config import ConfigError, MqttConfig

from . import paho_fast
from .ack_outbox import AckOutbox
from .device_status import DeviceStatus
from .link_state import SESSION_TAKEN_OVER, LinkState, Throttle, describe_os_error
from .wire import REC_SUBSCRIPTION, STATUS_SUBSCRIPTION, ack_payload, ack_topic
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
    # Why the last attempt or connection failed, which paho's callbacks do not say (it
    # reports "Unspecified error" for a closed connection and nothing for a failed connect).
    read_error: str | None = None
    connect_error: BaseException | None = None
    # Called with the seconds paho is about to wait before its next connection attempt.
    on_reconnect_wait: Callable[[float], None] | None = None
    # Called if the network thread ends with an exception (paho re-raises one from a callback).
    on_thread_failed: Callable[[BaseException], None] | None = None
    _waited = False  # a backoff wait happened since the last connection attempt

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            try:
                buf = super()._sock_recv(65536)
            except BlockingIOError:
                raise
            except OSError as exc:
                self.read_error = describe_os_error(exc)
                raise
            if not buf:
                self.read_error = "the broker closed the connection"
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

    def _check_keepalive(self) -> None:
        """paho's keepalive check, with a deadline on the broker's silence.

        paho sends a PINGREQ after a keepalive without traffic and closes the connection
        only a keepalive after that (and moves its own deadline whenever it pings): a hung
        broker stays "connected" for up to two keepalives. Here a PINGREQ goes out after
        half a keepalive in which nothing arrived, and a keepalive in which nothing at all
        arrived (no PINGRESP, no message, no CONNACK on a new connection) closes the
        connection as ``broker not answering``. A live broker answers a PINGREQ in
        milliseconds, so half a keepalive is a generous wait for it.
        """
        keepalive = self._keepalive
        if keepalive == 0 or self._sock is None:
            return
        now = mqtt.time_func()
        with self._msgtime_mutex:
            last_out = self._last_msg_out
            silent = now - self._last_bytes_received
        connected = self._state == _ConnectionState.MQTT_CS_CONNECTED
        if silent >= keepalive:
            what = "nothing received" if connected else "no CONNACK"
            if self.read_error is None:
                self.read_error = (
                    f"broker not answering: {what} for {silent:.0f} s, keepalive {keepalive} s"
                )
            self._sock_close()
            if self._state in (
                _ConnectionState.MQTT_CS_DISCONNECTING,
                _ConnectionState.MQTT_CS_DISCONNECTED,
            ):
                self._state = _ConnectionState.MQTT_CS_DISCONNECTED
                rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            else:
                rc = MQTTErrorCode.MQTT_ERR_KEEPALIVE
            self._do_on_disconnect(packet_from_broker=False, v1_rc=rc)
            return
        if (
            connected
            and (silent >= keepalive / 2 or now - last_out >= keepalive)
            and (self._ping_t == 0 or now - self._ping_t >= keepalive / 2)
        ):
            try:
                self._send_pingreq()
            except Exception:  # as paho does: a failed send is a lost connection
                self._sock_close()
                self._do_on_disconnect(
                    packet_from_broker=False, v1_rc=MQTTErrorCode.MQTT_ERR_CONN_LOST
                )
            else:
                with self._msgtime_mutex:
                    self._last_msg_out = now

    def _thread_main(self) -> None:
        # paho re-raises an exception from a callback out of loop_forever, ending this thread
        # with only a traceback on stderr: report it instead (the service stops, exit 3).
        try:
            super()._thread_main()
        except BaseException as exc:
            if self.on_thread_failed is None:
                raise
            self.on_thread_failed(exc)

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self.read_error = None
        self._waited = False
        try:
            return super().reconnect()
        except OSError as exc:  # paho's on_connect_fail gets no exception: keep it
            self.connect_error = exc
            raise

    def _reconnect_wait(self) -> None:
        # One wait per attempt: after a failed first connect, paho's loop_forever waits once
        # in its connect phase and again in its main loop before the next attempt (1 s, then
        # 2 s); the second wait would make the first "next attempt in 1 s" line untrue.
        if self._waited:
            return
        self._waited = True
        # The delay paho is about to wait (reconnect_delay_set: min, doubling up to max, back
        # to min after a successful CONNACK), so the log can say when the next attempt is.
        with self._reconnect_delay_mutex:
            last = self._reconnect_delay
            delay = (
                self._reconnect_min_delay
                if last is None
                else min(last * 2, self._reconnect_max_delay)
            )
        if self.on_reconnect_wait is not None:
            try:
                self.on_reconnect_wait(delay)
            except Exception:  # logging must never stop the network thread
                log.exception("reporting the broker connection state")
        super()._reconnect_wait()

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


def _held_back(count: int) -> str:
    return f" ({count} more like it not logged)" if count else ""


class MqttLink:
    """The paho client: persistent v5 session, manual PUBACK, retained acks out."""

    def __init__(
        self,
        config: MqttConfig,
        on_message: Callable[[Message], None],
        on_connected: Callable[[bool], None] | None = None,
        *,
        committed_acks: Callable[[], dict[str, int]] = dict,
        on_failure: Callable[[str, BaseException], None] | None = None,
        device_status: DeviceStatus | None = None,
    ) -> None:
        """on_message and on_connected run on the network thread; committed_acks (every
        device's committed ack, republished after each connect) on the thread that calls
        publish_acks; on_failure(what, exc) if the network thread ends by itself."""
        self.config = config
        paho_fast.install()
        self._deliver = on_message
        # Devices' online/offline words (PROTOCOL 7.4), for the console; None: not subscribed.
        self.device_status = device_status
        self._on_connected = on_connected
        self._on_failure = on_failure
        self.epoch = 0
        self.connected = threading.Event()
        self.ack_lock = threading.Lock()
        self.connects = 0
        self.state = LinkState()
        self._cause: tuple[str, str] | None = None  # ("lost" | "failed", why), until logged
        self._failed_attempts = Throttle(burst=10, every_s=300)  # per outage
        self._drops = Throttle(burst=3, every_s=300)
        self._takeovers = Throttle(burst=1, every_s=300)  # a client-id fight: once, then count
        self._stopping = False
        self.acks = AckOutbox(self._send_ack, self.connected.is_set, committed_acks)
        # The record filter: shared by a group of workers, or this gateway's alone.
        group = config.shared_group
        self.rec_filter = (
            REC_SUBSCRIPTION if group is None else f"$share/{group}/{REC_SUBSCRIPTION}"
        )
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
        client.on_publish = self._handle_puback
        client.on_reconnect_wait = self._before_reconnect_wait
        client.on_thread_failed = self._thread_failed
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
        """Wait (bounded) for the broker to confirm the acks, then a clean DISCONNECT (the
        session stays). Call it after the last publish_acks (the writer has ended): acks not
        confirmed by then are published again after the next start's connect."""
        deadline = time.monotonic() + timeout
        while self.connected.is_set() and time.monotonic() < deadline:
            self.acks.reconcile()
            if self.acks.settled():
                break
            time.sleep(0.01)  # polling the PUBACKs the network thread takes in
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    # -- callbacks (network thread) --------------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            self._attempt_failed(f"the broker refused the connection: {reason}")
            return
        with self.ack_lock:
            self.epoch += 1
        self.connects += 1
        self.connected.set()
        self.state.up()
        self._failed_attempts.reset()
        session = bool(getattr(flags, "session_present", False))
        log.info(
            "connected to mqtt://%s:%d as %s (session present: %s)",
            self.config.host,
            self.config.port,
            self.config.client_id,
            "yes" if session else "no",
        )
        topics = [(self.rec_filter, SubscribeOptions(qos=1))]
        if self.device_status is not None:
            topics.append((STATUS_SUBSCRIPTION, SubscribeOptions(qos=1)))
        client.subscribe(topics)
        self.acks.connected()
        if self._on_connected is not None:
            self._on_connected(session)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._attempt_failed(describe_os_error(self.client.connect_error))

    def _attempt_failed(self, cause: str) -> None:
        self.state.failed(cause)
        self._cause = ("failed", cause)

    def _disconnect_cause(self, flags: Any, reason: Any) -> str:
        if getattr(flags, "is_disconnect_packet_from_server", False):
            if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
                self.state.takeovers += 1
                return (
                    f"session taken over by another client with client id"
                    f" {self.config.client_id!r}: is a second gateway using this mqtt.client_id?"
                )
            return f"the broker sent DISCONNECT: {reason}"
        if self.client.read_error:  # what we saw: a read error, the broker's silence
            return self.client.read_error
        if getattr(reason, "value", None) == 0x80:  # paho's code for a lost connection
            return "connection lost"
        return str(reason)

    def _before_reconnect_wait(self, delay: float) -> None:
        """Log why the last attempt or connection failed and when the next attempt is;
        throttled (link_state.py). Runs once per wait, so once per cause."""
        if self._cause is None:
            return
        kind, cause = self._cause
        self._cause = None
        if kind == "lost":
            takeover = cause.startswith("session taken over")
            held = (self._takeovers if takeover else self._drops).allow()
            if held is not None:
                log.warning(
                    "disconnected from the broker (%s); reconnecting in %g s%s",
                    cause,
                    delay,
                    _held_back(held),
                )
            return
        held = self._failed_attempts.allow()
        if held is not None:
            log.warning(
                "cannot connect to mqtt://%s:%d (attempt %d): %s; next attempt in %g s%s",
                self.config.host,
                self.config.port,
                self.state.attempts,
                cause,
                delay,
                _held_back(held),
            )

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        codes = [getattr(r, "value", r) for r in reasons]
        topics = REC_SUBSCRIPTION
        if self.device_status is not None:
            topics += f" and {STATUS_SUBSCRIPTION}"
        shared = self.config.shared_group
        if any(c >= 0x80 for c in codes):
            if shared is not None:
                topics = topics.replace(REC_SUBSCRIPTION, self.rec_filter, 1)
            log.error("subscription to %s refused by the broker: %s", topics, reasons)
        elif shared is None:
            log.info("subscribed to %s (QoS 1)", topics)
        else:
            log.info("subscribed to %s (QoS 1; records shared by group %r)", topics, shared)

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self.ack_lock:
            self.epoch += 1
        was = self.connected.is_set()
        self.connected.clear()
        if self._stopping:
            self.state.close()
            log.info("disconnected from the broker (session kept for the next start)")
            return
        cause = self._disconnect_cause(flags, reason)
        if was:
            self.state.down(cause)
            self._cause = ("lost", cause)
        elif self._cause is None:  # closed before its CONNACK: that attempt failed
            self._attempt_failed(cause)

    def _handle_puback(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        self.acks.puback(mid, bool(getattr(reason, "is_failure", False)), str(reason))

    def _thread_failed(self, exc: BaseException) -> None:
        if self._on_failure is not None:
            self._on_failure("the MQTT network thread", exc)
        else:
            log.critical("the MQTT network thread failed", exc_info=exc)

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Keep this minimal: it runs on the network thread for every message. The topic is
        # taken as bytes: paho's .topic decodes UTF-8 and raises on garbage, and a garbled
        # topic must become a bad_topic refusal, not an exception in the network thread.
        if self.device_status is not None and msg._topic.endswith(b"/status"):
            # Informational, nothing to commit: noted and acknowledged at once.
            self.device_status.seen(msg._topic, msg.payload, time.time_ns() // 1_000_000)
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
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

    @property
    def acks_published(self) -> int:
        return self.acks.published

    def publish_acks(self, acks: dict[str, int]) -> None:
        """Committed acks (device -> n) for the broker: now if connected, else after the next
        connect (ack_outbox.py)."""
        self.acks.publish(acks)

    def reconcile_acks(self) -> None:
        """Take in the broker's PUBACKs and connects; publish what they showed is due. The
        writer calls it on every turn of its loop."""
        self.acks.reconcile()

    def _send_ack(self, kid: str, n: int) -> int | None:
        # NO_CONN: the connection dropped meanwhile; paho keeps the message and sends it
        # after the reconnect, so it is in flight like any other (ack_outbox.py).
        info = self.client.publish(ack_topic(kid), ack_payload(n), qos=1, retain=True)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return int(info.mid)
        return None
