# GPIO pulse counter (coin acceptor, payment or meter pulse output).
#
# The IRQ handler only counts: ticks read, one compare, two integer stores, no
# allocation (MicroPython forbids heap use in hard IRQs). poll() turns the
# pulses counted so far into ONE rev record (amount = pulses x value) once the
# line has been quiet for flush_ms, and consumes them only after the record is
# journaled: a refused record (journal_full) leaves them counted for the next
# try, and a consumed pulse is never recorded twice. Pulses not yet recorded
# when power fails are lost (never double-counted): keep flush_ms short.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_REBASE = const(1 << 20)  # keep counters small ints (no bigint in the IRQ)


class PulseSource:
    def __init__(
        self,
        value,
        currency,
        ticks_ms,
        ticks_diff,
        debounce_ms=20,
        flush_ms=1000,
        src="pulse",
        irq_off=None,
        irq_on=None,
    ):
        self.value = value
        self.currency = currency
        self.src = src
        self._ticks = ticks_ms
        self._diff = ticks_diff
        self._debounce = debounce_ms
        self._flush = flush_ms
        self._irq_off = irq_off
        self._irq_on = irq_on
        self.count = 0  # written by the IRQ only
        self._last = ticks_ms()
        self.consumed = 0  # written by poll() only
        self.counts = {"pulses": 0, "refused": 0}  # pulses recorded, records refused (stats)
        self.handler = self._irq  # bound once: pin.irq(handler=source.handler)

    def _irq(self, pin):
        t = self._ticks()
        if self._diff(t, self._last) >= self._debounce or not self.count:
            self.count += 1
        self._last = t  # bounces extend the quiet period

    def poll(self, agent):
        pending = self.count - self.consumed
        if pending <= 0:
            return
        if self._diff(self._ticks(), self._last) < self._flush:
            return  # still coming in: one record for the whole burst
        try:
            agent.record_revenue(pending * self.value, self.currency, self.src)
        except Exception as e:  # RecordRefused: keep the pulses for the next poll
            self.counts["refused"] += 1
            if getattr(e, "reason", None) != "journal_full":
                raise
            return
        self.consumed += pending
        self.counts["pulses"] += pending
        if self.consumed >= _REBASE:
            state = self._irq_off() if self._irq_off else None
            self.count -= self.consumed
            self.consumed = 0
            if self._irq_on:
                self._irq_on(state)
