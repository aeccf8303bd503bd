"""The ingest pipeline: MQTT in, verify in worker processes, commit in batches, then ack.

::

    paho network thread          verifier threads (N)         writer thread (1)
    on_message: wrap, append --> each sends chunks to its --> in arrival order: one
    to the current chunk         own verifier process and     transaction per batch;
    (nothing else)               attaches the results         after COMMIT: PUBACK the
                                 (no GIL shared with the      messages, publish acks
                                 Python part of verifying)

Durability: the session is persistent (clean_start=False + session expiry) and
``manual_ack=True``: the broker gets the PUBACK for a message only after the
transaction holding its records committed (``synchronous=FULL``). A gateway
killed at any moment before that leaves the message unacknowledged in its
session; the broker redelivers it on the next connection and the sequencer
classifies it as new or duplicate. The device's ``ack`` is published only
after COMMIT too, so an ack never covers anything that is not on disk.

Bounded memory: Receive Maximum (MQTT v5) caps the QoS 1 messages the broker
sends before they are PUBACKed, so at most ``receive_maximum`` messages are
anywhere in this pipeline, however large the backlog in the broker.

Order: the writer applies messages in arrival order (chunks are queued for the
writer in the order they were filled), so each device's records reach the
sequence rules in the order the broker delivered them, and PUBACKs leave in
the order the PUBLISHes arrived (MQTT 4.6).

Reconnects: packet ids of an old connection mean nothing on a new one. Every
message is stamped with the connection epoch; after a reconnect, messages of
the old epoch are still stored but not PUBACKed (the broker redelivers them:
they become duplicates). The epoch check and the PUBACK happen under one lock
that the connect/disconnect callbacks also take.
"""

from __future__ import annotations

import collections
import logging
import queue
import ssl
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from signet_gateway.config import MqttConfig
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier

from . import paho_fast
from .verify_pool import VerifyWorker, verify_chunk
from .wire import REC_SUBSCRIPTION, ack_payload, ack_topic, device_of_topic
from .writer import Message, Rejection

__all__ = ["Chunk", "Intake", "MqttLink", "verify_message"]

log = logging.getLogger("signet.gateway")

_PUBACK_CMD: Final = 0x40
_PUBACK: Final = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id
CHUNK: Final = 32  # messages per verifier work item: amortises queue/event cost per message
PROCESS_CHUNK: Final = 128  # per work item for a worker process: amortises the pipe round trip
PIPELINE: Final = 2  # chunks sent to a worker process ahead of reading its results


class Chunk:
    __slots__ = ("done", "msgs")

    def __init__(self, msgs: list[Message]) -> None:
        self.msgs = msgs
        self.done = threading.Event()


def verify_message(m: Message, verifier: Verifier) -> None:
    """Fill m.kid and m.results (or m.rejection) in this thread.

    The worker processes' loop and result form, so that the writer has one form to apply
    however a message was verified.
    """
    _attach_results([m], verify_chunk(verifier, [(m.topic, m.payload)]))


def _attach_results(msgs: list[Message], results: list[Any]) -> None:
    """Put :func:`verify_chunk`'s results for ``msgs`` on the messages."""
    for m, res in zip(msgs, results, strict=True):
        if type(res) is tuple:  # (REFUSED, reason, detail): the whole message
            _, reason, detail = res
            if reason != "bad_topic":
                m.kid = device_of_topic(m.topic)
            m.rejection = Rejection(reason, detail, m.payload)
            continue
        m.kid = device_of_topic(m.topic)
        # Verified items stay verify_chunk's tuples (the writer reads them as they are);
        # only refusals become Rejection objects.
        for i, item in enumerate(res):
            if type(item[0]) is not dict:
                reason, detail, raw = item
                res[i] = Rejection(reason, detail, m.payload if raw is None else raw)
        m.results = res


class Intake:
    """Messages from the network thread to the verifiers and, in order, to the writer.

    With ``keys`` given, every verifier thread drives a worker process of its own
    (:mod:`.verify_pool`) and only rebuilds the results; without, it verifies in-thread.
    Call :meth:`keys_changed` after mutating ``keys`` (enroll/revoke noticed).
    """

    def __init__(
        self,
        verifier: Verifier,
        threads: int,
        keys: Mapping[bytes, DevicePublicKey] | None = None,
    ) -> None:
        self.verifier = verifier
        self._keys = keys
        self.keys_generation = 0
        self._lock = threading.Lock()
        self._current: list[Message] = []
        self._work: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        self.order: collections.deque[Chunk] = collections.deque()
        self.arrived = threading.Event()
        self.closed = False
        self.received = 0
        self.dropped_closing = 0
        self.verify_errors = 0
        self.chunk = CHUNK if keys is None else PROCESS_CHUNK
        self.workers: list[VerifyWorker | None] = [
            None if keys is None else VerifyWorker(f"signet-verify-{i}") for i in range(threads)
        ]
        self._threads = [
            threading.Thread(target=self._verify_loop, args=(i,), name=f"signet-verify-{i}",
                             daemon=True)
            for i in range(threads)
        ]  # fmt: skip
        for t in self._threads:
            t.start()

    def keys_changed(self) -> None:
        self.keys_generation += 1

    def put(self, m: Message) -> None:
        """Called by the network thread for every message."""
        with self._lock:
            if self.closed:
                # Shutting down: leave it un-PUBACKed in the broker's session for next time.
                self.dropped_closing += 1
                return
            self.received += 1
            current = self._current
            current.append(m)
            if len(current) >= self.chunk:
                self._seal()
            elif len(current) == 1:
                self.arrived.set()

    def _seal(self) -> None:
        chunk = Chunk(self._current)
        self._current = []
        self.order.append(chunk)
        self._work.put(chunk)
        self.arrived.set()

    def seal_partial(self) -> bool:
        """Send a partly filled chunk on (the writer calls this when it would wait)."""
        with self._lock:
            if self._current:
                self._seal()
                return True
            return False

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def idle(self) -> bool:
        with self._lock:
            return not self._current and not self.order

    def stop(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        for t in self._threads:
            t.join(timeout=10)
        for w in self.workers:
            if w is not None:
                w.stop()

    def _verify_loop(self, index: int) -> None:
        """Feed one worker process, keeping up to PIPELINE chunks sent to it.

        With one chunk at a time the worker sat idle from returning a result until this
        thread had the gateway's GIL again (to read it, attach it and send the next chunk):
        measured 15-25 % of each worker's time while the writer and the network thread were
        busy. With the next chunk already in its pipe, the worker goes straight on.
        """
        sent: collections.deque[Chunk] = collections.deque()  # sent, results not read yet
        stopping = False
        while True:
            chunk: Chunk | None = None
            if not stopping:
                if not sent:
                    chunk = self._work.get()
                    if chunk is None:
                        return
                elif len(sent) < PIPELINE:
                    try:
                        chunk = self._work.get_nowait()
                    except queue.Empty:
                        chunk = None
                    else:
                        stopping = chunk is None  # finish what was sent, then return
            worker = self.workers[index]
            if chunk is not None:
                if worker is None:
                    self._verify_local(chunk.msgs)
                    chunk.done.set()
                    continue
                try:
                    self._send_remote(worker, chunk.msgs)
                except Exception as exc:
                    self._worker_failed(index, exc, [*sent, chunk])
                    sent.clear()
                    continue
                sent.append(chunk)
                continue  # top the pipeline up before waiting for a result
            if not sent:
                if stopping:
                    return
                continue
            head = sent[0]
            assert worker is not None
            try:
                self._receive_remote(worker, head.msgs)
            except Exception as exc:
                self._worker_failed(index, exc, list(sent))
                sent.clear()
                continue
            sent.popleft()
            head.done.set()

    def _worker_failed(self, index: int, exc: Exception, chunks: list[Chunk]) -> None:
        """The worker died or failed: verify its chunks here, start a new worker."""
        log.error("verifier process failed (%s); restarting it", exc)
        worker = self.workers[index]
        if worker is not None:
            worker.stop(timeout=1.0)
        try:
            self.workers[index] = VerifyWorker(f"signet-verify-{index}")
        except Exception:
            log.exception("cannot restart the verifier process; verifying in-thread")
            self.workers[index] = None
        for chunk in chunks:
            self._verify_local(chunk.msgs)
            chunk.done.set()

    def _verify_local(self, msgs: list[Message]) -> None:
        verifier = self.verifier
        for m in msgs:
            m.kid = ""
            m.rejection = None
            m.results = []
            try:
                verify_message(m, verifier)
            except Exception as exc:  # a bug must not kill the thread or lose the message
                self.verify_errors += 1
                log.exception("verifier error on topic %r", m.topic[:80])
                m.results = []
                m.rejection = Rejection("internal_error", f"{type(exc).__name__}: {exc}", m.payload)

    def _send_remote(self, worker: VerifyWorker, msgs: list[Message]) -> None:
        generation = self.keys_generation
        if worker.keys_generation != generation:
            assert self._keys is not None
            snapshot = dict(self._keys)  # one C-level copy: the writer thread may mutate keys
            worker.set_keys(
                {kid: (k.compressed, k.curve) for kid, k in snapshot.items()}, generation
            )
        worker.submit([(m.topic, m.payload) for m in msgs])

    def _receive_remote(self, worker: VerifyWorker, msgs: list[Message]) -> None:
        _attach_results(msgs, worker.result())


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
            client.tls_set(
                ca_certs=str(config.tls_ca) if config.tls_ca else None,
                certfile=str(config.tls_cert) if config.tls_cert else None,
                keyfile=str(config.tls_key) if config.tls_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
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
