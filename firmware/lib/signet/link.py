# The link: the MQTT session that carries journaled records to a gateway.
#
# Owns the connection (with backoff and jitter), the keepalive ping and the
# dead-peer check (a hung broker keeps the TCP connection open and answers
# nothing: dropped once nothing arrived for keepalive_s), the gateway's ack
# (parsed, checked, applied to the journal), live publishes of the newest
# record and catch-up batches, streamed from the journal (_Batch): RAM never
# holds a batch, only _CHUNK bytes of it at a time, whatever batch_bytes is.
# It only sends what is already journaled, and only the gateway's retained ack
# prunes the journal, never an MQTT PUBACK (a broker may have no gateway
# behind it). From the recorder it reads, once per step: `journal` (acked,
# pending(), ack()), `last_n` and `live` ((n, bytes) of the newest record).
#
# Low memory is not a network fault. A MemoryError inside a transport call
# leaves the MQTT stream in an unknown state (half a packet may be out), so the
# connection is closed and reopened, but at once after a gc.collect(), without
# backoff, counted in memory_errors (not disconnects). Nothing under a publish
# is asked for more than _CHUNK bytes or one record at a time, so a smaller
# batch would need no less memory: the batch keeps its size. Handlers never
# format a message that could itself fail to allocate and escape step().
#
# May import: record (for MAX_SAFE_INT) only; the transport is handed in
# (mqtt.py on MicroPython, tools/pi/paho_transport.py on CPython), so this module
# never imports an MQTT client, nor anything that signs.

import gc

from .record import MAX_SAFE_INT

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BATCH_HEAD = const(3)  # room for a CBOR array head (count < 65536)
# A batch goes out in pieces of up to this many bytes: whole elements (bstr head and
# record) copied from the journal's frame buffer, so a TLS socket makes one TLS record
# of a record and its head (or of several short ones), not two. 256: a rev record is
# about 180 bytes; 512 packed two a piece but cost a frozen agent's heap its margin.
_CHUNK = const(256)


def parse_ack(data):
    """The n of an ack payload: exactly the deterministic CBOR map {"n": uint53}, else None."""
    size = len(data)
    if size < 4 or data[0] != 0xA1 or data[1] != 0x61 or data[2] != 0x6E:
        return None
    ai = data[3]
    if ai < 24:
        return ai if size == 4 else None
    width = 1 << (ai - 24) if 24 <= ai <= 27 else 0
    if not width or size != 4 + width:
        return None
    value = int.from_bytes(bytes(data[4:]), "big")
    # Shortest form only (a non-canonical ack is not what a gateway sends).
    if value < (24 if width == 1 else 1 << (4 * width)) or value > MAX_SAFE_INT:
        return None
    return value


class Link:
    """Connect, resume from the ack, publish; step(now, rec) once per loop."""

    def __init__(self, mqtt_cfg, platform, transport, device_id, uptime):
        self.platform = platform
        self.transport = transport
        self.uptime = uptime
        base = "signet/v1/" + device_id
        self.topic_rec = base + "/rec"
        self.topic_ack = base + "/ack"
        self.topic_status = base + "/status"
        self._dead_ms = mqtt_cfg["keepalive_s"] * 1000  # nothing received this long: dead
        self._ping_ms = self._dead_ms // 2  # ping at half the keepalive
        self._ack_timeout = mqtt_cfg["ack_timeout_s"] * 1000
        self._ack_wait = mqtt_cfg["ack_wait_ms"]
        self._bmin = mqtt_cfg["backoff_min_ms"]
        self._bmax = mqtt_cfg["backoff_max_ms"]
        self._batch_bytes = mqtt_cfg["batch_bytes"]  # the largest catch-up message
        self._batch = _Batch()  # one for the link's life: a catch-up never allocates one
        self.connected = False
        self._failures = 0
        self._next_try = 0
        self._cursor = 0  # highest n published on this connection
        self._ack_in = 0  # highest valid ack received, applied in step()
        self._ack_got = False
        self._sync_until = 0
        self._ack_progress = 0
        self._last_tx = 0
        self._last_rx = 0  # when the transport's rx count last moved
        self._rx = 0  # that count, as last seen
        self._pinged = 0  # when the last ping went out
        # counters (Agent.stats)
        self.published = 0
        self.records_sent = 0
        self.connects = 0
        self.disconnects = 0
        self.resends = 0
        self.bad_acks = 0
        self.stale_acks = 0
        self.last_backoff_ms = 0
        self.memory_errors = 0
        transport.set_callback(self._on_message)

    def stop(self):
        """Publish "offline" and disconnect cleanly (the last will is for unclean ends)."""
        if self.connected:
            try:
                self.transport.publish(self.topic_status, b"offline", True)
                self.transport.disconnect()
            except Exception as e:
                _log(self.platform, "agent: disconnect: %r", e)
            self.connected = False

    def _on_message(self, topic, payload):
        if topic != self.topic_ack:
            return
        n = parse_ack(payload)
        if n is None:
            self.bad_acks += 1
            self.platform.log("agent: ignored malformed ack (%d bytes)" % len(payload))
            return
        self._ack_got = True
        if n > self._ack_in:
            self._ack_in = n
        elif n < self._ack_in:
            self.stale_acks += 1  # lower than one already taken: ignored

    def _apply_ack(self, now, j, last_n):
        n = self._ack_in
        if n <= j.acked:
            return
        if n > last_n:
            # An ack for records this device never journaled: pruning on it
            # could delete unsent records. Refuse it.
            self.bad_acks += 1
            self._ack_in = j.acked
            self.platform.log("agent: ignored ack %d beyond last record %d" % (n, last_n))
            return
        j.ack(n)
        self._ack_progress = now
        if self._cursor < n:
            self._cursor = n

    def _backoff(self, now):
        self._failures += 1
        shift = self._failures - 1
        base = self._bmax if shift > 20 else min(self._bmax, self._bmin << shift)
        # Half fixed, half random: a fleet that lost its broker does not return in step.
        half = base // 2
        r = self.platform.urandom(2)
        delay = half + (r[0] << 8 | r[1]) * (base - half) // 65535
        self.last_backoff_ms = delay
        self._next_try = now + delay

    def _close(self):
        self.connected = False
        try:
            self.transport.close()
        except Exception:
            pass

    def _drop(self, now, e):
        _log(self.platform, "agent: connection lost: %r", e)
        self._close()
        self.disconnects += 1
        self._backoff(now)

    def _low_memory(self, now):
        # Free what the failed call left, then reconnect at the next step; the
        # journal still holds everything, so nothing is lost, only resent.
        gc.collect()
        self.memory_errors += 1
        if self.connected:
            self._close()
        self._next_try = now
        _log(self.platform, "agent: low memory (%d): reconnecting", self.memory_errors)

    def step(self, now, rec):
        """Connect or exchange messages; True if more is ready to send at once.

        rec: the recorder (its journal, last_n and live are read here).
        """
        if not self.connected:
            if now < self._next_try:
                return False
            if not self.platform.network_ready():
                self.platform.connect_network()
                self._backoff(now)
                return False
            try:
                self.transport.connect(self.topic_status, b"offline")
                self.transport.subscribe(self.topic_ack)
                self.transport.publish(self.topic_status, b"online", True)
            except MemoryError:
                self._low_memory(now)
                return False
            except Exception as e:  # OSError, umqtt's MQTTException and asserts
                self._drop(now, e)
                self.disconnects -= 1  # never connected: a failed attempt, not a drop
                return False
            self.connected = True
            self.connects += 1
            self._failures = 0
            self._cursor = rec.journal.acked  # resend everything not acked
            self._ack_got = False
            self._sync_until = now + self._ack_wait  # let the retained ack arrive first
            self._ack_progress = now
            self._last_tx = now
            self._last_rx = now
            self._rx = self.transport.rx
            return False
        try:
            self.transport.poll()
            self._check_peer(now)
            j = rec.journal
            last_n = rec.last_n
            self._apply_ack(now, j, last_n)
            return self._send(now, j, last_n, rec.live)
        except MemoryError:
            self._low_memory(now)
            return False
        except Exception as e:
            self._drop(now, e)
            return False

    def _check_peer(self, now):
        # A hung broker (SIGSTOP, a dead NAT entry) leaves the connection open and
        # answers nothing; umqtt.simple never checks that a PINGRESP comes back.
        # Anything received proves the peer alive; after keepalive/2 of silence one
        # ping asks it, and keepalive of silence ends the connection.
        rx = self.transport.rx
        if rx != self._rx:
            self._rx = rx
            self._last_rx = now
        quiet = now - self._last_rx
        if quiet >= self._dead_ms:
            raise OSError("no packet from the broker for %d s" % (quiet // 1000))
        if now - self._last_tx >= self._ping_ms or (
            quiet >= self._ping_ms and self._pinged <= self._last_rx
        ):
            self.transport.ping()  # umqtt sends no keepalive by itself
            self._last_tx = self._pinged = now

    def _send(self, now, j, last_n, live):
        if not self._ack_got and now < self._sync_until:
            return False
        if self._cursor >= last_n:
            if self._cursor > j.acked and now - self._ack_progress >= self._ack_timeout:
                # Published but not acked in time: a gateway may have crashed after
                # the broker's PUBACK. Resend from the ack (duplicates are harmless).
                self._cursor = j.acked
                self._ack_progress = now
                self.resends += 1
            return False
        if self._cursor == j.acked:
            self._ack_progress = now  # the ack timeout runs from the first unacked publish
        if live is not None and live[0] == self._cursor + 1 == last_n:
            self._publish(live[1], live[0], 1)
        else:
            self._publish_batch(j)
        return self._cursor < last_n

    def _publish(self, payload, last, count):
        self.transport.publish(self.topic_rec, payload)
        self._last_tx = self.uptime.now()
        self._cursor = last
        self.published += 1
        self.records_sent += count

    def _publish_batch(self, j):
        # Sized here from one read of the journal; written by the transport's publish()
        # through _Batch.write_to, from a second read (MQTT sends the length first).
        cap = self._batch_bytes - _BATCH_HEAD
        after = last = self._cursor
        size = count = first = 0
        it = j.pending(after, True)
        try:
            for n, rec in it:
                length = len(rec)
                element = length + _head_bytes(length)
                if size + element > cap:
                    break
                if not count:
                    first = length
                size += element
                count += 1
                last = n
        finally:
            it.close()  # a generator: releases the segment file it has open
        if count == 0:
            return
        self._batch.arm(j, after, last, count, first if count == 1 else size)
        self._publish(self._batch, last, count)


class _Batch:
    """One catch-up message, streamed: [+ bstr] oldest first, or a lone record bare.

    len() is the message's size, known before a byte of it goes out; write_to(write)
    reads the same records from the journal again and hands them to write() in pieces
    of up to _CHUNK bytes (a record longer than that alone). The transport calls
    write_to from inside its publish (mqtt.py: umqtt.simple writes the payload with
    sock.write); a transport that needs the bytes whole collects them the same way.
    """

    def __init__(self):
        self._buf = memoryview(bytearray(_CHUNK))
        self._journal = None
        self._after = self._last = self._count = self._size = 0

    def arm(self, journal, after, last, count, elements):
        """The records after..last, count of them, elements bytes of bstr heads and records
        (for a lone record: its own length, sent bare)."""
        self._journal = journal
        self._after = after
        self._last = last
        self._count = count
        self._size = (_head_bytes(count) if count > 1 else 0) + elements

    def __len__(self):
        return self._size

    def write_to(self, write):
        buf = self._buf
        count = self._count
        pos = _head(buf, 0, 0x80, count) if count > 1 else 0  # the array's
        total = pos
        sent = 0
        it = self._journal.pending(self._after, True)  # views into the journal's buffer
        try:
            for n, rec in it:
                if n > self._last:
                    break
                size = len(rec)
                head = _head_bytes(size) if count > 1 else 0
                if pos + head + size > _CHUNK and pos:
                    write(buf[:pos])
                    pos = 0
                if head:
                    pos = _head(buf, pos, 0x40, size)  # the record's bstr
                if pos + size > _CHUNK:  # longer than a piece: its head, then itself
                    if pos:
                        write(buf[:pos])
                        pos = 0
                    write(rec)
                else:
                    buf[pos : pos + size] = rec
                    pos += size
                total += head + size
                sent += 1
        finally:
            it.close()
        if pos:
            write(buf[:pos])
        if sent != count or total != self._size:
            # Fewer bytes than the length announced: the MQTT stream is broken and the
            # link drops the connection; everything is still journaled and is resent.
            raise OSError("journal changed under a catch-up batch")


def _head_bytes(value):
    return 1 if value < 24 else 2 if value < 256 else 3


def _head(buf, pos, major, value):
    # A deterministic CBOR head (value < 65536) at buf[pos]; returns the position after it.
    if value < 24:
        buf[pos] = major | value
        return pos + 1
    if value < 256:
        buf[pos] = major | 24
        buf[pos + 1] = value
        return pos + 2
    buf[pos] = major | 25
    buf[pos + 1] = value >> 8
    buf[pos + 2] = value & 0xFF
    return pos + 3


def _log(platform, fmt, arg):
    # Called from error handlers: a message that cannot be allocated is skipped,
    # never raised out of the handler.
    try:
        platform.log(fmt % (arg,))
    except MemoryError:
        pass
