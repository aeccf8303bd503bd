"""The transparency log survives kill -9 at any moment (docs/AUDIT.md): after every restart the
tree is exactly the committed records, no leaf lost and none twice.

A real gateway process behind a real Mosquitto, a virtual fleet (tools/fleet/simulate.py: the
real agent code, journals and retransmission) publishing all the while. The gateway is killed
with SIGKILL again and again (the moments drawn from a fixed seed):

- from outside, at random times after a start (in its start-up, catch-up or steady writing),
  and during a clean stop (SIGTERM, then SIGKILL a random moment later, while it drains and
  signs its last checkpoint);
- from inside (kit/killpoint.py), aimed where a random time almost never lands: in the middle
  of the catch-up of records stored while the log was off, between a batch's leaves and its
  records, inside a checkpoint's transaction.

After every kill, with the gateway down, the database is checked: the records' log indexes are
exactly 0..N-1, the tree has N leaves and its root is the RFC 9162 root of the raw records in
that order (recomputed by kit/merkle_reference.py), and every stored checkpoint is signed, is
a prefix of that tree, and carries a consistency proof from the one before that verifies. At
the end every record each device signed (and was acknowledged) is stored and logged.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kit import killpoint
from kit.gatewaykit import write_config
from kit.merkle_reference import mth
from signet_gateway.log import key as log_key
from signet_gateway.log.checkpoint import open_checkpoint
from signet_gateway.log.verification import verify_consistency
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_tools.fleet import simulate
from signet_tools.runners.gateway_process import SUBSCRIBED, GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

SEED = 912
ORIGIN = "gw.test/signet"


class Harness:
    """The gateway's starts and kills, and the checks made each time it is down."""

    def __init__(self, tmp_path: Path, port: int, rng: random.Random) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "gateway.db"
        self.rng = rng
        self.config = write_config(
            tmp_path / "gateway.toml",
            port,
            self.db,
            log={"origin": ORIGIN, "enabled": False, "checkpoint_interval_s": 1},
        )
        self.started: list[GatewayProcess] = []
        self.events: list[str] = []  # what was done, for the failure messages
        self.gw: GatewayProcess | None = None

    def log_on(self) -> None:
        self.config.write_text(self.config.read_text().replace("enabled = false", "enabled = true"))

    def start(self, launcher: tuple[str, ...] | None = None, wait: bool = False) -> None:
        index = len(self.started)
        extra = {} if launcher is None else {"launcher": launcher}
        gw = GatewayProcess(self.config, self.tmp / f"gw-{index}.log", **extra)
        self.started.append(gw)
        self.gw = gw.start(wait=wait)

    def running(self) -> GatewayProcess:
        gw = self.gw
        assert gw is not None and gw.proc is not None
        code = gw.proc.poll()
        assert code is None, f"the gateway exited by itself ({code}): {self.events}\n{gw.tail()}"
        return gw

    def kill_at_random(self, lo: float, hi: float, after: str | None = SUBSCRIBED) -> None:
        """SIGKILL a random moment after the gateway logged ``after`` (None: after its start,
        while it imports, opens the store, catches the log up...)."""
        gw = self.running()
        if after is not None:
            gw.wait_log(after, 30)
        delay = self.rng.uniform(lo, hi)
        time.sleep(delay)  # the random moment itself, not a synchronisation
        self.running()
        gw.kill()
        self.events.append(f"kill -9 {delay:.2f} s after {after or 'the start'}")
        self.check()

    def kill_while_stopping(self) -> None:
        """SIGTERM, then SIGKILL a random moment later (draining, the last checkpoint...)."""
        gw = self.running()
        gw.wait_log(SUBSCRIBED, 30)
        delay = self.rng.uniform(0.0, 0.1)  # a stop takes ~0.1 s here
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(delay)  # the random moment
        exited = gw.proc.poll()
        gw.kill()
        self.events.append(f"SIGTERM, kill -9 {delay:.2f} s later (exited first: {exited})")
        assert exited in (None, 0), gw.tail()
        self.check()

    def kill_at(self, prefix: str, nth: int, deadline: float = 40) -> GatewayProcess:
        """Start a gateway that kills itself at the nth statement starting with prefix."""
        self.start(killpoint.launcher(prefix, nth))
        gw = self.gw
        assert gw is not None
        code = gw.wait(deadline)
        mark = f"{killpoint.MARK} {prefix!r} #{nth}"
        assert code == -signal.SIGKILL and mark in gw.text(), (
            f"no kill at {prefix!r} #{nth} (exit {code}): {self.events}\n{gw.tail()}"
        )
        self.events.append(f"killed at {prefix!r} #{nth}")
        self.check()
        return gw

    def check(self) -> int:
        """With the gateway down: the log is exactly the logged records, in log_index order;
        every checkpoint a signed prefix of it, consistent with the one before. Returns N."""
        where = f" after {self.events}"
        conn = sqlite3.connect(self.db)  # read-write: recovers the WAL a kill left behind
        try:
            rows = conn.execute(
                "SELECT log_index, raw FROM records WHERE log_index IS NOT NULL ORDER BY log_index"
            ).fetchall()
        finally:
            conn.close()
        raws = [bytes(raw) for _, raw in rows]
        assert [index for index, _ in rows] == list(range(len(rows))), where
        with Store(self.db, readonly=True) as store:
            log = RecordLog(store.conn)
            assert log.size == len(raws), f"{log.size} leaves for {len(raws)} records{where}"
            assert log.tree.root() == mth(raws), where
            checkpoints = log.checkpoints()
        key = self.tmp / "gateway-log.key"
        verifier = log_key.verifier(log_key.load(key), ORIGIN) if key.exists() else None
        previous = None
        for cp in checkpoints:
            assert verifier is not None
            opened = open_checkpoint(cp.note, [verifier], origin=ORIGIN).checkpoint
            assert (opened.size, opened.root) == (cp.size, cp.root), where
            assert cp.size <= len(raws) and cp.root == mth(raws[: cp.size]), where
            if previous is not None:
                verify_consistency(previous.size, cp.size, previous.root, cp.root, cp.proof)
            previous = cp
        return len(raws)


def _count(db: Path, where: str) -> int:
    with Store(db, readonly=True) as store:
        return int(store.conn.execute(f"SELECT count(*) FROM records WHERE {where}").fetchone()[0])


@pytest.mark.timeout(150)
def test_the_log_is_exactly_the_committed_records_after_kill_9_at_random_moments(
    tmp_path: Path, broker: Mosquitto
) -> None:
    rng = random.Random(SEED)
    h = Harness(tmp_path, broker.port, rng)
    params = simulate.FleetParams(
        devices=5,
        duration_s=30.0,
        broker=("127.0.0.1", broker.port),
        out=tmp_path / "fleet",
        db=h.db,
        rate_per_min=120.0,
        heartbeat_s=1,
        seed=SEED,
        drain_timeout_s=60.0,
    )
    fleet = simulate.Fleet(params)
    fleet.create()
    ran: list[bool] = []
    fleet_thread = threading.Thread(target=lambda: ran.append(fleet.run()), daemon=True)
    try:
        # The log off: records stored without leaves, through three kills.
        h.start(wait=True)
        fleet_thread.start()
        for _ in range(3):
            wait_until(lambda: _count(h.db, "1") >= 15 * len(h.started), 30, "records stored")
            h.kill_at_random(0.0, 1.0)
            if len(h.started) < 3:
                h.start()
        unlogged = _count(h.db, "log_index IS NULL")
        assert unlogged >= 40 and h.check() == 0

        # The log on: killed in the middle of the catch-up (its transaction rolls back whole).
        h.log_on()
        nth = rng.randint(2, unlogged)
        h.kill_at("UPDATE records SET log_index", nth)
        assert _count(h.db, "log_index IS NULL") == unlogged and h.check() == 0

        # Killed in the writer's transaction: between a batch's leaves and its records, after
        # a tile, at a COMMIT; and in a checkpoint's transaction, after signing it.
        aims: list[tuple[str, Callable[[], int]]] = [
            ("INSERT INTO records", lambda: rng.randint(1, 60)),
            ("INSERT INTO log_tail", lambda: rng.randint(1, 10)),
            ("INSERT INTO log_tiles", lambda: rng.randint(1, 4)),
            ("COMMIT", lambda: rng.randint(2, 12)),
            ("INSERT INTO log_checkpoints", lambda: 1),
        ]
        for prefix, nth_of in aims:
            h.kill_at(prefix, nth_of())
        assert h.check() > unlogged  # the catch-up ran, and more was logged since

        # From outside, at random moments after a start, and during a clean stop.
        h.start()
        h.kill_at_random(0.5, 2.0, after=None)
        for _ in range(3):
            h.start()
            h.kill_at_random(0.0, 1.0)
        h.start()
        h.kill_while_stopping()

        # The last start: the fleet drains, the gateway stops cleanly.
        h.start(wait=True)
        fleet_thread.join(params.drain_timeout_s + params.duration_s + 30)
        assert not fleet_thread.is_alive() and ran == [True], f"fleet not drained: {h.events}"
        gw = h.running()
        assert gw.stop() == 0, gw.tail()
        total = h.check()
    finally:
        for gw in h.started:
            gw.kill()
        fleet_thread.join(10)

    truth = fleet.truth()
    assert simulate.stored_check(truth, h.db) == []  # every acked record stored...
    assert _count(h.db, "log_index IS NULL") == 0  # ...and logged
    assert total == _count(h.db, "1") == truth["totals"]["records"]
    with Store(h.db, readonly=True) as store:
        # Checkpoints at the interval and at the clean stop: the last one is the whole tree.
        last = RecordLog(store.conn).latest_checkpoint()
    assert last is not None and last.size == total
