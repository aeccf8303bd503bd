"""Benchmark: drain a Mosquitto backlog through the gateway, against raw ECDSA verify, with
the transparency log on and off.

1. Generates ``records`` genuine signed records from ``devices`` keys (boot record first,
   then hb/rev/meter/evt, hash-chained) with the firmware's RecordBuilder and
   SoftwareSigner, in parallel processes.
2. Measures the raw single-thread ``cryptography`` ECDSA P-256 verify rate on the very same
   records (DER signatures and Sig_structures prepared in advance).
3. Drains the same records with the log on (``[log] enabled``, as in production), with it
   off, and with the log on and the console on (``[http] enabled``, a client reading the
   fleet page once a second through the drain, as an operator's browser would), ``rounds``
   times each in alternating order (on, off, console; console, off, on; ...), each time from
   scratch: a private Mosquitto (tools/runners/mosquitto.py) and a fresh gateway database
   with the devices enrolled; ``signet gateway run`` started once and stopped (SIGTERM), so
   that the broker holds its persistent session; the records published as single-record
   QoS 1 messages, devices interleaved like a live fleet, while the gateway is stopped: all
   of them queue in its session; then ``signet gateway run`` again as a separate process,
   timed from its "connected" log line until every device's retained ack equals its last n
   (everything verified, committed and acknowledged). The gateway's RSS is sampled when
   10 %, 50 % and 100 % of the records are acknowledged. The best drain of each kind
   counts: on a shared machine a slower one was disturbed.
   The log-off database has no ``records_unlogged`` index (the records not in the log yet:
   with the log off, every record), so that the drain without the log is the one of a
   gateway that has no log at all.
4. Checks each database holds every record and measures, with SQLite's ``dbstat``, the
   bytes of pages each table and index uses: the log's storage is what the log-on database
   uses beyond the log-off one (``records_unlogged`` left out: a page, empty, with the log
   on).

Prints the drain rate (the best with the log on), the raw verify rate and their ratio
(target >= 0.75), the best drain rate with the log off, the log's cost (target <= 5 % of
the drain) and its storage per record (target <= 40 bytes), and the console's cost
(target <= 5 %).

The log's cost is measured the same way, for the same reason: the difference between the
drain rates with the log on and off swings by tens of % either way on a shared machine, for
a cost of a few %. The gateway times the log's own work on its writer thread (a batch's
appends inside its commit, the catch-up at start, a checkpoint: gateway/ingest/timings.py)
in that thread's CPU time, which other work on the machine hardly moves, and its summary
line at the stop gives the total (from start to stop: the catch-up at start, nothing here,
and the checkpoint at the stop, a fraction of a millisecond, are in it). Timed in the
gateway rather than replayed in the benchmark against a copy of the log-off database:
it is the drain's own work, in the batches the drain made (nothing records their sizes),
with the drain's database and caches, and operators get the same figure from /metrics.
Each drain with the log on gives its round's cost: that
CPU per record as a share of the gateway's whole CPU per record in the same drain (process,
every thread, verifier processes; not Mosquitto's), the drain rate it costs a drain bound
by the gateway's CPU. The median over the rounds is the cost, every round is printed, the
verdict established as for the console. Not in it: writing the log's pages at the commit
(their bytes are the storage line) and the log_index column in each record's row. Beside
it, the noisy measure: each round's wall drain rate with the log on against the same
round's with it off, and the spread between drains of one kind.

The console's cost is measured so that the machine's noise cannot swamp it: on a shared
machine two drains of the same kind differ by up to 2x in wall time, and by 10 % or more
in the gateway's CPU per record, as other work comes and goes, more than the cost. What
the console does during a drain is serve a fleet page a second; after each console drain,
the gateway, idle, serves 20 pages back to back and its CPU (process and verifier
processes) per page is read: at one page a second, that CPU as a share of the machine's
cores is the drain rate it costs a drain bound by the machine's CPU. Its median over the
rounds is the cost; every round's figure is printed, and the verdict against the target
is established only when every round is on the same side of it. Beside it, for whoever
wants to see the noise: the share of the gateway's CPU in each console drain that went to
the pages it served, the gateway's whole CPU per record with and without the console
(each round's console drain against the same round's drain without it, run one after the
other under much the same load), the same in wall drain rate, the spread between drains
of one kind across rounds, and the polling client's CPU per page (its thread's CPU time;
an operator's browser runs elsewhere, so it is not the gateway's cost, but on this machine
it takes CPU from the drain). Nothing is cached in the repository: everything lives in a
temporary directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from signet_gateway.ingest.wire import ACK_SUBSCRIPTION, rec_topic
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import write_gateway_config

TARGET_RATIO: Final = 0.75
TARGET_LOG_COST_PCT: Final = 5.0  # the log may cost at most this share of the drain rate
TARGET_LOG_BYTES: Final = 40.0  # log storage per record beyond the record itself
TARGET_CONSOLE_COST_PCT: Final = 5.0  # the console, polled once a second, may cost this much
IDLE_PAGES: Final = 20  # fleet pages read back to back after a console drain: CPU per page
# Lists the records not logged yet: all of them with the log off (dropped for the baseline).
_UNLOGGED_INDEX: Final = "records_unlogged"
_KINDS: Final = ("hb", "rev", "meter", "evt")
_T0: Final = 1_700_000_000_000


class BenchError(RuntimeError):
    """The benchmark could not run to the end (broker, gateway or data problem)."""


@dataclass
class Drain:
    """One drain of the backlog by a gateway process, and the database it left."""

    log: bool
    publish_s: float
    drain_s: float
    rss_points: list[tuple[int, int, int, int]]
    stored: int
    gateway_exit: int
    summary_line: str
    gateway_cpu_s: float
    broker_cpu_s: float
    load_avg: float
    db_bytes: dict[str, int]  # bytes of pages each table and index uses (dbstat)
    record_row_bytes: int  # bytes of the records table's rows (dbstat payload)
    console: bool = False  # the HTTP server on, a client polling the fleet page every second
    polls: int = 0  # fleet pages the console served during the drain
    poll_errors: list[str] = field(default_factory=list)  # polls that failed, and why
    poller_cpu_s: float = 0.0  # CPU of the polling client's thread during the drain
    page_cpu_s: float = 0.0  # the gateway's CPU per fleet page, read from it idle after the drain
    page_client_cpu_s: float = 0.0  # the client's CPU per fleet page, the same pages
    round: int = 1  # the round of the rotation it ran in (one drain of each kind a round)
    log_cpu_s: float = 0.0  # the writer's CPU in the log's work (the gateway's summary line)

    @property
    def drain_rate(self) -> float:
        return self.stored / self.drain_s

    @property
    def cpu_per_record_us(self) -> float:
        """The gateway's CPU (process and verifier processes) per record drained."""
        return self.gateway_cpu_s / self.stored * 1e6

    @property
    def kind(self) -> str:
        return "console" if self.console else "on" if self.log else "off"


@dataclass
class BenchResult:
    records: int
    devices: int
    threads: int
    gen_s: float
    publish_s: float
    drain_s: float
    drain_rate: float
    raw_rate: float
    ratio: float
    rss_points: list[tuple[int, int, int, int]] = field(default_factory=list)  # KiB
    # (%, gateway RSS, its peak, RSS of its child processes: forkserver and verifiers)
    stored: int = 0
    gateway_exit: int | None = None
    gateway_cpu_s: float = 0.0  # CPU the gateway process used from start to drained
    broker_cpu_s: float = 0.0  # CPU Mosquitto used during the drain
    load_avg: float = 0.0  # 1-minute load average just before the drain (other work running)
    summary_line: str = ""
    log_off: Drain | None = None  # the same records drained with [log] enabled = false
    log_bytes: dict[str, int] = field(default_factory=dict)  # bytes the log adds, by table
    log_row_bytes: int = 0  # of which bytes in the records' rows (log_index), no page overhead
    rounds: int = 1  # drains of each kind (log on, log off, console); the best of each counts
    drain_rates: list[tuple[str, float]] = field(default_factory=list)  # (kind, rate) as run
    console: Drain | None = None  # log on, the HTTP server on and polled once a second
    drains: list[Drain] = field(default_factory=list)  # every drain, in the order run
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def of_kind(self, kind: str) -> list[Drain]:
        return [d for d in self.drains if d.kind == kind]

    def console_rounds(self) -> list[tuple[Drain, Drain]]:
        """(the drain with the console, the drain with the log on and no console) of each
        round. A round's drains run one after the other: the load of the machine, which
        drifts over a run, is much the same for both, so each round compares like with like."""
        on = {d.round: d for d in self.of_kind("on")}
        return [(c, on[c.round]) for c in self.of_kind("console") if c.round in on]

    @property
    def console_costs_pct(self) -> list[float]:
        """Each round's console cost in % of the drain: the gateway's CPU for a fleet page
        (read from it idle, after the drain), once a second, as a share of the machine's
        cores: the drain rate it costs a drain bound by the CPU of the whole machine. The
        load of a shared machine hardly moves it, unlike a drain's time or CPU."""
        return [100.0 * c.page_cpu_s / self.cores for c in self.of_kind("console")]

    @property
    def console_cost_pct(self) -> float:
        """The console's cost: the median of the rounds' costs."""
        return median(self.console_costs_pct or [0.0])

    @property
    def console_shares_pct(self) -> list[float]:
        """Each round's share of the gateway's CPU in the drain that went to the pages it
        served (as many as the drain took seconds): on a loaded machine the gateway gets
        less CPU a second, and the same pages take a larger share."""
        return [
            100.0 * c.page_cpu_s * c.polls / c.gateway_cpu_s
            for c in self.of_kind("console")
            if c.gateway_cpu_s > 0
        ]

    @property
    def console_cpu_costs_pct(self) -> list[float]:
        """Each round's difference in the gateway's whole CPU per record, the console's
        drain against the same round's drain without it: the console's work and anything
        else it costs, in the noise of the machine's load."""
        return [
            100.0 * (1.0 - on.cpu_per_record_us / c.cpu_per_record_us)
            for c, on in self.console_rounds()
            if c.cpu_per_record_us > 0
        ]

    @property
    def console_rate_costs_pct(self) -> list[float]:
        """Each round's console cost in wall drain rate, in %."""
        return [100.0 * (1.0 - c.drain_rate / on.drain_rate) for c, on in self.console_rounds()]

    @property
    def log_costs_pct(self) -> list[float]:
        """Each round's log cost in % of the drain: the writer thread's CPU in the log's work
        per record (timed inside the gateway) over the gateway's whole CPU per record in the
        same drain with the log on (no console): the drain rate it costs a drain bound by
        the gateway's CPU. Both CPU, from the same drain: the load hardly moves the share."""
        return [
            100.0 * d.log_cpu_s / d.gateway_cpu_s for d in self.of_kind("on") if d.gateway_cpu_s
        ]

    @property
    def log_cost_pct(self) -> float:
        """The log's cost: the median of the rounds' costs."""
        return median(self.log_costs_pct or [0.0])

    @property
    def log_rate_costs_pct(self) -> list[float]:
        """Each round's difference in wall drain rate, the log on against the same round's
        drain with it off, in % of the latter: the noisy measure."""
        off = {d.round: d for d in self.of_kind("off")}
        return [
            100.0 * (1.0 - on.drain_rate / off[on.round].drain_rate)
            for on in self.of_kind("on")
            if on.round in off
        ]

    @property
    def log_bytes_per_record(self) -> float:
        return sum(self.log_bytes.values()) / self.records


def median(values: Any) -> float:
    return float(statistics.median(list(values)))


def spread_pct(values: Any) -> float:
    """How far apart measurements of one kind are: (largest - smallest) / median, in %."""
    values = list(values)
    return 100.0 * (max(values) - min(values)) / median(values) if len(values) > 1 else 0.0


# -- record generation (worker processes) ------------------------------------------------------


def _secret(index: int) -> int:
    return 0x5167E7 + 7919 * index


def _device_records(job: tuple[int, int]) -> tuple[int, list[bytes]]:
    """All records of one device: a boot record, then a chain of mixed kinds."""
    from signet.builder import RecordBuilder
    from signet.record import GENESIS_HASH
    from signet.signer import SoftwareSigner

    from .samples import FIELDS_BY_KIND

    index, count = job
    builder = RecordBuilder(SoftwareSigner("p256", _secret(index)))
    prev = GENESIS_HASH
    out: list[bytes] = []
    for n in range(1, count + 1):
        kind = "boot" if n == 1 else _KINDS[n % len(_KINDS)]
        fields = dict(FIELDS_BY_KIND[kind])
        if kind == "boot":
            fields["ls"] = 0
        payload, raw = builder.build(kind, n, 1, 1000 * n, _T0 + 60_000 * n, prev, fields)
        prev = hashlib.sha256(payload).digest()
        out.append(bytes(raw))
    return index, out


# -- the raw reference -------------------------------------------------------------------------


def raw_verify_rate(records: list[bytes], public_keys: dict[bytes, Any], seconds: float) -> float:
    """Single-thread cryptography ECDSA P-256 verifies/s over prepared (der, message) pairs."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from signet_gateway.verify.cose_decode import decode_envelope, sig_structure

    algo = ec.ECDSA(hashes.SHA256())
    prepared = []
    for raw in records:
        env = decode_envelope(raw)
        sig = env.signature
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        prepared.append((public_keys[env.kid], der, sig_structure(env.protected, env.payload)))
    calls = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for key, der, msg in prepared:
            key.verify(der, msg, algo)
        calls += len(prepared)
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - t0)


# -- helpers -------------------------------------------------------------------------------------


def _signet_cmd() -> list[str]:
    return [sys.executable, "-m", "signet_tools"]


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (0.0 if unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Living child processes of pid, recursively (the gateway's verifier processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its living descendants (verifier processes included)."""
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in descendants(pid))


def tree_rss_kib(pid: int) -> int:
    """RSS of a process's living descendants, summed (shared pages counted in each)."""
    from signet_gateway.ingest.service import rss_kib

    return sum(rss_kib(c)[0] for c in descendants(pid))


def _first_start(config: Path, log_path: Path, worker: str | None = None) -> None:
    """Start the gateway until it has subscribed, then stop it: its persistent session exists
    on the broker (so a backlog published while it is stopped waits for it), its log key is
    made. BenchError if it does not get there or does not stop cleanly."""
    first = _GatewayProc(config, log_path, worker=worker)
    if not first.subscribed.wait(60):
        first.terminate()
        raise BenchError(f"gateway did not subscribe: {first.lines[-5:]}")
    code = first.terminate()
    if code != 0:
        raise BenchError(f"gateway exited {code} on SIGTERM: {first.lines[-5:]}")


class _GatewayProc:
    """`signet gateway run` as a child process, its log lines read by a thread."""

    def __init__(self, config: Path, log_path: Path, worker: str | None = None) -> None:
        self.log_path = log_path
        self.lines: list[str] = []
        self.connected_at: float | None = None
        self.cpu_at_connect = 0.0
        self.subscribed = threading.Event()
        named = () if worker is None else ("--worker", worker)  # one of several workers
        self.proc = subprocess.Popen(
            [*_signet_cmd(), "gateway", "run", "--config", str(config), *named],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with open(self.log_path, "a") as log:
            for line in self.proc.stderr:
                if self.connected_at is None and " connected to mqtt://" in line:
                    self.connected_at = time.monotonic()
                    self.cpu_at_connect = tree_cpu_seconds(self.proc.pid)
                if "subscribed to" in line:
                    self.subscribed.set()
                self.lines.append(line.rstrip())
                log.write(line)

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5)
        return code


def _publish(port: int, per_device: dict[int, list[bytes]], kids: dict[int, str]) -> None:
    """Single-record QoS 1 messages, devices interleaved; returns when the broker has all."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="signet-bench-fleet",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = []
        longest = max(len(v) for v in per_device.values())
        for i in range(longest):
            for index, recs in per_device.items():
                if i < len(recs):
                    topic = rec_topic(kids[index])
                    infos.append(client.publish(topic, recs[i], qos=1))
        for info in infos:
            info.wait_for_publish(120)
            if not info.is_published():
                raise BenchError("the broker did not confirm every published record in time")
    finally:
        client.disconnect()
        client.loop_stop()


class _AckWatch:
    """Follows every device's retained ack; samples the gateway's RSS at milestones."""

    def __init__(self, port: int, last: dict[str, int], total: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from signet_gateway.ingest.wire import parse_ack

        self._parse = parse_ack
        self.last = last
        self.total = total
        self.acks: dict[str, int] = {}
        self.acked = 0
        self.done = threading.Event()
        self.done_at: float | None = None
        self.milestones = [10, 50, 100]
        self.rss_points: list[tuple[int, int, int]] = []
        self.pid: int | None = None
        self.cpu_done = 0.0
        self._lock = threading.Lock()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="signet-bench-watch",
            protocol=mqtt.MQTTv5,
        )
        client.on_message = self._on_message
        client.on_connect = lambda c, u, f, r, p: c.subscribe(ACK_SUBSCRIPTION, qos=1)
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        from signet_gateway.ingest.service import rss_kib

        kid = msg.topic.split("/")[2]
        n = self._parse(msg.payload)
        if n is None or kid not in self.last:
            return
        with self._lock:
            old = self.acks.get(kid, 0)
            if n <= old:
                return
            self.acks[kid] = n
            self.acked += min(n, self.last[kid]) - min(old, self.last[kid])
            while self.milestones and self.acked * 100 >= self.milestones[0] * self.total:
                pct = self.milestones.pop(0)
                if self.pid is not None:
                    rss, hwm = rss_kib(self.pid)
                    self.rss_points.append((pct, rss, hwm, tree_rss_kib(self.pid)))
            if all(self.acks.get(k, 0) >= v for k, v in self.last.items()):
                self.done_at = time.monotonic()
                if self.pid is not None:
                    self.cpu_done = tree_cpu_seconds(self.pid)
                self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the benchmark --------------------------------------------------------------------------------


def db_bytes(db: Path) -> dict[str, int]:
    """Bytes of the pages each table and index of a database uses (SQLite's dbstat)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            str(name): int(size)
            for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
        }
    except sqlite3.Error as exc:
        raise BenchError(f"cannot measure {db} with dbstat: {exc}") from exc
    finally:
        conn.close()


def row_bytes(db: Path, table: str = "records") -> int:
    """The bytes of a table's rows themselves (dbstat's payload: no page or cell overhead)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT sum(payload) FROM dbstat WHERE name = ?", (table,)).fetchone()
    except sqlite3.Error as exc:
        raise BenchError(f"cannot measure {db} with dbstat: {exc}") from exc
    finally:
        conn.close()
    return int(row[0] or 0)


def log_storage(on: dict[str, int], off: dict[str, int]) -> dict[str, int]:
    """Bytes the log-on database uses beyond the log-off one, by table (the index of records
    not logged yet left out: see the module's docstring)."""
    names = (set(on) | set(off)) - {_UNLOGGED_INDEX}
    return {name: on.get(name, 0) - off.get(name, 0) for name in sorted(names)}


class _Site:
    """A fresh broker and gateway database for one drain (the log on or off)."""

    def __init__(
        self, workdir: Path, log: bool, verify_threads: int, round_: int = 1, console: bool = False
    ) -> None:
        from signet_tools.runners.mosquitto import Mosquitto

        self.log = log
        self.console = console
        self.http_port = 0
        self.token = ""
        name = "console" if console else "log-on" if log else "log-off"
        self.round = round_
        self.dir = workdir / (name + ("" if round_ == 1 else f"-{round_}"))
        # A reused --dir starts from scratch: an old database or broker store would skew it.
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.broker = Mosquitto(self.dir / "broker")
        self.db = self.dir / "gateway.db"
        self.config = self.dir / "gateway.toml"
        self.verify_threads = verify_threads

    def prepare(self, keys: dict[int, Any]) -> None:
        """Start the broker, make the database with the devices, create the gateway's
        persistent session (a gateway run, stopped)."""
        from signet_tools.runners.mosquitto import free_port

        self.broker.start()
        http: dict[str, Any] = {}
        if self.console:
            self.http_port = free_port()
            http = {"http": {"enabled": True, "host": "127.0.0.1", "port": self.http_port}}
        # Also creates the database, as `signet db init` does: the gateway and Store() open
        # an existing one only.
        write_gateway_config(
            self.config,
            self.broker.port,
            self.db,
            mqtt={"client_id": "signet-bench-gateway", "receive_maximum": 4000},
            ingest={"verify_threads": self.verify_threads, "batch_max": 1000, "batch_ms": 50},
            log={"enabled": self.log},
            **http,
        )
        with Store(self.db) as store:
            for i, key in keys.items():
                store.enroll(key, "software", name=f"bench-{i:03d}")
            if self.console:
                from signet_gateway.web import tokens

                self.token = tokens.create(store.conn, "bench")
            if not self.log:
                # With the log off the gateway indexes every record it stores as not logged
                # yet (to append it when the log is back on): without that index the drain
                # is the one of a gateway that has no log at all, the baseline of its cost.
                store.conn.execute(f"DROP INDEX {_UNLOGGED_INDEX}")
        _first_start(self.config, self.dir / "gateway-first.log")

    def drain(self, per_device: dict[int, list[bytes]], kids: dict[int, str]) -> Drain:
        """Publish the backlog while the gateway is stopped, then time its drain."""
        records = sum(len(recs) for recs in per_device.values())
        t = time.monotonic()
        _publish(self.broker.port, per_device, kids)
        publish_s = time.monotonic() - t
        load_avg = os.getloadavg()[0]
        last = {kids[i]: len(recs) for i, recs in per_device.items()}
        watch = _AckWatch(self.broker.port, last, records)
        gateway: _GatewayProc | None = None
        try:
            broker_pid = self.broker._proc.pid if self.broker._proc is not None else 0
            broker_cpu0 = cpu_seconds(broker_pid)
            gateway = _GatewayProc(self.config, self.dir / "gateway.log")
            watch.pid = gateway.proc.pid
            if self.console:
                poller = _FleetPoller(self.http_port, self.token, watch.done)
            deadline = time.monotonic() + max(120.0, records / 500)
            while not watch.done.wait(0.5):
                if gateway.proc.poll() is not None:
                    raise BenchError(
                        f"gateway exited {gateway.proc.returncode}: {gateway.lines[-5:]}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"drain incomplete: {watch.acked} of {records} acknowledged in time"
                    )
            assert watch.done_at is not None
            if gateway.connected_at is None:
                raise BenchError("gateway never logged its connection")
            drain_s = watch.done_at - gateway.connected_at
            cpu_at_connect = gateway.cpu_at_connect
            broker_cpu = cpu_seconds(broker_pid) - broker_cpu0
            page_cpu = (0.0, 0.0)
            if self.console:
                poller.join()  # it stops with the drain: the gateway is idle from here on
                page_cpu = poller.idle_pages(gateway.proc.pid, IDLE_PAGES)
            exit_code = gateway.terminate()
            summary = next((ln for ln in reversed(gateway.lines) if "summary:" in ln), "")
            # The log's work, timed in the gateway (see the module's docstring for why).
            logged = re.search(r", log ([0-9.]+) s CPU;", summary)
            gateway = None
        finally:
            watch.close()
            if self.console:
                poller.join()
            if gateway is not None:
                gateway.terminate()
        with Store(self.db, readonly=True) as store:
            stored = store.record_count()
        if stored != records:
            raise BenchError(f"database holds {stored} records, expected {records}")
        if self.log and logged is None:
            raise BenchError(f"the gateway's summary gives no log CPU: {summary!r}")
        return Drain(
            log=self.log,
            publish_s=publish_s,
            drain_s=drain_s,
            rss_points=watch.rss_points,
            stored=stored,
            gateway_exit=exit_code,
            summary_line=re.sub(r"^.*summary: ", "", summary),
            gateway_cpu_s=watch.cpu_done - cpu_at_connect,
            broker_cpu_s=broker_cpu,
            load_avg=load_avg,
            db_bytes=db_bytes(self.db),
            record_row_bytes=row_bytes(self.db),
            console=self.console,
            polls=poller.polls if self.console else 0,
            poll_errors=poller.errors if self.console else [],
            poller_cpu_s=poller.cpu_s if self.console else 0.0,
            page_cpu_s=page_cpu[0],
            page_client_cpu_s=page_cpu[1],
            round=self.round,
            log_cpu_s=float(logged.group(1)) if logged else 0.0,
        )

    def close(self) -> None:
        self.broker.stop()


class _FleetPoller(threading.Thread):
    """An operator's browser on the fleet page: GET /api/v1/fleet once a second until the
    drain is done, as the dashboard's fleet page does (its numbers come from that call).
    Its own CPU (this thread's CPU time around each request) is counted apart: a browser
    runs on another machine."""

    def __init__(self, port: int, token: str, done: threading.Event) -> None:
        super().__init__(name="bench-fleet-poller", daemon=True)
        self.url = f"http://127.0.0.1:{port}/api/v1/fleet"
        self.token = token
        self.done = done
        self.polls = 0
        self.errors: list[str] = []
        self.cpu_s = 0.0
        self.start()

    def _request(self) -> Any:
        import urllib.request

        return urllib.request.Request(self.url, headers={"Authorization": f"Bearer {self.token}"})

    def idle_pages(self, gateway_pid: int, pages: int) -> tuple[float, float]:
        """Read `pages` fleet pages back to back from the idle gateway: (the gateway's CPU,
        this client's CPU) per page, in seconds. The console's own work, without the drain's
        noise around it."""
        import urllib.request

        request = self._request()
        gateway0, client0 = tree_cpu_seconds(gateway_pid), time.thread_time()
        for _ in range(pages):
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
        client = time.thread_time() - client0
        return (tree_cpu_seconds(gateway_pid) - gateway0) / pages, client / pages

    def run(self) -> None:
        import urllib.error
        import urllib.request

        base = self.url.rsplit("/api/", 1)[0]
        # The server starts with the gateway: wait until it answers (no token needed there).
        while not self.done.is_set():
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=10) as answer:
                    answer.read()
                break
            except (urllib.error.URLError, OSError):
                self.done.wait(0.05)
        request = self._request()
        while not self.done.is_set():
            cpu0 = time.thread_time()
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read()
                self.polls += 1
            except (urllib.error.URLError, OSError) as exc:
                self.errors.append(str(exc))
            self.cpu_s += time.thread_time() - cpu0
            self.done.wait(1.0)


def run(
    records: int = 50_000,
    devices: int = 100,
    workdir: Path | None = None,
    verify_threads: int = 2,
    raw_seconds: float = 2.0,
    log: Any = None,
    rounds: int = 2,
) -> BenchResult:
    from signet.signer import SoftwareSigner
    from signet_gateway.verify.pubkeys import DevicePublicKey

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if devices < 1 or records < devices:
        raise BenchError("need at least one device and one record per device")
    if rounds < 1:
        raise BenchError("need at least one round")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="signet-bench-gateway-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    # Each round drains the records with the log on and off, in alternating order (on, off;
    # off, on; ...), so that neither is always the first after the generation's load or
    # always the later one; the best drain of each counts (a slower one was disturbed).
    # The console's drains (the log on, the HTTP server on and polled) take their turn in
    # the same rotation: its cost is against the best drain with the log on and no console.
    kinds = ["on", "off", "console"]
    sites = [
        _Site(workdir, kind != "off", verify_threads, r + 1, console=kind == "console")
        for r in range(rounds)
        for kind in (kinds if r % 2 == 0 else kinds[::-1])
    ]
    try:
        per = [records // devices + (1 if i < records % devices else 0) for i in range(devices)]
        keys = {
            i: DevicePublicKey.from_sec1(SoftwareSigner("p256", _secret(i)).public_key, "p256")
            for i in range(devices)
        }
        kids = {i: k.device_id for i, k in keys.items()}

        say(f"bench: generating {records} records for {devices} devices (firmware builder)...")
        t = time.monotonic()
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            futures = pool.map(_device_records, [(i, per[i]) for i in range(devices)])
            # Meanwhile: every broker and database, the gateway's session in each.
            for site in sites:
                site.prepare(keys)
            per_device = dict(futures)
        gen_s = time.monotonic() - t

        say("bench: measuring raw single-thread cryptography ECDSA P-256 verify...")
        sample = [r for recs in per_device.values() for r in recs[:20]]
        crypto_keys = {k.kid: k.to_cryptography() for k in keys.values()}
        raw_rate = raw_verify_rate(sample, crypto_keys, raw_seconds)

        drains = []
        for site in sites:
            state = (
                "the console on (log on, fleet page polled every second)"
                if site.console
                else f"the log {'on' if site.log else 'off'}"
            )
            say(f"bench: {state}: publishing the backlog while the gateway is stopped,"
                " then draining it...")  # fmt: skip
            drains.append(site.drain(per_device, kids))
            site.close()
        on = max((d for d in drains if d.kind == "on"), key=lambda d: d.drain_rate)
        off = max((d for d in drains if d.kind == "off"), key=lambda d: d.drain_rate)
        console = max((d for d in drains if d.kind == "console"), key=lambda d: d.drain_rate)
        rate = on.drain_rate
        return BenchResult(
            records=records,
            devices=devices,
            threads=verify_threads,
            gen_s=gen_s,
            publish_s=on.publish_s,
            drain_s=on.drain_s,
            drain_rate=rate,
            raw_rate=raw_rate,
            ratio=rate / raw_rate,
            rss_points=on.rss_points,
            stored=on.stored,
            gateway_exit=on.gateway_exit,
            summary_line=on.summary_line,
            gateway_cpu_s=on.gateway_cpu_s,
            load_avg=on.load_avg,
            broker_cpu_s=on.broker_cpu_s,
            log_off=off,
            log_bytes=log_storage(on.db_bytes, off.db_bytes),
            log_row_bytes=on.record_row_bytes - off.record_row_bytes,
            rounds=rounds,
            drain_rates=[(d.kind, d.drain_rate) for d in drains],
            console=console,
            drains=drains,
        )
    finally:
        for site in sites:
            site.close()
        if tmp is not None:
            tmp.cleanup()


def format_report(r: BenchResult) -> str:
    lines = [
        f"backlog: {r.records} single-record QoS 1 messages from {r.devices} devices "
        f"(generated in {r.gen_s:.1f} s, published in {r.publish_s:.1f} s)",
        f"  gateway drain (verified, stored, acked)  {r.drain_rate:10,.0f} records/s"
        f"  ({r.drain_s:.2f} s, {r.threads} verifier threads, {os.cpu_count()} cores)",
        f"  raw cryptography P-256 verify, 1 thread  {r.raw_rate:10,.0f} verifies/s",
        f"  ratio                                    {r.ratio:10.2f}"
        f"  ({'meets' if r.ratio >= TARGET_RATIO else 'MISSES'} the {TARGET_RATIO} target)",
    ]
    lines.append(
        f"  CPU per record: gateway {r.gateway_cpu_s / r.records * 1e6:.0f} us (all threads and"
        " verifier processes),"
        f" Mosquitto {r.broker_cpu_s / r.records * 1e6:.0f} us; raw verify alone"
        f" {1e6 / r.raw_rate:.0f} us; load average before the drain {r.load_avg:.2f}"
    )
    for pct, rss, hwm, children in r.rss_points:
        lines.append(
            f"  gateway RSS at {pct:3d} % acked: {rss / 1024:6.1f} MiB"
            f" (peak so far {hwm / 1024:.1f} MiB); verifier processes {children / 1024:.1f} MiB"
        )
    lines.append(
        f"  records in the database: {r.stored}; gateway exit on SIGTERM: {r.gateway_exit}"
    )
    if r.log_off is not None:
        lines += _log_lines(r, r.log_off)
    if r.console is not None and r.of_kind("console") and r.of_kind("on"):
        lines += _console_lines(r)
    if len(r.drain_rates) > 2:
        # How much drains of one kind differ on this machine: a smaller cost is noise.
        rates = ", ".join(f"{kind} {rate:,.0f}" for kind, rate in r.drain_rates)
        lines.append(f"  every drain, in the order run: {rates} records/s")
    if len(r.drains) > 2:
        cpu = ", ".join(f"{d.kind} {d.cpu_per_record_us:,.0f}" for d in r.drains)
        lines.append(f"  the gateway's CPU per record, in the same order: {cpu} us")
    return "\n".join(lines)


def _against_target(costs: list[float], target: float = TARGET_CONSOLE_COST_PCT) -> str:
    """Are the rounds' costs on one side of the target (the verdict established)?"""
    shown = [round(c, 1) for c in costs]  # judged as printed
    each = ", ".join(f"{c:.1f}" for c in shown)
    if len(costs) < 2:
        return "one round: not established"
    if all(c <= target for c in shown):
        side = "every round within the target: established"
    elif all(c > target for c in shown):
        side = "every round beyond the target: established"
    else:
        side = "rounds on both sides of the target: not established"
    return f"round by round {each} %: {side}"


def _span(values: list[float], form: str = ",.0f") -> str:
    if len(values) == 1:
        return "1 drain"
    return f"median of {len(values)}: {min(values):{form}} to {max(values):{form}}"


def _signed(values: list[float]) -> str:
    return ", ".join(f"{v:+.1f}" for v in values)


def _console_lines(r: BenchResult) -> list[str]:
    """The console's cost: the log on, the HTTP server on, the fleet page polled each second,
    against the log on without it; medians over the rounds, every round's figure beside
    them, and the spread between drains of one kind."""
    consoles, ons = r.of_kind("console"), r.of_kind("on")
    cost = r.console_cost_pct
    rates = {"c": [d.drain_rate for d in consoles], "on": [d.drain_rate for d in ons]}
    cpu = {"c": [d.cpu_per_record_us for d in consoles], "on": [d.cpu_per_record_us for d in ons]}
    cpu_spread = max(spread_pct(cpu["c"]), spread_pct(cpu["on"]))
    rate_spread = max(spread_pct(rates["c"]), spread_pct(rates["on"]))
    polls = sum(d.polls for d in consoles)
    errors = sum(len(d.poll_errors) for d in consoles)
    failed = f", {errors} failed" if errors else ""
    page_ms = [d.page_cpu_s * 1e3 for d in consoles]
    client_ms = median(d.poller_cpu_s / max(1, d.polls) for d in consoles) * 1e3
    meets = "meets" if cost <= TARGET_CONSOLE_COST_PCT else "MISSES"
    rounds = len(consoles)
    rate_costs = r.console_rate_costs_pct
    return [
        "the console (the log on, [http] enabled, a client reading the fleet page"
        " (/api/v1/fleet) once a second through the drain, against the drain with the log on"
        + (" without it):" if rounds == 1 else f" without it; medians of {rounds} rounds):"),
        f"  gateway drain with the console polled    {median(rates['c']):10,.0f} records/s"
        f"  ({_span(rates['c'])}; {polls} fleet pages served{failed})",
        f"  gateway drain without it (the log on)    {median(rates['on']):10,.0f} records/s"
        f"  ({_span(rates['on'])})",
        f"  the console's cost                       {cost:10.1f} % of the drain"
        f"  ({meets} the {TARGET_CONSOLE_COST_PCT:g} % target): a fleet page takes"
        f" {median(page_ms):.1f} ms of the gateway's CPU ({_span(page_ms, '.1f')} ms;"
        f" {IDLE_PAGES} pages read from the idle gateway after each drain), at one a second"
        f" that share of the {r.cores} cores a drain bound by the machine's CPU has;"
        f" {_against_target(r.console_costs_pct)}",
        f"  in the drains on this machine            {median(r.console_shares_pct or [0.0]):10.1f}"
        " % of the gateway's CPU went to the pages  (more than its share of the cores when"
        " other work leaves the gateway less of them;"
        f" {_against_target(r.console_shares_pct)})",
        f"  the gateway's CPU per record             {median(cpu['c']):10.0f} us with the"
        f" console, {median(cpu['on']):.0f} us without  (round by round"
        f" {_signed(r.console_cpu_costs_pct)} %; across rounds drains of one kind differ by up"
        f" to {cpu_spread:.0f} %: a cost beyond the pages' shows only if larger than that)",
        f"  in wall drain rate                       {median(rate_costs or [0.0]):10.1f} %"
        f"  (round by round {_signed(rate_costs)} %; across rounds drains of one kind differ"
        f" by up to {rate_spread:.0f} %)",
        f"  the polling client                       {client_ms:10.1f} ms of CPU per page"
        "  (a browser runs elsewhere: not the gateway's cost; here it shares the cores)",
    ]


def _log_lines(r: BenchResult, off: Drain) -> list[str]:
    """The transparency log's cost: its work timed in the gateway, against the gateway's CPU
    in the same drain; the same records drained with the log off for the wall rate."""
    cost = r.log_cost_pct
    ons, offs = r.of_kind("on"), r.of_kind("off")
    log_us = [d.log_cpu_s / d.stored * 1e6 for d in ons]
    log_span = "no drain" if not log_us else _span(log_us, ".1f")
    log_span += " us" if len(log_us) > 1 else ""
    rate_costs = r.log_rate_costs_pct
    rate_spread = max(
        spread_pct([d.drain_rate for d in ons] or [0.0]),
        spread_pct([d.drain_rate for d in offs] or [0.0]),
    )
    per_record = r.log_bytes_per_record
    parts = sorted(r.log_bytes.items(), key=lambda kv: -abs(kv[1]))
    shown = [f"{name} {size / r.records:.1f}" for name, size in parts if size]
    cpu_on = r.gateway_cpu_s / r.records * 1e6
    cpu_off = off.gateway_cpu_s / off.stored * 1e6
    lines = [
        "the transparency log (the drain above has it on; the same records through a fresh"
        " broker and database with [log] enabled = false"
        + ("):" if r.rounds == 1 else f"; the best of {r.rounds} drains each, alternating):"),
        f"  gateway drain with the log off           {off.drain_rate:10,.0f} records/s"
        f"  ({off.drain_s:.2f} s; published in {off.publish_s:.1f} s, load average before"
        f" the drain {off.load_avg:.2f})",
        f"  the log's cost                           {cost:10.1f} % of the drain"
        f"  ({'meets' if cost <= TARGET_LOG_COST_PCT else 'MISSES'} the"
        f" {TARGET_LOG_COST_PCT:g} % target): the log's work takes"
        f" {median(log_us or [0.0]):.1f} us of the writer's CPU per record"
        f" ({log_span}; timed in the gateway, read from"
        " its summary line after each drain with the log on), as a share of the gateway's"
        f" whole CPU per record in the same drain (every thread and verifier process;"
        f" {median(d.cpu_per_record_us for d in ons) if ons else 0:.0f} us);"
        f" {_against_target(r.log_costs_pct, TARGET_LOG_COST_PCT)}",
        f"  in wall drain rate                       {median(rate_costs or [0.0]):10.1f} %"
        f"  (round by round {_signed(rate_costs)} %, the log on against the same round's drain"
        f" with it off; across rounds drains of one kind differ by up to {rate_spread:.0f} %);"
        f" CPU per record {cpu_on:.0f} us on, {cpu_off:.0f} us off (the best drains)",
        f"  the log's storage                        {per_record:10.1f} bytes per record beyond"
        f" the record  ({'meets' if per_record <= TARGET_LOG_BYTES else 'MISSES'} the"
        f" {TARGET_LOG_BYTES:g} target): {', '.join(shown) or 'nothing'}"
        f" (pages in use, dbstat, log on minus off; log_index makes each record's row"
        f" {r.log_row_bytes / r.records:.1f} bytes longer)",
        f"  records in the database with the log off: {off.stored}; gateway exit on SIGTERM:"
        f" {off.gateway_exit}",
    ]
    return lines
