# A checksummed line protocol for a payment terminal or vending controller.
#
#   REV,<amount>,<CUR>[,<ref>]*<XX>     revenue: integer minor units (e.g. 250 = 2.50 EUR)
#   MTR,<q>,<unit>*<XX>                 metered quantity
#   PING*<XX>                           liveness (answered PONG)
# <XX> = XOR of every byte before "*", two hex digits (as NMEA 0183). Lines end
# with \n (\r\n accepted), at most 96 bytes. Replies, checksummed the same way:
#   ACK,<n>*<XX>        the record was signed and journaled as sequence n
#   NAK,<reason>*<XX>   refused; reason: checksum, format, too_long, amount,
#                       currency, unit, ref, ref_conflict, journal_full, bad_record
# A NAKed line was not recorded: the sender keeps it and may retry it. A REV line
# whose ref the agent recorded recently (a retry after a lost ACK) is answered
# with the original ACK,<n> and not signed again (docs/AGENT.md, "Idempotent sales").

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from .record import MAX_SAFE_INT, RecordError, check_currency, check_text, check_unit

MAX_LINE = const(96)


class LineError(ValueError):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def checksum(body):
    x = 0
    for b in body:
        x ^= b
    return x


def frame(body):
    """body bytes + "*XX" + CRLF."""
    return b"%s*%02X\r\n" % (body, checksum(body))


def _int(field, reason):
    digits = field[1:] if field[:1] == b"-" else field
    if not 1 <= len(digits) <= 16 or not all(0x30 <= c <= 0x39 for c in digits):
        raise LineError(reason)
    value = int(field)
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise LineError(reason)
    return value


def _text(field, check, reason):
    # The record's own rule, so a line is NAKed with the field's reason here
    # rather than as bad_record once the record is built.
    try:
        value = field.decode()
        check(reason, value)
    except (UnicodeError, RecordError):
        raise LineError(reason) from None
    return value


def parse(line):
    """One line (without its newline) -> ("rev", am, cur, ref) | ("mtr", q, unit) | ("ping",).

    Raises LineError(reason) for anything else.
    """
    line = bytes(line).rstrip(b"\r")
    if len(line) > MAX_LINE:
        raise LineError("too_long")
    star = line.rfind(b"*")
    if star < 0 or len(line) != star + 3:
        raise LineError("format")
    try:
        want = int(line[star + 1 :], 16)
    except ValueError:
        raise LineError("format") from None
    body = line[:star]
    if checksum(body) != want:
        raise LineError("checksum")
    parts = body.split(b",")
    kind = parts[0]
    if kind == b"PING" and len(parts) == 1:
        return ("ping",)
    if kind == b"REV" and len(parts) in (3, 4):
        am = _int(parts[1], "amount")
        cur = _text(parts[2], check_currency, "currency")
        ref = None
        if len(parts) == 4:
            if any(c < 0x20 or c == 0x7F for c in parts[3]):
                raise LineError("ref")  # a line protocol carries no control characters
            ref = _text(parts[3], check_text, "ref")
        return ("rev", am, cur, ref)
    if kind == b"MTR" and len(parts) == 3:
        q = _int(parts[1], "amount")
        return ("mtr", q, _text(parts[2], check_unit, "unit"))
    raise LineError("format")


class UartSource:
    """Reads lines from a UART-like object (any(), read(n), write(b)), records them, replies.

    silence_ms > 0: no line for that long signs one sensor_missing event
    (re-armed by the next good line): a terminal that sends PING regularly
    makes a cut cable visible.
    """

    def __init__(self, uart, src="uart", silence_ms=0, log=print):
        self.uart = uart
        self.src = src
        self._silence = silence_ms
        self._log = log
        self._buf = bytearray(MAX_LINE + 2)
        self._len = 0
        self._overflow = False
        self._heard = None  # agent uptime of the last good line
        self._missing = False
        # lines recorded, lines NAKed, retried REV lines ACKed with their first n (stats)
        self.counts = {"lines": 0, "refused": 0, "repeats": 0}

    def poll(self, agent):
        now = agent.uptime.now()
        if self._heard is None:
            self._heard = now
        data = self.uart.read(64) if self.uart.any() else None
        for b in data or ():
            if b == 0x0A:
                if self._overflow:
                    self._refuse("too_long", b"")
                elif self._len:
                    self._line(agent, bytes(self._buf[: self._len]), now)
                self._len = 0
                self._overflow = False
            elif self._len < len(self._buf):
                self._buf[self._len] = b
                self._len += 1
            else:
                self._overflow = True
        if self._silence and not self._missing and now - self._heard >= self._silence:
            self._missing = True
            try:
                agent.record_event(
                    "sensor_missing", "%s: no line for %d s" % (self.src, self._silence // 1000)
                )
            except Exception as e:
                self._log("uart: %r" % (e,))

    def _refuse(self, reason, line):
        self.counts["refused"] += 1
        self._log("uart: refused %s: %r" % (reason, line[:40]))
        self.uart.write(frame(b"NAK," + reason.encode()))

    def _line(self, agent, line, now):
        try:
            msg = parse(line)
        except LineError as e:
            self._refuse(e.reason, line)
            return
        self._heard = now
        self._missing = False
        if msg[0] == "ping":
            self.uart.write(frame(b"PONG"))
            return
        try:
            if msg[0] == "rev":
                n = agent.record_revenue(msg[1], msg[2], self.src, msg[3])
            else:
                n = agent.record_meter(msg[1], msg[2], self.src)
        except Exception as e:  # RecordRefused: journal_full, bad_record, ref_conflict
            self._refuse(getattr(e, "reason", "bad_record"), line)
            return
        if agent.recorder.repeated:
            self.counts["repeats"] += 1
            self._log("uart: ref already recorded as n=%d: ACK again" % n)
        else:
            self.counts["lines"] += 1
        self.uart.write(frame(b"ACK,%d" % n))
