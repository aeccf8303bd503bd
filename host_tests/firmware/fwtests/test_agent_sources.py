# Revenue sources: the UART line protocol (pure parser and the source on a
# fake UART) and the pulse counter. CPython and MicroPython.

from signet.pulse import PulseSource
from signet.uartline import LineError, UartSource, checksum, frame, parse

try:
    from .agentkit import Rig, make_config
except ImportError:  # MicroPython runner: flat import path
    from agentkit import Rig, make_config


def _line(body):
    return frame(body)[:-2]  # without CRLF


def test_uart_parse_good_lines():
    assert parse(_line(b"REV,250,EUR")) == ("rev", 250, "EUR", None)
    assert parse(_line(b"REV,-100,USD,T-0001/7")) == ("rev", -100, "USD", "T-0001/7")
    assert parse(_line(b"MTR,1234,Wh")) == ("mtr", 1234, "Wh")
    assert parse(_line(b"PING")) == ("ping",)
    assert parse(_line(b"REV,1,JPY") + b"\r") == ("rev", 1, "JPY", None)
    lower = b"REV,5,EUR*%02x" % checksum(b"REV,5,EUR")
    assert parse(lower) == ("rev", 5, "EUR", None)


def _reason(line):
    try:
        parse(line)
    except LineError as e:
        return e.reason
    raise AssertionError("accepted %r" % (line,))


def test_uart_parse_bad_lines_name_the_reason():
    assert _reason(b"REV,250,EUR*00") == "checksum"
    assert _reason(b"REV,250,EUR") == "format"
    assert _reason(b"REV,250,EUR*4") == "format"
    assert _reason(b"REV,250,EUR*ZZ") == "format"
    assert _reason(_line(b"REV,2.50,EUR")) == "amount"
    assert _reason(_line(b"REV,,EUR")) == "amount"
    assert _reason(_line(b"REV,99999999999999999,EUR")) == "amount"
    assert _reason(_line(b"REV,250,eur")) == "currency"
    assert _reason(_line(b"REV,250,EURO")) == "currency"
    assert _reason(_line(b"REV,250,EUR," + b"x" * 65)) == "ref"
    assert _reason(_line(b"REV,250,EUR,a\tb")) == "ref"
    assert _reason(_line(b"MTR,1,k W")) == "unit"
    # The record's unit rule, not a looser one: refused here with its reason,
    # not later as bad_record.
    assert _reason(_line(b"MTR,1,kg!")) == "unit"
    assert _reason(_line(b"MTR,1,\xc3\xa9")) == "unit"
    assert _reason(_line(b"MTR,1," + b"k" * 17)) == "unit"
    assert _reason(_line(b"PAY,250,EUR")) == "format"
    assert _reason(_line(b"REV,250")) == "format"
    assert _reason(b"x" * 97) == "too_long"


class FakeUart:
    def __init__(self):
        self.rx = b""
        self.tx = []

    def any(self):
        return len(self.rx)

    def read(self, n):
        data, self.rx = self.rx[:n], self.rx[n:]
        return data or None

    def write(self, data):
        self.tx.append(bytes(data))


def test_uart_source_acks_records_and_naks_bad_lines():
    uart = FakeUart()
    logs = []
    src = UartSource(uart, log=logs.append)
    rig = Rig(sources=[src])
    try:
        uart.rx = frame(b"REV,250,EUR,r1") + b"REV,1,EUR*00\n" + frame(b"MTR,7,L")
        uart.rx += b"y" * 120 + b"\n" + frame(b"PING")
        rig.run_ms(1000)
        assert len(uart.tx) == 5, uart.tx
        n = int(uart.tx[0][4:].split(b"*")[0])
        assert uart.tx[0] == frame(b"ACK,%d" % n)
        assert uart.tx[1] == frame(b"NAK,checksum")
        assert uart.tx[2] == frame(b"ACK,%d" % (n + 1))
        assert uart.tx[3] == frame(b"NAK,too_long")
        assert uart.tx[4] == frame(b"PONG")
        assert src.counts == {"lines": 2, "refused": 2, "repeats": 0} and len(logs) == 2
        assert rig.agent.stats["sources"] == {"uart": src.counts}
        rig.run_until(lambda: rig.gw.ack >= n + 1)
        rev = rig.gw.fields(n)
        assert (rev["am"], rev["cur"], rev["src"], rev["ref"]) == (250, "EUR", "uart", "r1")
        assert rig.gw.fields(n + 1)["q"] == 7
    finally:
        rig.close()


def _revs_with_ref(rig, ref):
    return [
        n for n in rig.gw.records if rig.gw.kinds[n] == "rev" and rig.gw.fields(n).get("ref") == ref
    ]


def test_uart_repeated_line_is_acked_with_its_first_n_not_signed_again():
    """A terminal that missed the ACK sends the same line again: it gets the same ACK,
    before and after a reboot, and the sale is stored once."""
    uart = FakeUart()
    logs = []
    src = UartSource(uart, log=logs.append)
    rig = Rig(sources=[src])
    try:
        line = frame(b"REV,250,EUR,T-17")
        uart.rx = line
        rig.run_ms(300)
        n = int(uart.tx[0][4:].split(b"*")[0])
        assert uart.tx == [frame(b"ACK,%d" % n)]
        uart.rx = line + line
        rig.run_ms(300)
        assert uart.tx[1:] == [frame(b"ACK,%d" % n)] * 2
        assert rig.agent.recorder.repeats == 2
        assert logs == ["uart: ref already recorded as n=%d: ACK again" % n] * 2
        # The same reference with another amount is not a retry: refused, not merged.
        uart.rx = frame(b"REV,300,EUR,T-17")
        rig.run_ms(300)
        assert uart.tx[3] == frame(b"NAK,ref_conflict")
        rig.reboot()  # power cycle: the window comes back from flash
        uart.rx = line
        rig.run_ms(300)
        assert uart.tx[4] == frame(b"ACK,%d" % n)
        assert src.counts == {"lines": 1, "refused": 1, "repeats": 3}
        rig.run_until(lambda: rig.gw.ack >= rig.agent.stats["last_n"])
        assert _revs_with_ref(rig, "T-17") == [n]
    finally:
        rig.close()


def test_uart_silence_signs_sensor_missing_once():
    uart = FakeUart()
    src = UartSource(uart, silence_ms=3000, log=lambda m: None)
    rig = Rig(sources=[src])
    try:
        rig.run_ms(8000)
        rig.run_until(lambda: rig.gw.ack >= rig.agent.stats["last_n"])
        evts = [rig.gw.fields(n) for n in rig.gw.records if rig.gw.kinds[n] == "evt"]
        assert [e["ev"] for e in evts] == ["sensor_missing"]
    finally:
        rig.close()


def test_pulses_debounced_batched_and_never_double_counted():
    rig = Rig(
        cfg=make_config(journal={"segment_bytes": 2048, "segments": 6, "reserve_segments": 2})
    )
    p = rig.platform
    src = PulseSource(50, "EUR", p.ticks_ms, p.ticks_diff, debounce_ms=20, flush_ms=500)
    rig.agent.sources.append(src)
    try:
        for _ in range(4):  # 4 coins, each with contact bounce
            src.handler(None)
            p.advance(2)
            src.handler(None)  # bounce: ignored
            p.advance(100)
        rig.run_ms(1500)
        assert src.count == 4 and src.consumed == 4
        revs = [n for n in rig.agent.recorder.journal.pending(0)]
        rig.run_until(lambda: rig.gw.ack >= rig.agent.stats["last_n"])
        amounts = [rig.gw.fields(n)["am"] for n in rig.gw.records if rig.gw.kinds[n] == "rev"]
        assert amounts == [200] and revs
        # Journal full: pulses stay counted and are recorded once there is room.
        rig.gw.online = False
        while True:
            try:
                rig.agent.record_revenue(1, "EUR", "local")
            except Exception:
                break
        src.handler(None)
        p.advance(100)
        src.handler(None)
        rig.run_ms(2000)
        assert src.count - src.consumed == 2 and src.counts["refused"] >= 1
        assert rig.agent.stats["sources"]["pulse"]["pulses"] == 4  # the 2 new ones wait
        rig.gw.online = True
        rig.run_until(lambda: src.consumed == src.count, max_ms=60000)
        rig.run_until(lambda: rig.gw.ack >= rig.agent.stats["last_n"])
        amounts = [
            rig.gw.fields(n)["am"] for n in sorted(rig.gw.records) if rig.gw.kinds[n] == "rev"
        ]
        assert amounts.count(100) == 1 and amounts[0] == 200  # 2 x 50, recorded once
    finally:
        rig.close()
