# MQTT transport for MicroPython: umqtt.simple behind the agent's small interface.
#
# umqtt.simple blocks in two places the agent cannot afford: publish() with
# QoS 1 loops in wait_msg() until the PUBACK comes, and wait_msg() puts the
# socket back into blocking mode after every read (check_msg() included). The
# socket is therefore wrapped so that "blocking" always means "blocking with
# our timeout": a lost PUBACK or a dead peer raises OSError after timeout_ms,
# and the agent reconnects. The agent sends the keepalive pings itself, and
# since umqtt.simple swallows PINGRESP, the wrapper counts the reads that
# brought bytes (`rx`): the link's proof that the broker still answers. The
# CONNACK wait is bounded too (umqtt.simple >= 1.4 takes a connect timeout): a
# hung broker's kernel still accepts the TCP connection and then says nothing.
# A catch-up batch is handed to publish() as an object with len() and write_to()
# (link._Batch), never as bytes: umqtt.simple sizes the packet with len(msg) and
# writes it with sock.write(msg), and the wrapper lets the batch stream itself.


class _TimeoutSocket:
    """Delegates to a socket; setblocking(True) re-applies the timeout instead."""

    def __init__(self, sock, timeout_s):
        self._s = sock
        self.rx = 0  # reads that returned bytes
        # A port whose TLS socket lacks settimeout() keeps plain blocking mode
        # there (the watchdog is then the last resort): see docs/AGENT.md.
        self._t = timeout_s if hasattr(sock, "settimeout") else None
        self.setblocking(True)

    def setblocking(self, flag):
        if flag and self._t is not None:
            self._s.settimeout(self._t)
        else:
            self._s.setblocking(flag)

    def read(self, *args):
        data = self._s.read(*args)
        if data:
            self.rx += 1
        return data

    def write(self, data, *n):
        if hasattr(data, "write_to"):
            # A catch-up batch (link._Batch): umqtt.simple's publish() took its len() for
            # the packet header and now writes it; it streams itself from the journal.
            return data.write_to(self._s.write)
        return self._s.write(data, *n)  # bytes, bytearray, memoryview; umqtt writes str too

    def close(self):
        return self._s.close()


def ssl_context(tls):
    """An SSLContext from the config's mqtt.tls {ca, cert, key}, or None."""
    if not tls:
        return None
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.get("ca"):
        ctx.load_verify_locations(cafile=tls["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        # Encrypted but unauthenticated: allowed so a maker can start, documented as weak.
        ctx.verify_mode = ssl.CERT_NONE
    if tls.get("cert"):
        ctx.load_cert_chain(tls["cert"], tls["key"])
    return ctx


class UmqttTransport:
    def __init__(
        self,
        client_id,
        host,
        port,
        user=None,
        password=None,
        keepalive_s=60,
        timeout_ms=5000,
        ssl=None,
        client_class=None,
    ):
        self._args = (client_id, host, port, user, password, keepalive_s, ssl)
        self._timeout = timeout_ms / 1000
        self._cls = client_class
        self._client = None
        self._cb = None

    @classmethod
    def from_config(cls, mqtt, client_id, client_class=None):
        """Build from the config's mqtt section (passwords are Secret objects there)."""
        pw = mqtt["password"]
        return cls(
            mqtt["client_id"] or client_id,
            mqtt["host"],
            mqtt["port"],
            mqtt["user"],
            pw.reveal() if pw is not None else None,
            mqtt["keepalive_s"],
            mqtt["timeout_ms"],
            ssl_context(mqtt["tls"]),
            client_class,
        )

    def set_callback(self, cb):
        self._cb = cb

    def _deliver(self, topic, msg):
        if self._cb is not None:
            self._cb(topic.decode() if isinstance(topic, (bytes, bytearray)) else topic, msg)

    def connect(self, will_topic, will_payload):
        cls = self._cls
        if cls is None:
            from umqtt.simple import MQTTClient as cls
        client_id, host, port, user, password, keepalive, ssl = self._args
        c = cls(client_id, host, port, user, password, keepalive, ssl)
        c.set_callback(self._deliver)
        c.set_last_will(will_topic, will_payload, True, 1)
        self._client = c
        # umqtt creates its socket inside connect(). With a timeout (umqtt.simple
        # 1.4 and later) it bounds the TCP connect on most ports and the CONNACK
        # wait; an older umqtt.simple takes none, and then only the watchdog does.
        try:
            c.connect(True, self._timeout)
        except TypeError:
            c.connect()
        c.sock = _TimeoutSocket(c.sock, self._timeout)

    def subscribe(self, topic):
        self._client.subscribe(topic, 1)

    def publish(self, topic, payload, retain=False):
        self._client.publish(topic, payload, retain, 1)

    def poll(self):
        # Up to a few queued messages per call; each check_msg() reads at most one.
        c = self._client
        for _ in range(4):
            if c.check_msg() is None:
                break

    def ping(self):
        self._client.ping()

    @property
    def rx(self):
        """Reads that brought bytes on this connection: grows while the broker answers."""
        c = self._client
        return getattr(c.sock, "rx", 0) if c is not None else 0

    def disconnect(self):
        c, self._client = self._client, None
        if c is not None:
            c.disconnect()

    def close(self):
        c, self._client = self._client, None
        if c is not None and c.sock is not None:
            try:
                c.sock.close()
            except OSError:
                pass
