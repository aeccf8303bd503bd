"""`signet simulate`: a virtual fleet running the REAL agent code against a broker.

Every virtual device is a ``signet.agent.Agent`` (the code that runs on a board) with:

- its own key (``signet keygen`` format), journal and sequence state in ``OUT/<name>/``;
- the real paho transport (tools/pi/paho_transport.py), wrapped so scheduled network outages
  kill its connection (tools/fleet/virtual_platform.py);
- a virtual platform: real monotonic time, the host's wall clock, short heartbeats;
- a revenue source (the agent's ``poll(agent)`` source interface) that rings up random
  amounts in minor units, in EUR and USD, as a Poisson process of ``rate`` per minute.

One process, ONE thread: the fleet loop calls ``Agent.step()`` of every device round-robin
(the agent is built for that: step() never blocks longer than a socket timeout), runs the
scheduled events (outages, reboots, caller hooks) between rounds and sleeps while nobody
has work. No thread per device is needed.

A **reboot** is a crash: the device's MQTT connection is dropped without DISCONNECT (the
broker publishes its "offline" will), its Agent object is thrown away without stop(), the
device stays off for ``reboot_down_s`` (no sales, no heartbeats) and a NEW Agent starts on
the same files: journal recovery, a new boot counter, a boot record with reset cause
``wdt`` that declares the unused rest of the old sequence lease. The journal files use
``Files(sync=False)``: the process survives the simulated crash, so the page cache does
too (power-loss durability is the journal's own power-cut tests' business).

An **outage** (``--outage AT+DUR[:K]``): from AT seconds after the start, for DUR seconds,
the network of the first K devices (all devices without ``:K``) is down. Their
connections die, reconnects fail, records pile up in the journal and are sent in batches
once the link is back.

Ground truth: every record a device signs is captured as it is built (the one hook into
the agent: its RecordBuilder is wrapped), and every revenue amount the source handed to
``record_revenue`` is counted when the agent accepted it. When the run ends, sales stop
and the fleet keeps stepping until every device's journal is acknowledged up to its last
record (deadline ``drain_timeout_s``); each device is then stopped cleanly and
``OUT/truth.json`` is written (format ``signet-sim-truth/1``, described in docs/DEMO.md):
per device the kid, the sequence numbers signed, revenue sum and count per currency,
heartbeats, the up intervals by the uptime rule of docs/MCR.md section 3, boots, reboots
and outages.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from signet import config as agent_config
from signet.agent import Agent, RecordRefused
from signet.fsio import Files
from signet_gateway.mcr.aggregate import DEFAULT_HB_TOLERANCE, PPM
from signet_gateway.mcr.display import counted
from signet_tools.pi.paho_transport import PahoTransport
from signet_tools.records import keygen

from .hardware import FleetRoots, HardwareKey, atecc608_key, tpm2_key, tpm_available
from .virtual_platform import LinkTransport, VirtualNet, VirtualPlatform

TRUTH_FORMAT: Final = "signet-sim-truth/1"
CURRENCIES: Final = (("EUR", 0.75), ("USD", 0.25))  # (code, share of sales)
AMOUNT_RANGE: Final = (50, 2500)  # minor units per sale: 0.50 .. 25.00
_IDLE_S: Final = 0.05  # longest sleep of the fleet loop
KEY_LABELS: Final = {"atecc608": "an emulated ATECC608", "tpm2": "a swtpm", "file": "a file"}
CHALLENGE_TTL_MS: Final = 900_000  # a hardware device's enrollment challenge ([trust] default)
# Agent counters kept in the truth, summed over the Agents a device ran (one per boot).
_COUNTERS: Final = ("connects", "disconnects", "resends", "published", "records_sent")


class SimulationError(Exception):
    """Bad simulation parameters, or the fleet could not be set up."""


# -- parameters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutageSpec:
    """``AT+DUR[:K]``: at AT s, network down for DUR s on the first K devices (None: all)."""

    at_s: float
    duration_s: float
    devices: int | None = None

    _RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\+\s*(\d+(?:\.\d+)?)\s*(?::\s*(\d+))?\s*$")

    @classmethod
    def parse(cls, spec: str) -> OutageSpec:
        m = cls._RE.match(spec)
        if m is None:
            raise SimulationError(
                f"--outage {spec!r}: expected AT+DURATION[:DEVICES] in seconds, e.g. 20+10"
                " (at 20 s, 10 s long, all devices) or 20+10:3 (the first 3 devices)"
            )
        at, dur = float(m.group(1)), float(m.group(2))
        count = int(m.group(3)) if m.group(3) is not None else None
        if dur <= 0:
            raise SimulationError(f"--outage {spec!r}: the duration must be > 0")
        if count is not None and count < 1:
            raise SimulationError(f"--outage {spec!r}: the device count must be >= 1")
        return cls(at, dur, count)

    def __str__(self) -> str:
        who = "all devices" if self.devices is None else f"first {self.devices} devices"
        return f"{self.at_s:g}+{self.duration_s:g} ({who})"


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SimulationError(f"--broker {text!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


@dataclass(frozen=True)
class BrokerAccess:
    """A broker configured by `signet broker config` (tools/broker/): each device connects
    over TLS, the broker's certificate checked against `ca`, with its machine's account (its
    device id) and the password the command wrote for it under `config_dir`."""

    ca: Path
    config_dir: Path  # the command's --out folder

    def password(self, account: str) -> str:
        from signet_tools.broker.generate import password_file

        try:
            return password_file(self.config_dir, account).read_text().strip()
        except OSError as exc:
            raise SimulationError(
                f"no broker password for {account} in {self.config_dir}: {exc.strerror}"
            ) from None


@dataclass
class FleetParams:
    devices: int
    duration_s: float
    broker: tuple[str, int]
    out: Path
    db: Path | str  # the gateway's database: a SQLite file, or a PostgreSQL URL
    rate_per_min: float = 6.0
    outages: Sequence[OutageSpec] = ()
    reboots: int = 0
    reboot_down_s: float = 3.0
    heartbeat_s: int = 2
    hb_tolerance: float = DEFAULT_HB_TOLERANCE
    hardware: int = 0  # devices whose key is in an emulated ATECC608 or a swtpm (hardware.py)
    seed: int | None = None
    drain_timeout_s: float = 60.0
    name_prefix: str = "sim"
    access: BrokerAccess | None = None  # a secured broker; None: anonymous, plain MQTT

    def check(self) -> None:
        if not 1 <= self.devices <= 1000:
            raise SimulationError(f"--devices: must be 1..1000, got {self.devices}")
        if self.duration_s <= 0:
            raise SimulationError(f"--duration: must be > 0 s, got {self.duration_s:g}")
        if self.rate_per_min < 0:
            raise SimulationError(f"--rate: must be >= 0 events/min, got {self.rate_per_min:g}")
        if self.reboots < 0:
            raise SimulationError(f"--reboots: must be >= 0, got {self.reboots}")
        if not 0 <= self.hardware <= self.devices:
            raise SimulationError(f"--hardware: must be 0..{self.devices}, got {self.hardware}")
        if not 1 <= self.heartbeat_s <= 86400:
            raise SimulationError(f"--heartbeat: must be 1..86400 s, got {self.heartbeat_s}")
        for o in self.outages:
            if o.at_s + o.duration_s >= self.duration_s:
                raise SimulationError(
                    f"--outage {o}: must end before the run does ({self.duration_s:g} s)"
                )
            if o.devices is not None and o.devices > self.devices:
                raise SimulationError(f"--outage {o}: only {self.devices} devices in the fleet")


def hb_tolerance_of(db: Path | str, configured: float | None) -> float:
    """The tolerance the uptime rule uses: configured ([aggregate]), else the database's
    (a SQLite file or a PostgreSQL URL)."""
    if configured is not None:
        return configured
    from signet_gateway.store.faults import ENGINE_ERRORS
    from signet_gateway.store.model import StoreError
    from signet_gateway.store.sqlite import Store

    try:
        with Store(db, readonly=True) as store:
            row = store.conn.execute(
                "SELECT value FROM agg_meta WHERE key = 'hb_tolerance_ppm'"
            ).fetchone()
    except (StoreError, *ENGINE_ERRORS):
        row = None
    return int(row[0]) / PPM if row else DEFAULT_HB_TOLERANCE


# -- ground truth ------------------------------------------------------------------------------


@dataclass
class Signed:
    """One record as the agent built it (captured before it was journaled)."""

    n: int
    kind: str
    b: int
    u: int
    t: int | None
    fields: dict[str, Any]
    raw: bytes


class _RecordingBuilder:
    """Wraps the agent's RecordBuilder: every signed record is also handed to the truth."""

    def __init__(self, inner: Any, sink: Callable[[Signed], None]) -> None:
        self._inner = inner
        self._sink = sink

    def build(
        self, kind: str, n: int, b: int, u: int, t: int | None, prev: bytes, fields: dict
    ) -> tuple[Any, Any]:
        payload, rec = self._inner.build(kind, n, b, u, t, prev, fields)
        self._sink(Signed(n, kind, b, u, t, dict(fields), bytes(rec)))
        return payload, rec


def uptime_truth(records: Iterable[Signed], hb_tolerance: float) -> dict[str, Any]:
    """Up intervals by the rule of docs/MCR.md section 3, from the records a device signed.

    Within one boot, boot record and heartbeats in (u, n) order; the interval (P.u, H.u]
    before heartbeat H is up when H.u - P.u <= H.iv * (1 + tol), in integer ppm.
    """
    tol_ppm = round(hb_tolerance * PPM)
    boots: dict[int, list[Signed]] = {}
    for r in records:
        if r.kind in ("boot", "hb"):
            boots.setdefault(r.b, []).append(r)
    intervals: list[list[int]] = []
    late: list[list[int]] = []
    up = 0
    for b in sorted(boots):
        points = sorted(boots[b], key=lambda r: (r.u, r.n))
        for prev, hb in itertools.pairwise(points):
            if hb.kind != "hb":
                continue
            gap = hb.u - prev.u
            if gap * PPM <= hb.fields["iv"] * (PPM + tol_ppm):
                up += gap
                intervals.append([b, prev.u, hb.u])
            else:
                late.append([b, prev.u, hb.u])
    return {
        "rule": "docs/MCR.md section 3: (P.u, H.u] is up when H.u - P.u <= H.iv * (1 + tol)",
        "hb_tolerance": hb_tolerance,
        "up_ms": up,
        "up_intervals": intervals,
        "down_gaps_within_boots": late,
    }


def ranges(ns: Iterable[int]) -> list[list[int]]:
    """Sorted numbers as inclusive [lo, hi] runs: 1,2,3,65,66 -> [[1, 3], [65, 66]]."""
    out: list[list[int]] = []
    for n in sorted(ns):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


# -- one virtual device -------------------------------------------------------------------------


class RevenueSource:
    """The machine's till: an agent source (poll(agent)) ringing up random sales."""

    def __init__(self, rng: random.Random, rate_per_min: float) -> None:
        self.rng = rng
        self.rate_per_s = rate_per_min / 60.0
        self.active = False
        self.next_at = float("inf")
        self.sales = 0
        self.accepted: list[tuple[int, int, str]] = []  # (n, amount, currency)
        self.refused: list[str] = []

    def start(self, now: float) -> None:
        self.active = self.rate_per_s > 0
        self.next_at = now + self.rng.expovariate(self.rate_per_s) if self.active else 1e300

    def stop(self) -> None:
        self.active = False

    def poll(self, agent: Any) -> None:
        if not self.active:
            return
        now = time.monotonic()
        while now >= self.next_at:
            self.next_at += self.rng.expovariate(self.rate_per_s)
            amount = self.rng.randint(*AMOUNT_RANGE)
            cur = "EUR" if self.rng.random() < CURRENCIES[0][1] else CURRENCIES[1][0]
            self.sales += 1
            try:
                n = agent.record_revenue(amount, cur, "sim", f"sale-{self.sales}")
            except RecordRefused as exc:  # journal full: refused at the source, never lost
                self.refused.append(exc.reason)
            else:
                self.accepted.append((n, amount, cur))


class VirtualDevice:
    def __init__(self, fleet: Fleet, index: int, rng: random.Random) -> None:
        p = fleet.params
        self.fleet = fleet
        self.index = index
        self.name = f"{p.name_prefix}-{index + 1:02d}"
        self.dir = p.out / self.name
        self.tier = "hardware" if index < p.hardware else "software"
        # A secure element's key is P-256; software keys mix in secp256k1.
        self.curve = "secp256k1" if index % 4 == 2 and self.tier == "software" else "p256"
        self.key_path = self.dir / "device.key"
        self.signer: Any = None  # SoftwareSigner, or the secure element's signer
        self.hardware: HardwareKey | None = None
        self.net = VirtualNet()
        self.source = RevenueSource(rng, p.rate_per_min)
        self.records: list[Signed] = []
        self.boots: list[dict[str, Any]] = []
        self.reboots: list[dict[str, Any]] = []
        self.outages: list[dict[str, float]] = []
        self.reboot_at: list[float] = []  # pending crash times (monotonic)
        self.agent: Agent | None = None
        self.back_at = 0.0
        self.files: Files | None = None
        self.log: TextIO | None = None
        self.done = False
        self.final_stats: dict[str, Any] = {}
        self.counters: dict[str, int] = {}

    @property
    def kid(self) -> str:
        assert self.signer is not None
        return self.signer.device_id

    def create(self, hardware: HardwareKey | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if hardware is not None:
            self.hardware = hardware
            self.signer = hardware.opened.signer
        else:
            self.signer = keygen.generate(self.curve, self.key_path, force=True)
        self.files = Files(str(self.dir / "journal"), sync=False)
        self.log = open(self.dir / "agent.log", "a")  # noqa: SIM115 - closed in close()

    @property
    def key_kind(self) -> str:
        return self.hardware.kind if self.hardware is not None else "file"

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.hardware is not None:
            self.hardware.close()

    def _config(self) -> Any:
        host, port = self.fleet.params.broker
        access = self.fleet.params.access
        login: dict[str, Any] = {}
        if access is not None:  # as DEVICE.md configures a device for a secured broker
            login = {
                "user": self.kid,
                "password": access.password(self.kid),
                "tls": {"ca": str(access.ca)},
            }
        return agent_config.parse(
            {
                "mqtt": {
                    **login,
                    "host": host,
                    "port": port,
                    "keepalive_s": 10,
                    "timeout_ms": 2000,
                    "backoff_min_ms": 250,
                    "backoff_max_ms": 2000,
                    "ack_timeout_s": 5,
                    # Where to resume (the retained ack), as on a real device; not a wait
                    # for enrollment, which takes effect when Store.enroll commits.
                    "ack_wait_ms": 500,
                },
                "key": {"path": str(self.key_path)},
                "journal": {"dir": str(self.dir / "journal")},
                "intervals": {"heartbeat_s": self.fleet.params.heartbeat_s, "loop_ms": 50},
            }
        )

    def boot(self, cause: str, now: float) -> None:
        """A NEW Agent on this device's files: recovery, then the boot record."""
        assert self.signer is not None
        cfg = self._config()
        transport = LinkTransport(PahoTransport.from_config(cfg.mqtt, self.kid), self.net)
        platform = VirtualPlatform(self.net, cause, self.log, self.name)
        counter = self.hardware.opened.counter if self.hardware is not None else None
        agent = Agent(cfg, platform, self.signer, transport, self.files, [self.source], counter)
        agent.recorder._builder = _RecordingBuilder(agent.recorder._builder, self.records.append)
        agent.start()
        self.agent = agent
        boot = next(r for r in reversed(self.records) if r.kind == "boot")
        self.boots.append(
            {"b": boot.b, "n": boot.n, "ls": boot.fields["ls"], "rc": boot.fields["rc"]}
        )
        self.source.start(now)

    def crash(self, now: float, down_s: float) -> None:
        """Power is gone: no DISCONNECT, no stop(); back after down_s on the same files."""
        assert self.agent is not None
        self._add_counters(self.agent.stats)
        self.agent.transport.close()
        self.agent = None
        self.source.stop()
        self.back_at = now + down_s
        self.reboots.append({"at_s": round(now - self.fleet.t0, 3), "down_s": down_s})
        self.fleet.emit(
            f"{self.name} crashes (no clean shutdown, journal left as it is), off for {down_s:g} s"
        )

    def tick(self, now: float, selling: bool) -> float:
        """One turn in the round robin; returns how long this device may be left alone."""
        if self.done:
            return _IDLE_S
        if self.agent is None:
            if now < self.back_at:
                return self.back_at - now
            self.boot("wdt", now)
            b = self.boots[-1]
            unused = (
                f", declares n={b['ls'] + 1}..{b['n'] - 1} never used"
                if b["n"] - 1 > b["ls"]
                else ""
            )
            self.fleet.emit(
                f"{self.name} boots again: boot record b={b['b']} n={b['n']} rc=wdt ls={b['ls']}"
                + unused
            )
            if not selling:
                self.source.stop()
        if self.reboot_at and now >= self.reboot_at[0]:
            self.reboot_at.pop(0)
            self.crash(now, self.fleet.params.reboot_down_s)
            return self.back_at - now
        assert self.agent is not None
        try:
            wait_ms = self.agent.step()
        except Exception as exc:
            raise SimulationError(f"{self.name}: agent step failed: {exc!r}") from exc
        return wait_ms / 1000.0

    def _add_counters(self, stats: dict[str, Any]) -> None:
        for k in _COUNTERS:
            self.counters[k] = self.counters.get(k, 0) + stats.get(k, 0)

    @property
    def stats(self) -> dict[str, Any]:
        return self.agent.stats if self.agent is not None else self.final_stats

    def drained(self) -> bool:
        """Everything this device signed is acknowledged (journal empty of unacked records)."""
        if self.agent is None:
            return False
        s = self.agent.stats
        return s["acked"] >= s["last_n"] and s["pending"] == 0

    def finish(self) -> None:
        """Clean stop: "offline" status, DISCONNECT."""
        if self.agent is not None:
            self.final_stats = dict(self.agent.stats)
            self._add_counters(self.final_stats)
            self.agent.stop()
        self.done = True

    def truth(self, hb_tolerance: float) -> dict[str, Any]:
        revenue: dict[str, dict[str, int]] = {}
        for _n, amount, cur in self.source.accepted:
            r = revenue.setdefault(cur, {"amount": 0, "count": 0})
            r["amount"] += amount
            r["count"] += 1
        signed_rev: dict[str, dict[str, int]] = {}
        for rec in self.records:
            if rec.kind == "rev":
                r = signed_rev.setdefault(rec.fields["cur"], {"amount": 0, "count": 0})
                r["amount"] += rec.fields["am"]
                r["count"] += 1
        if signed_rev != revenue:  # the source's view and the signed records must agree
            raise SimulationError(
                f"{self.name}: revenue signed {signed_rev} differs from revenue accepted {revenue}"
            )
        stats = self.stats
        assert self.signer is not None
        return {
            "name": self.name,
            "kid": self.kid,
            "curve": self.curve,
            "tier": self.tier,
            "key": self.key_kind,
            "records": len(self.records),
            "signed_n": ranges(r.n for r in self.records),
            "last_n": max((r.n for r in self.records), default=0),
            "acked": stats.get("acked", 0),
            "drained": self.done and stats.get("acked", -1) >= stats.get("last_n", 0),
            "kinds": {
                k: sum(1 for r in self.records if r.kind == k)
                for k in sorted({r.kind for r in self.records})
            },
            "revenue": dict(sorted(revenue.items())),
            "sales_refused": len(self.source.refused),
            "heartbeats": sum(1 for r in self.records if r.kind == "hb"),
            "uptime": uptime_truth(self.records, hb_tolerance),
            "boots": self.boots,
            "reboots": self.reboots,
            "outages": self.outages,
            "agent": dict(self.counters),  # summed over every Agent this device ran
        }


# -- the fleet ------------------------------------------------------------------------------------


Hook = tuple[float, Callable[[], None]]


@dataclass
class Fleet:
    params: FleetParams
    devices: list[VirtualDevice] = field(default_factory=list)
    t0: float = 0.0
    started_ms: int = 0
    ended_ms: int = 0
    drained: bool = False
    events: Callable[[str], None] | None = None  # notable events, for progress output
    _notices: list[Hook] = field(default_factory=list)
    roots: FleetRoots | None = None  # the hardware devices' test roots
    trust: dict[str, list[str]] = field(default_factory=dict)  # gateway.toml [trust] for them

    def emit(self, text: str) -> None:
        if self.events is not None:
            self.events(f"  t={time.monotonic() - self.t0:4.0f}s  {text}")

    def create(self) -> None:
        """Keys, files and enrollment of every device (call before the gateway needs them)."""
        from signet_gateway.store.admission import enroll
        from signet_gateway.store.model import StoreError
        from signet_gateway.store.sqlite import Store
        from signet_gateway.trust import EvidenceRefused, TrustPolicy
        from signet_gateway.verify.pubkeys import DevicePublicKey

        p = self.params
        p.check()
        if (p.out / "truth.json").exists():
            raise SimulationError(
                f"--out {p.out} already holds a simulated fleet (truth.json): use a new directory"
            )
        try:  # an existing database only: `signet db init` creates one, never a simulation
            store = Store(p.db)
        except StoreError as exc:
            raise SimulationError(str(exc)) from None
        except Exception as exc:
            raise SimulationError(f"cannot open the gateway database {p.db}: {exc}") from exc
        try:
            p.out.mkdir(parents=True, exist_ok=True)
            rng = random.Random(p.seed)
            self.devices = [
                VirtualDevice(self, i, random.Random(rng.getrandbits(64))) for i in range(p.devices)
            ]
            # The test roots (made only for a fleet with hardware devices).
            roots = self.roots = FleetRoots(p.out / "trust") if p.hardware else None
            with_tpm = p.hardware > 1 and tpm_available()
            for dev in self.devices:
                hw = None if dev.tier == "software" else self._hardware_key(store, dev, with_tpm)
                dev.create(hw)
                key = DevicePublicKey.from_sec1(dev.signer.public_key, dev.curve)  # type: ignore[arg-type]
                try:
                    # `signet enroll`'s own path: evidence verified against the roots, the
                    # challenge checked and used up in the same transaction.
                    enroll(
                        store,
                        key,
                        dev.tier,
                        policy=TrustPolicy() if roots is None else roots.policy(),
                        evidence=None if hw is None else hw.evidence,
                        name=dev.name,
                    )
                except (StoreError, EvidenceRefused) as exc:
                    raise SimulationError(f"enrolling {dev.name}: {exc}") from exc
            if roots is not None:
                self.trust = roots.write()
        except BaseException:
            for dev in self.devices:
                dev.close()
            raise
        finally:
            store.close()

    def _hardware_key(self, store: Any, dev: VirtualDevice, with_tpm: bool) -> HardwareKey:
        """The device's key in its secure element, provisioned against a fresh challenge."""
        assert self.roots is not None
        challenge, _ = store.issue_challenge(CHALLENGE_TTL_MS)
        dev.dir.mkdir(parents=True, exist_ok=True)
        try:
            if with_tpm and dev.index % 2 == 1:
                return tpm2_key(dev.dir, self.roots, challenge)
            return atecc608_key(dev.dir, self.roots, challenge)
        except Exception as exc:
            raise SimulationError(f"{dev.name}: its secure element: {exc}") from exc

    def _schedule(self) -> None:
        p = self.params
        for o in p.outages:
            chosen = self.devices if o.devices is None else self.devices[: o.devices]
            for dev in chosen:
                dev.net.add_outage(self.t0 + o.at_s, self.t0 + o.at_s + o.duration_s)
                dev.outages.append({"at_s": o.at_s, "duration_s": o.duration_s})
            who = _names(chosen)
            self._notices.append(
                (
                    o.at_s,
                    lambda who=who, o=o: self.emit(
                        f"network outage: {who} lose their link for {o.duration_s:g} s"
                    ),
                )
            )
            self._notices.append(
                (o.at_s + o.duration_s, lambda who=who: self.emit(f"network back for {who}"))
            )
        # Reboots spread evenly over the middle 80 % of the run, devices picked at random.
        rng = random.Random(None if p.seed is None else p.seed + 1)
        for i in range(p.reboots):
            at = p.duration_s * (0.1 + 0.8 * (i + 1) / (p.reboots + 1))
            dev = rng.choice(self.devices)
            dev.reboot_at.append(self.t0 + at)
        for dev in self.devices:
            dev.reboot_at.sort()

    def run(
        self,
        hooks: Sequence[Hook] = (),
        progress: Callable[[Fleet, float], None] | None = None,
        progress_s: float = 5.0,
    ) -> bool:
        """Run for the duration, then drain; True if every device was fully acknowledged.

        hooks: (seconds after the start, callable) run once, in the fleet's thread,
        between rounds (a broker restart, injected traffic...).
        """
        p = self.params
        self.t0 = time.monotonic()
        self.started_ms = time.time_ns() // 1_000_000
        self._schedule()
        for dev in self.devices:
            dev.boot("power_on", self.t0)
        pending_hooks = sorted([*hooks, *self._notices], key=lambda h: h[0])
        end = self.t0 + p.duration_s
        next_progress = self.t0 + progress_s
        try:
            now = time.monotonic()
            while now < end:
                while pending_hooks and now >= self.t0 + pending_hooks[0][0]:
                    pending_hooks.pop(0)[1]()
                self._round(now, True)
                now = time.monotonic()
                if progress is not None and now >= next_progress:
                    progress(self, now - self.t0)
                    next_progress += progress_s
            for _at, hook in pending_hooks:  # hooks scheduled past the end still run
                hook()
            # Drain: no more sales; heartbeats go on until each device is fully acked.
            for dev in self.devices:
                dev.source.stop()
            deadline = time.monotonic() + p.drain_timeout_s
            while not all(d.done for d in self.devices) and time.monotonic() < deadline:
                self._round(time.monotonic(), False)
                for dev in self.devices:
                    if not dev.done and not dev.reboot_at and dev.drained():
                        dev.finish()
                now = time.monotonic()
                if progress is not None and now >= next_progress:
                    progress(self, now - self.t0)
                    next_progress += progress_s
            self.drained = all(d.done for d in self.devices)
        finally:
            for dev in self.devices:
                if not dev.done:
                    dev.finish()
                dev.close()
            self.ended_ms = time.time_ns() // 1_000_000
        return self.drained

    def _round(self, now: float, selling: bool) -> None:
        wait = _IDLE_S
        for dev in self.devices:
            wait = min(wait, dev.tick(now, selling))
        if wait > 0:
            time.sleep(wait)

    # -- results ----------------------------------------------------------------------------

    def totals(self) -> dict[str, Any]:
        signed = sum(len(d.records) for d in self.devices)
        acked = sum(1 for d in self.devices if d.stats.get("acked", 0) >= d.stats.get("last_n", 1))
        pending = sum(d.stats.get("pending", 0) for d in self.devices)
        online = sum(1 for d in self.devices if d.agent is not None and d.agent.link.connected)
        sales = sum(len(d.source.accepted) for d in self.devices)
        return {
            "signed": signed,
            "pending": pending,
            "fully_acked": acked,
            "online": online,
            "sales": sales,
            "reboots": sum(len(d.reboots) for d in self.devices),
        }

    def truth(self) -> dict[str, Any]:
        p = self.params
        devices = [d.truth(p.hb_tolerance) for d in self.devices]
        revenue: dict[str, dict[str, int]] = {}
        for d in devices:
            for cur, r in d["revenue"].items():
                t = revenue.setdefault(cur, {"amount": 0, "count": 0})
                t["amount"] += r["amount"]
                t["count"] += r["count"]
        return {
            "format": TRUTH_FORMAT,
            "started_ms": self.started_ms,
            "ended_ms": self.ended_ms,
            "params": {
                "devices": p.devices,
                "duration_s": p.duration_s,
                "rate_per_min": p.rate_per_min,
                "heartbeat_s": p.heartbeat_s,
                "outages": [str(o) for o in p.outages],
                "reboots": p.reboots,
                "reboot_down_s": p.reboot_down_s,
                "hb_tolerance": p.hb_tolerance,
                "broker": f"{p.broker[0]}:{p.broker[1]}",
                "db": str(p.db),
                "seed": p.seed,
            },
            "drained": self.drained,
            "totals": {
                "records": sum(d["records"] for d in devices),
                "revenue": dict(sorted(revenue.items())),
                "heartbeats": sum(d["heartbeats"] for d in devices),
                "up_ms": sum(d["uptime"]["up_ms"] for d in devices),
                "reboots": sum(len(d["reboots"]) for d in devices),
            },
            "devices": devices,
        }

    def write_truth(self) -> Path:
        path = self.params.out / "truth.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.truth(), indent=1) + "\n")
        tmp.replace(path)
        return path


# -- comparing with a report ----------------------------------------------------------------------


def compare(truth: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """Differences between the ground truth and a `signet report --format json` document.

    Revenue must match exactly (sum and count per device and currency). Uptime: the
    report's up_ms must equal the truth's, give or take the time it counted once for
    overlapping boots (overlap_ms, only non-zero with a stepped device clock).
    """
    problems: list[str] = []
    by_kid = {d["device"]: d for d in report["devices"]}
    for dev in truth["devices"]:
        got = by_kid.get(dev["kid"])
        if got is None:
            problems.append(f"{dev['name']}: not in the report")
            continue
        rev = {
            c["currency"]: {"amount": c["amount"], "count": c["count"]}
            for c in got["revenue"]["currencies"]
        }
        if rev != dev["revenue"]:
            problems.append(f"{dev['name']}: revenue {rev} in the report, {dev['revenue']} true")
        up = got["uptime"]
        if abs(up["up_ms"] - dev["uptime"]["up_ms"]) > up["overlap_ms"]:
            problems.append(
                f"{dev['name']}: up {up['up_ms']} ms in the report,"
                f" {dev['uptime']['up_ms']} ms by the rule"
            )
        if got["tier"] != dev["tier"]:
            problems.append(f"{dev['name']}: tier {got['tier']} in the report, {dev['tier']}")
    return problems


def revenue_totals(report: dict[str, Any], kids: Iterable[str]) -> dict[str, dict[str, int]]:
    wanted = set(kids)
    out: dict[str, dict[str, int]] = {}
    for d in report["devices"]:
        if d["device"] not in wanted:
            continue
        for c in d["revenue"]["currencies"]:
            t = out.setdefault(c["currency"], {"amount": 0, "count": 0})
            t["amount"] += c["amount"]
            t["count"] += c["count"]
    return dict(sorted(out.items()))


def stored_check(truth: dict[str, Any], db: Path | str) -> list[str]:
    """Every n each device signed is stored in the gateway's database, and the gateway's ack
    covers the device's last record with nothing missing: nothing lost."""
    from signet_gateway.store.sqlite import Store

    problems: list[str] = []
    with Store(db, readonly=True) as store:
        for dev in truth["devices"]:
            kid = dev["kid"]
            stored = {
                n for (n,) in store.conn.execute("SELECT n FROM records WHERE kid = ?", (kid,))
            }
            signed = {n for lo, hi in dev["signed_n"] for n in range(lo, hi + 1)}
            lost = signed - stored
            extra = stored - signed
            if lost:
                problems.append(f"{dev['name']}: {len(lost)} signed records not stored: "
                                f"{ranges(lost)[:5]}")  # fmt: skip
            if extra:
                problems.append(f"{dev['name']}: {len(extra)} stored records it never signed")
            if store.ack(kid) < dev["last_n"]:
                problems.append(
                    f"{dev['name']}: gateway ack {store.ack(kid)} < last record {dev['last_n']}"
                )
            if store.missing(kid):
                problems.append(f"{dev['name']}: gateway counts {store.missing(kid)} missing")
    return problems


def _names(devices: Sequence[VirtualDevice]) -> str:
    if len(devices) <= 2:
        return " and ".join(d.name for d in devices)
    return f"{devices[0].name}..{devices[-1].name}"


def fmt_money(amounts: dict[str, dict[str, int]]) -> str:
    return (
        ", ".join(
            f"{r['amount'] // 100}.{r['amount'] % 100:02d} {cur} ({counted(r['count'], 'sale')})"
            for cur, r in amounts.items()
        )
        or "none"
    )


def progress_line(fleet: Fleet, elapsed: float) -> str:
    t = fleet.totals()
    n = len(fleet.devices)
    return (
        f"  t={elapsed:4.0f}s  online {t['online']:>2}/{n}  signed {t['signed']:>5}"
        f"  waiting for ack {t['pending']:>4}  sales {t['sales']:>4}  reboots {t['reboots']}"
    )
