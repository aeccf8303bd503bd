"""The machine's software: a till that hands every sale to the agent with `signet agent record`.

It runs the real command (a process per attempt, as a payment terminal's script would) and
follows the exit-status contract of docs/AGENT.md for each sale, which carries a unique
`--ref` from its first attempt to its last:

    0  recorded (a retry of a ref already recorded also says 0, with the original n, and
       "already recorded")
    1  refused by the agent: the sale is not recorded; the till keeps the refusal
    2  usage error: nothing was sent; a till bug, so it gives the sale up (a test fails on it)
    3  not delivered: retry
    4  outcome unknown: retry with the same ref (the agent may have recorded it)

A sale that is neither recorded nor refused within `give_up_s` of its first attempt stays
"unresolved". Sales run back to back in one thread, a new one every `interval` seconds
(start to start; at once when the previous took longer).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SIGNET = str(Path(sys.executable).parent / "signet")

RECORDED, REFUSED, USAGE, NOT_DELIVERED, UNKNOWN = 0, 1, 2, 3, 4
_N = re.compile(r"\bn=(\d+)")


@dataclass(frozen=True)
class Attempt:
    started: float  # time.monotonic()
    code: int
    out: str
    err: str


@dataclass
class Sale:
    ref: str
    amount: int
    currency: str
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = "pending"  # accepted, refused, usage_error, unresolved, abandoned
    n: int | None = None  # the sequence number the agent answered, when accepted
    done_at: float | None = None

    @property
    def codes(self) -> list[int]:
        return [a.code for a in self.attempts]

    @property
    def retried_after_unknown(self) -> bool:
        return UNKNOWN in self.codes[:-1]

    @property
    def repeated(self) -> bool:
        """Accepted on a retry that the agent recognised by its ref (signed before)."""
        return bool(self.attempts) and self.attempts[-1].out.startswith("already recorded")

    def describe(self) -> str:
        last = self.attempts[-1] if self.attempts else None
        said = f"; last said {(last.out + last.err).strip()!r}" if last else ""
        what = f"{self.ref} ({self.amount} {self.currency})"
        return f"{what}: {self.outcome}, exits {self.codes}{said}"


class Till:
    """Sells until stop(); sales() is every sale so far, in order."""

    def __init__(
        self,
        socket: Path,
        rng: random.Random,
        *,
        prefix: str = "sale",
        currency: str = "EUR",
        interval: tuple[float, float] = (0.1, 0.2),
        retry_wait: tuple[float, float] = (0.05, 0.3),
        timeout_s: float = 5.0,
        give_up_s: float = 120.0,
    ) -> None:
        self.socket = Path(socket)
        self.rng = rng
        self.prefix = prefix
        self.currency = currency
        self.interval = interval
        self.retry_wait = retry_wait
        self.timeout_s = timeout_s
        self.give_up_s = give_up_s
        self._sales: list[Sale] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._in_flight = threading.Event()
        self._thread = threading.Thread(target=self._run, name="till", daemon=True)
        self.error: BaseException | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> Till:
        self._thread.start()
        return self

    def stop(self, timeout: float) -> None:
        """No new sale; the sale in progress runs to its outcome (retries included)."""
        self._stop.set()
        if not self._thread.is_alive():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the till's last sale did not finish in {timeout:g}s")
        if self.error is not None:
            raise self.error

    def abandon(self, timeout: float = 30.0) -> None:
        """Stop at once (a test's teardown): the sale in progress ends "abandoned"."""
        self._abandon.set()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- what happened -------------------------------------------------------------------

    def sales(self) -> list[Sale]:
        with self._lock:
            return list(self._sales)

    @property
    def in_flight(self) -> bool:
        """An attempt is running: `signet agent record` has been started and not returned."""
        return self._in_flight.is_set()

    def accepted_since(self, since: float) -> int:
        """Sales accepted on an attempt that started at or after `since` (time.monotonic())."""
        with self._lock:
            return sum(
                1
                for s in self._sales
                if s.outcome == "accepted" and s.attempts and s.attempts[-1].started >= since
            )

    # -- selling -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            k = 0
            while not self._stop.is_set():
                k += 1
                began = time.monotonic()
                sale = Sale(f"{self.prefix}-{k}", self.rng.randrange(1, 100000), self.currency)
                with self._lock:
                    self._sales.append(sale)
                self._sell(sale)
                pause = self.rng.uniform(*self.interval) - (time.monotonic() - began)
                if pause > 0:
                    self._stop.wait(pause)  # the pace of sales, not synchronisation
        except BaseException as exc:  # handed to the test by stop()
            self.error = exc

    def _sell(self, sale: Sale) -> None:
        first = time.monotonic()
        while True:
            attempt = self._attempt(sale)
            with self._lock:
                sale.attempts.append(attempt)
            if attempt.code == RECORDED:
                found = _N.search(attempt.out)
                self._finish(sale, "accepted", int(found.group(1)) if found else None)
                return
            if attempt.code == REFUSED:
                self._finish(sale, "refused")
                return
            if attempt.code not in (NOT_DELIVERED, UNKNOWN):
                self._finish(sale, "usage_error")
                return
            if self._abandon.is_set():
                self._finish(sale, "abandoned")
                return
            if time.monotonic() - first > self.give_up_s:
                self._finish(sale, "unresolved")
                return
            # The same sale again, same ref, after a short wait (the agent may be restarting);
            # stop() does not cut it short: a till never drops a sale it has started.
            time.sleep(self.rng.uniform(*self.retry_wait))  # a retry's pace

    def _attempt(self, sale: Sale) -> Attempt:
        started = time.monotonic()
        self._in_flight.set()
        try:
            done = subprocess.run(
                [SIGNET, "agent", "record", "rev", "--amount", str(sale.amount),
                 "--currency", sale.currency, "--ref", sale.ref, "--socket", str(self.socket),
                 "--timeout", f"{self.timeout_s:g}"],
                capture_output=True, text=True, timeout=self.timeout_s + 60,
            )  # fmt: skip
        finally:
            self._in_flight.clear()
        return Attempt(started, done.returncode, done.stdout, done.stderr)

    def _finish(self, sale: Sale, outcome: str, n: int | None = None) -> None:
        with self._lock:
            sale.outcome = outcome
            sale.n = n
            sale.done_at = time.monotonic()
