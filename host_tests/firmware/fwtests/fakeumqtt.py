# A scripted stand-in for umqtt.simple (same MQTTClient API), playing broker
# and gateway, for agent tests under CPython and the MicroPython unix port.
#
# The module-level `broker` is the world the clients connect to; a test sets
# it (fakeumqtt.broker = Broker(...)) and scripts it: refuse connects, drop
# connections, lose PUBACKs, take the gateway offline, inject acks, go silent
# (hung: connections stay open, nothing is answered, as a SIGSTOPped broker).
# What the broker sends (PUBACK, PINGRESP, a message) is read by the client
# through its socket, as umqtt.simple does, so a wrapper sees the bytes arrive.

try:
    from . import minicbor
except ImportError:  # MicroPython runner: flat import path
    import minicbor

import hashlib

from signet import cbor, cose

broker = None

_ECONNRESET = 104
_ECONNREFUSED = 111
_ETIMEDOUT = 110


class FakeSocket:
    """Records how umqtt and the transport drive the socket."""

    def __init__(self, clock=None):
        self.timeout = None  # seconds, or None
        self.blocking = True
        self.closed = False
        self.dead = False
        self.modes = []  # "timeout", "blocking", "nonblocking" in call order
        self.incoming = bytearray()  # bytes the broker sent, not read yet
        self.clock = clock  # a blocking read that times out costs the timeout
        self.on_close = None  # the broker's: a closed TCP connection ends the session
        self.sink = None  # while a publish writes its payload: takes each piece written

    def _mode(self, mode):
        self.modes.append(mode)
        if len(self.modes) > 8:
            self.modes.pop(0)

    def settimeout(self, t):
        self.timeout = t
        self.blocking = True
        self._mode("timeout")

    def setblocking(self, flag):
        self.blocking = flag
        self.timeout = None
        self._mode("blocking" if flag else "nonblocking")

    def read(self, n=-1):
        if self.dead:
            raise OSError(_ECONNRESET)
        if self.incoming:
            data = bytes(self.incoming[:n])
            self.incoming = self.incoming[n:]
            return data
        if self.blocking:  # nothing comes: a blocking read with a timeout times out
            if self.clock is not None and self.timeout:
                self.clock.advance(int(self.timeout * 1000))
            raise OSError(_ETIMEDOUT)
        return None

    def write(self, data, n=None):
        if self.dead:
            raise OSError(_ECONNRESET)
        if self.sink is not None:
            self.sink(data if n is None else data[:n])
        return len(data) if n is None else n

    def close(self):
        self.closed = True
        if self.on_close is not None:
            self.on_close()


class Gateway:
    """Stores records per device, checks n and chain, publishes the retained ack."""

    def __init__(self, broker):
        self.broker = broker
        self.online = True
        self.acking = True
        self.records = {}  # n -> payload bytes
        self.raw = {}  # n -> the record bytes as received
        self.kinds = {}  # n -> kind
        self.unused = []  # (lo, hi) ranges declared unused by boot records
        self.ack = 0
        self.messages = 0
        self.batches = 0
        self.batch_sizes = []
        self.equivocations = 0
        self.duplicates = 0
        self.kid = None
        self.keep = True  # False: remember only numbers above the ack (soak)
        self.seen = set()
        self.reader = None  # the soak's: reads a message as it comes (forget_payloads)

    def forget_payloads(self):
        """Ack without keeping payloads, each record read as the socket brings it: the
        fake then holds one record, never a message, so the heap a soak needs is the
        device's."""
        self.keep = False
        self.reader = _Reader()

    def on_message(self, topic, payload):
        """payload: the message's bytes, or None when the reader stored its records."""
        if not self.online:
            return  # the broker PUBACKed; nobody stored it
        self.messages += 1
        self.kid = topic.split("/")[2]
        if payload is None:
            if self.reader.count > 1:
                self.batches += 1
            self._publish_ack()
            return
        if payload[0] == 0xD2:
            self.store(payload)
            self._publish_ack()
            return
        items = minicbor.loads(payload) if self.keep else _elements(payload)
        assert isinstance(items, list) and items, "batch must be a non-empty array"
        self.batches += 1
        if self.keep:
            self.batch_sizes.append(len(payload))
        for rec in items:
            self.store(rec)
        self._publish_ack()

    def store(self, rec):
        if not self.keep:
            # n and k are the payload map's 3rd and 2nd keys (deterministic order):
            # read in place, only a boot record decoded whole.
            payload = cose.payload_of(rec)
            _, _, i = minicbor._arg(payload, 0)
            _, i = minicbor._item(payload, i + 2)  # "b"
            kind, i = minicbor._item(payload, i + 2)  # "k"
            n, i = minicbor._item(payload, i + 2)  # "n"
            if kind == "boot":
                ls = minicbor.loads(payload)["ls"]
                if ls + 1 < n:
                    self.unused.append((ls + 1, n - 1))
            if n > self.ack:
                self.seen.add(n)
            return
        payload = bytes(cose.payload_of(rec))
        fields = minicbor.loads(payload)
        n = fields["n"]
        if fields["k"] == "boot" and fields["ls"] + 1 < n:
            self.unused.append((fields["ls"] + 1, n - 1))
        old = self.records.get(n)
        if old is not None:
            if old == payload:
                self.duplicates += 1
            else:
                self.equivocations += 1
            return
        self.records[n] = payload
        self.raw[n] = bytes(rec)
        self.kinds[n] = fields["k"]

    def _is_unused(self, n):
        return any(lo <= n <= hi for lo, hi in self.unused)

    def _publish_ack(self):
        while True:
            n = self.ack + 1
            if n in self.seen:
                self.seen.discard(n)
            elif n not in self.records and not self._is_unused(n):
                break
            self.ack = n
        if self.acking and self.kid:
            self.broker.publish_retained(
                "signet/v1/%s/ack" % self.kid, cbor.dumps({"n": self.ack}, 16)
            )

    def fields(self, n):
        return minicbor.loads(self.records[n])

    def check_chain(self):
        """Every stored record links to the stored one before it (p = SHA-256)."""
        ns = sorted(self.records)
        for i in range(1, len(ns)):
            prev, cur = ns[i - 1], ns[i]
            gap_declared = all(self._is_unused(m) for m in range(prev + 1, cur))
            if cur == prev + 1 or gap_declared:
                want = hashlib.sha256(self.records[prev]).digest()
                assert self.fields(cur)["p"] == want, "chain break between %d and %d" % (prev, cur)
        return len(ns)


class _Reader:
    """A message read as the socket brings it, a record at a time: a bare COSE_Sign1
    (0xd2) or an array of bstr, each record read in place from the piece that brought
    it (the agent never splits a record or a head across writes: checked)."""

    def start(self, size, store):
        self._store = store
        self._left = size  # message bytes not fed yet
        self._first = True
        self._want = 0  # the size of a record whose head came at the end of a piece
        self.count = 0

    def feed(self, piece):
        self._left -= len(piece)
        i = 0
        if self._first:
            self._first = False
            if piece[0] == 0xD2:  # a lone record, written whole
                self._want = len(piece)
            else:
                _, _, i = minicbor._arg(piece, 0)  # the array head
        while i < len(piece):
            if not self._want:
                _, self._want, i = minicbor._arg(piece, i)  # a record's bstr head
                continue
            assert len(piece) - i >= self._want, "a record split across writes"
            self._store(piece[i : i + self._want])
            self.count += 1
            i += self._want
            self._want = 0

    def complete(self):
        """Every byte announced came, and the last record is whole."""
        return self._left == 0 and not self._want


def _elements(batch):
    """The records of a catch-up batch (an array of bstr) as views, none copied."""
    data = memoryview(batch)
    major, count, i = minicbor._arg(data, 0)
    out = []
    if major != 4:
        return out
    for _ in range(count):
        _, size, i = minicbor._arg(data, i)
        out.append(data[i : i + size])
        i += size
    return out


class Broker:
    def __init__(self, clock=None):
        self.up = True
        self.silent = False  # hung: accepts TCP, answers nothing (no CONNACK, PUBACK, PINGRESP)
        self.refuse = 0  # refuse this many connects even when up
        self.lose_pubacks = 0  # next publishes block until the socket timeout
        self.clock = clock  # FakePlatform: a lost PUBACK costs the socket timeout
        self.retained = {}
        self.subs = {}  # topic -> [client]
        self.clients = []
        self.gateway = Gateway(self)
        self.connects = 0
        self.refused = 0
        self.pings = 0
        self.published = []  # (topic, retain, len) of device publishes, bounded
        self.wills = 0
        self.clean_disconnects = 0
        self.keep_log = True

    # -- scripting ---------------------------------------------------------------

    def drop_all(self):
        """The network dies under every client: their next operation fails."""
        for c in list(self.clients):
            c.raw.dead = True
            self._gone(c, clean=False)

    def publish_retained(self, topic, payload):
        self.retained[topic] = payload
        for c in self.subs.get(topic, ()):
            c.deliver(topic, payload)

    # -- what clients call ---------------------------------------------------------

    def connect(self, client):
        if not self.up or self.refuse > 0:
            if self.refuse > 0:
                self.refuse -= 1
            self.refused += 1
            raise OSError(_ECONNREFUSED)
        if self.silent:  # the kernel accepted the connection; no CONNACK ever comes
            client.raw.blocking = True
            client.raw.read(4)
        self.connects += 1
        self.clients.append(client)

    def _gone(self, client, clean):
        if client in self.clients:
            self.clients.remove(client)
            for subs in self.subs.values():
                if client in subs:
                    subs.remove(client)
            if clean:
                self.clean_disconnects += 1
            elif client.lw_topic:
                self.wills += 1
                self.retained[client.lw_topic] = client.lw_msg

    def reads_as_it_comes(self, topic):
        """True if the gateway reads this message from the socket as it arrives."""
        g = self.gateway
        return g.reader is not None and g.online and not self.silent and topic.endswith("/rec")

    def publish(self, client, topic, msg, retain, size):
        """msg: the payload, or None when the gateway read it as it came (its records stored)."""
        if self.silent:
            return  # bytes in a socket buffer nobody reads
        if self.keep_log:
            self.published.append((topic, retain, size))
            if len(self.published) > 64:
                self.published.pop(0)
        if retain:
            self.retained[topic] = msg
        if topic.endswith("/rec"):
            self.gateway.on_message(topic, msg)
        if self.lose_pubacks > 0:
            self.lose_pubacks -= 1
            if self.clock is not None:
                t = client.raw.timeout
                self.clock.advance(int(t * 1000) if t else 0)
            raise OSError(_ETIMEDOUT)
        client.raw.incoming += b"\x40\x02\x00\x01"  # PUBACK

    def subscribe(self, client, topic):
        if self.silent:
            return
        self.subs.setdefault(topic, []).append(client)
        if topic in self.retained:
            client.deliver(topic, self.retained[topic])

    def ping(self, client):
        self.pings += 1
        if not self.silent:
            client.raw.incoming += b"\xd0\x00"  # PINGRESP


def _text(s):
    return s.decode() if isinstance(s, (bytes, bytearray)) else s


class MQTTException(Exception):
    pass


class MQTTClient:
    """umqtt.simple.MQTTClient's API, backed by the module's broker."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.sock = None
        self.raw = None  # the FakeSocket, even after the transport wraps .sock
        self.cb = None
        self.lw_topic = None
        self.lw_msg = None
        self.lw_retain = False
        self.lw_qos = 0
        self.inbox = []

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw_topic = _text(topic)
        self.lw_msg = bytes(msg)
        self.lw_retain = retain
        self.lw_qos = qos

    def connect(self, clean_session=True, timeout=None):
        self.sock = self.raw = FakeSocket(broker.clock)
        self.raw.timeout = timeout
        broker.connect(self)
        # Closed without DISCONNECT: a broker forgets the client (and sends its will),
        # else every reconnect would leave one behind, holding its subscription.
        self.raw.on_close = lambda: broker._gone(self, clean=False)
        return 0

    def deliver(self, topic, payload):
        """The broker sends a PUBLISH: one marker byte in the socket, the message here."""
        self.inbox.append((topic, payload))
        self.raw.incoming += b"\x30"

    def _alive(self):
        if self.raw is None or self.raw.dead or self.raw.closed:
            raise OSError(_ECONNRESET)

    def publish(self, topic, msg, retain=False, qos=0):
        self._alive()
        topic = _text(topic)
        size = len(msg)  # as umqtt.simple: the packet's length goes out before the payload
        streamed = broker.reads_as_it_comes(topic)
        if streamed:  # the soak: records stored as they arrive, the message never held
            reader = broker.gateway.reader
            reader.start(size, broker.gateway.store)
            sink = reader.feed
        else:
            pieces = []

            def sink(piece):
                pieces.append(bytes(piece))

        # What umqtt.simple writes before the payload, the topic as given (a str too).
        self.sock.write(b"\x32\0\0\0", 4)
        self.sock.write(b"\0\0")
        self.sock.write(topic)
        self.sock.write(b"\0\1", 2)
        self.raw.sink = sink
        try:
            self.sock.write(msg)  # through the transport's wrapper: a batch streams itself
        finally:
            self.raw.sink = None
        if streamed:
            payload = None
            assert broker.gateway.reader.complete(), "payload shorter than announced"
        else:
            payload = b"".join(pieces)
            assert len(payload) == size, "payload %d bytes, %d announced" % (len(payload), size)
        broker.publish(self, topic, payload, retain, size)
        if qos == 1:
            self.sock.setblocking(True)  # as umqtt's wait_msg() does
            while True:  # what came before the PUBACK is handled on the way, as wait_msg()
                op = self.sock.read(1)
                if op == b"\x40":
                    self.sock.read(3)
                    return
                self._handle(op)

    def subscribe(self, topic, qos=0):
        assert self.cb is not None, "Subscribe callback is not set"
        self._alive()
        broker.subscribe(self, _text(topic))

    def ping(self):
        self._alive()
        broker.ping(self)

    def _message(self):
        topic, msg = self.inbox.pop(0)
        self.cb(topic.encode(), msg)

    def _handle(self, op):
        if op == b"\xd0":  # PINGRESP
            self.sock.read(1)
            return None
        self._message()
        return 0x30

    def check_msg(self):
        self._alive()
        self.sock.setblocking(False)
        res = self.sock.read(1)
        self.sock.setblocking(True)  # umqtt's wait_msg() does this after every read
        return None if res is None else self._handle(res)

    def disconnect(self):
        self.sock.write(b"\xe0\0")
        broker._gone(self, clean=True)
        self.sock.close()
