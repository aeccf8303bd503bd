"""Fault injection for the processes of a Signet site: Mosquitto, the gateway, an agent.

A `Site` holds the three processes and the till selling through the agent. Each fault is a
function `fault(site, rng)` that breaks one thing, holds the fault for a random time (and
until the agent has taken a sale meanwhile: a fault outside the agent never stops it
recording; and until the gateway's readiness names the fault, where it can tell), then
repairs it. `run_faults` injects them in a seeded random order at random moments; between
faults and during each one the site is watched, and a process that exits while the test has
not stopped it fails the run at once (ProcessDied, with its log). After each fault, the
agent's ack must be at most the store's.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kit.agentproc import AgentProcess
from kit.store_audit import store_ack
from kit.till import Till
from signet_gateway.ingest.instance_lock import read_status
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto

# A fault outside the agent that keeps it from taking a sale for this long fails the run.
SALE_DEADLINE_S = 45.0
WATCH_S = 0.05  # how often the processes are looked at while waiting
# The gateway's log lines for a store outage (gateway/ingest/store_outage.py: stable).
STORE_FULL = "store full, not acknowledging"
STORE_BACK = "store writable again"
BROKER_GONE = "broker not connected"  # the gateway's readiness problem while it has none
BALLAST = "test_ballast"  # the table another writer fills the database with


class ProcessDied(AssertionError):
    """A process exited that the test had not stopped."""


class NoSaleDuringFault(AssertionError):
    """The agent took no sale while a fault outside it lasted."""


@dataclass
class Site:
    broker: Mosquitto
    gateway: GatewayProcess
    agent: AgentProcess
    till: Till
    store: StoreCap
    broker_keepalive_s: float = 5.0  # the longer of the gateway's and the agent's keepalive
    down: set[str] = field(default_factory=set)  # processes the test stopped on purpose
    history: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s  {what}"
        self.history.append(line)
        print(line, flush=True)

    def check(self) -> None:
        """ProcessDied if a process the test did not stop has exited."""
        procs = (
            ("broker", self.broker.running, self.broker.returncode, self.broker.log_tail),
            ("gateway", _alive(self.gateway), _code(self.gateway), self.gateway.tail),
            ("agent", self.agent.running, self.agent.returncode, self.agent.tail),
        )
        for name, running, code, tail in procs:
            if name not in self.down and not running:
                raise ProcessDied(
                    f"the {name} exited by itself (status {code}) after:\n"
                    + "\n".join(self.history[-8:])
                    + f"\n--- {name} log ---\n{tail()}"
                )

    def watch(self, seconds: float) -> None:
        """Let `seconds` pass (the schedule), checking the processes meanwhile."""
        end = time.monotonic() + seconds
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(WATCH_S, left))  # polling interval, not synchronisation

    def hold(self, what: str, at_least_s: float) -> float:
        """Keep a fault on for at_least_s and until the agent has taken a sale since it began;
        NoSaleDuringFault after SALE_DEADLINE_S. Returns how long it was held."""
        began = time.monotonic()
        self.watch(at_least_s)
        deadline = began + SALE_DEADLINE_S
        while not self.till.accepted_since(began):
            if time.monotonic() > deadline:
                raise NoSaleDuringFault(
                    f"no sale recorded by the agent in {SALE_DEADLINE_S:g}s while {what}\n"
                    + "\n".join(self.history[-8:])
                    + f"\n--- agent log ---\n{self.agent.tail()}"
                )
            self.watch(WATCH_S)
        return time.monotonic() - began

    def check_acks(self) -> None:
        """Nothing acknowledged that is not committed: the agent's ack (read first) is at most
        the store's (which only grows)."""
        device = self.agent.stats()["acked"]
        stored = store_ack(self.store.db, self.agent.kid)
        assert device <= stored, f"the agent holds ack {device}, the store only {stored}"

    def gateway_problems(self) -> list[str] | None:
        """Why the gateway is not ready ([] when it is), from the status it writes beside its
        database (docs/GATEWAY.md, Readiness); None while no gateway runs on it."""
        status = read_status(self.store.db)
        if status is None:
            return None
        return [] if status["ready"] else [str(p) for p in status["problems"]]

    def wait_not_ready(self, problem: str, until: float) -> None:
        """Wait until the gateway's readiness names a problem starting with `problem`."""

        def named() -> bool:
            return any(p.startswith(problem) for p in self.gateway_problems() or [])

        def said() -> str:
            return f"the gateway's readiness does not say {problem!r}: {self.gateway_problems()}"

        self.wait_for(named, until, said)

    def wait_for(
        self, cond: Callable[[], object], until: float, what: str | Callable[[], str]
    ) -> None:
        """Poll cond (checking the processes) until it holds; AssertionError saying `what`
        (a callable: asked then) once time.monotonic() passes `until` (cond is asked at
        least once)."""
        while not cond():
            if time.monotonic() > until:
                said = what() if callable(what) else what
                raise AssertionError(f"{said}\n" + "\n".join(self.history[-8:]))
            self.watch(WATCH_S)


@dataclass
class StoreCap:
    """The gateway's database and its size cap, `[store] max_size_mb` in its config file
    (which the gateway reads again while its store is full)."""

    config: Path
    db: Path
    mb: int

    def set(self, mb: int) -> None:
        text = self.config.read_text()
        changed, count = re.subn(r"(?m)^max_size_mb = \d+$", f"max_size_mb = {mb}", text)
        assert count == 1, f"no max_size_mb line in {self.config}"
        self.config.write_text(changed)
        self.mb = mb


def fill_database(db: Path, mb: int) -> None:
    """Another writer takes the database's free space up to mb MiB (a table of its own): the
    gateway, capped at mb, finds no room for its next new page."""
    with contextlib.closing(sqlite3.connect(db, timeout=30, isolation_level=None)) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        target = mb * 1024 * 1024 // page
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {BALLAST} (b BLOB)")
        while True:
            # Free pages (a table dropped earlier) count in page_count: take them too.
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if pages >= target and not free:
                break
            size = min(max(target - pages, free), 256) * page
            conn.execute(f"INSERT INTO {BALLAST} VALUES (zeroblob(?))", (size,))
        conn.execute("COMMIT")


def free_database(db: Path) -> None:
    """The other writer's table deleted: its pages are free for the gateway again."""
    with contextlib.closing(sqlite3.connect(db, timeout=30, isolation_level=None)) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {BALLAST}")


def _alive(gateway: GatewayProcess) -> bool:
    return gateway.proc is not None and gateway.proc.poll() is None


def _code(gateway: GatewayProcess) -> int | None:
    return gateway.proc.poll() if gateway.proc is not None else None


# -- the faults ------------------------------------------------------------------------------

Fault = Callable[[Site, random.Random], str]


def _broker_down(site: Site, rng: random.Random, stop: Callable[[], None], how: str) -> str:
    site.down.add("broker")
    stop()
    site.wait_not_ready(BROKER_GONE, time.monotonic() + SALE_DEADLINE_S)
    held = site.hold(f"the broker was down ({how})", rng.uniform(0.2, 4.0))
    site.broker.start()
    site.down.discard("broker")
    return f"broker {how}, restarted after {held:.1f}s"


def broker_sigkill(site: Site, rng: random.Random) -> str:
    """Mosquitto crashes (what it had not saved is gone: queued messages, retained acks)."""
    return _broker_down(site, rng, site.broker.kill, "SIGKILL")


def broker_sigterm(site: Site, rng: random.Random) -> str:
    """Mosquitto stops cleanly (saves its state) and comes back."""
    return _broker_down(site, rng, site.broker.stop, "SIGTERM")


def broker_hang(site: Site, rng: random.Random) -> str:
    """Mosquitto hangs (SIGSTOP): connections stay open, nothing answers; then SIGCONT.
    Half the hangs outlast 2.5 keepalives, so both clients must notice them."""
    keepalive = site.broker_keepalive_s
    detect = rng.random() < 0.5  # a hang both clients must notice, else a shorter stall
    at_least = keepalive * rng.uniform(2.5, 3.5) if detect else rng.uniform(0.5, keepalive)
    began = time.monotonic()
    site.broker.pause()
    held = site.hold("the broker was hung (SIGSTOP)", at_least)
    if detect:
        # Both find a hung broker within one or two keepalives: with a margin for a loaded
        # machine, each must have given up on it within four.
        site.wait_for(
            lambda: not site.agent.stats()["connected"], began + 4 * keepalive,
            f"the agent still connected to a broker hung for {4 * keepalive:g}s",
        )  # fmt: skip
        site.wait_not_ready(BROKER_GONE, began + 4 * keepalive)
    site.broker.resume()
    return f"broker SIGSTOP, SIGCONT after {held:.1f}s"


def gateway_kill(site: Site, rng: random.Random) -> str:
    """The gateway crashes (kill -9) and is started again."""
    site.down.add("gateway")
    site.gateway.kill()
    held = site.hold("the gateway was down (SIGKILL)", rng.uniform(0.1, 3.0))
    site.gateway.start(wait=True, timeout=60)
    site.down.discard("gateway")
    return f"gateway SIGKILL, restarted after {held:.1f}s"


def agent_kill(site: Site, rng: random.Random) -> str:
    """The agent crashes (kill -9) and is started again: the till's sales meanwhile are
    not delivered (exit 3) or, when the kill caught one in flight, of unknown outcome (4)."""
    site.down.add("agent")
    site.agent.kill()
    down = rng.uniform(0.05, 2.0)
    site.watch(down)
    site.agent.start()
    site.down.discard("agent")
    return f"agent SIGKILL, restarted after {down:.1f}s"


def agent_kill_mid_sale(site: Site, rng: random.Random) -> str:
    """kill -9 of the agent the moment its journal changes while a sale is in flight: most
    often the sale is journaled and not answered, the till gets 4 (outcome unknown) and
    retries with the same ref, which must give the original n, not a second record."""
    deadline = time.monotonic() + 20.0  # then at whatever moment it is
    size = _journal_bytes(site.agent)
    polls = 0
    while time.monotonic() < deadline:
        now = _journal_bytes(site.agent)
        if now != size and site.till.in_flight:
            break
        size = now
        polls += 1
        if polls % 100 == 0:
            site.check()
        time.sleep(0.0005)  # as close behind the journal write as polling gets
    site.down.add("agent")
    site.agent.kill()
    down = rng.uniform(0.05, 1.0)
    site.watch(down)
    site.agent.start()
    site.down.discard("agent")
    return f"agent SIGKILL mid-sale, restarted after {down:.1f}s"


def _journal_bytes(agent: AgentProcess) -> int:
    total = 0
    with os.scandir(agent.journal) as entries:
        for entry in entries:
            if entry.name.endswith(".seg"):
                with contextlib.suppress(FileNotFoundError):  # a segment pruned meanwhile
                    total += entry.stat().st_size
    return total


def store_full(site: Site, rng: random.Random) -> str:
    """The gateway's store fills up (another writer takes the space up to [store]
    max_size_mb): it stops acknowledging and waits, the agent keeps recording; then the
    space comes back, either freed or by a higher cap in the config file, and it resumes
    by itself."""
    store = site.store
    full_before = site.gateway.text().count(STORE_FULL)
    back_before = site.gateway.text().count(STORE_BACK)
    began = time.monotonic()
    fill_database(store.db, store.mb)
    site.wait_for(
        lambda: site.gateway.text().count(STORE_FULL) > full_before,
        began + SALE_DEADLINE_S,
        f"the gateway did not say {STORE_FULL!r} with its database at the cap",
    )
    site.wait_not_ready("store full", time.monotonic() + SALE_DEADLINE_S)
    held = site.hold("the gateway's store was full", rng.uniform(0.5, 4.0))
    site.check_acks()
    raise_cap = rng.random() < 0.5
    if raise_cap:
        store.set(store.mb + 1)
    else:
        free_database(store.db)
    site.wait_for(
        lambda: site.gateway.text().count(STORE_BACK) > back_before,
        time.monotonic() + SALE_DEADLINE_S,
        f"the gateway did not say {STORE_BACK!r} once its store had room",
    )
    free_database(store.db)
    how = f"cap raised to {store.mb} MiB" if raise_cap else "space freed"
    return f"store full for {held:.1f}s, resumed ({how})"


FAULTS: dict[str, Fault] = {
    "broker_sigkill": broker_sigkill,
    "broker_sigterm": broker_sigterm,
    "broker_hang": broker_hang,
    "gateway_kill": gateway_kill,
    "agent_kill": agent_kill,
    "agent_kill_mid_sale": agent_kill_mid_sale,
    "store_full": store_full,
}


def run_faults(
    site: Site,
    faults: dict[str, Fault],
    rng: random.Random,
    duration_s: float,
    gap_s: tuple[float, float] = (0.2, 3.0),
) -> dict[str, int]:
    """Inject faults for duration_s, and at least each one once: rounds of every fault in a
    random order, a random gap before each. Returns how often each was injected."""
    counts = dict.fromkeys(faults, 0)
    end = time.monotonic() + duration_s
    order: list[str] = []
    while time.monotonic() < end or not all(counts.values()):
        if not order:
            order = rng.sample(sorted(faults), len(faults))
        name = order.pop()
        site.watch(rng.uniform(*gap_s))
        site.note(f"{name} ...")
        site.note(faults[name](site, rng))
        site.check_acks()
        counts[name] += 1
    site.check()
    return counts
