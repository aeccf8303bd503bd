"""End to end: a real Mosquitto (tools/runners/mosquitto.py), the gateway as a separate process
(`signet gateway run`), virtual devices running the real agent code (tools/fleet/simulate.py),
then the MCR report compared with the simulator's ground truth.

- the report equals the ground truth: revenue exactly, uptime by the documented rule;
- nothing lost, nothing counted twice through a Mosquitto restart, a gateway SIGKILL and
  restart, and device reboots, all mid-run;
- hostile traffic (forgeries, replays, a record on another device's topic, equivocation,
  garbage, oversized messages, an unknown device flooding) is refused or classified and
  counted by reason, and the good devices are unaffected;
- `signet demo` itself, shortened.

Every wait polls with a deadline; durations and heartbeats are short (1 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib

from signet_gateway.mcr import report as report_mod
from signet_gateway.store.sqlite import Store
from signet_tools.fleet import adversary, demo, simulate
from signet_tools.runners.gateway_process import SUBSCRIBED, GatewayProcess, write_gateway_config
from signet_tools.runners.mosquitto import Mosquitto

SIGNET = str(Path(sys.executable).parent / "signet")


@pytest.fixture
def gateway(tmp_path: Path, broker: Mosquitto) -> Iterator[GatewayProcess]:
    """Configured for the broker, not started (each test starts it when it needs it)."""
    toml = tmp_path / "gateway.toml"
    write_gateway_config(
        toml, broker.port, tmp_path / "gateway.db", aggregate={"hb_tolerance": 0.1}
    )
    process = GatewayProcess(toml, tmp_path / "gateway.log")
    yield process
    process.kill()


def _params(tmp_path: Path, broker: Mosquitto, **kw: Any) -> simulate.FleetParams:
    base: dict[str, Any] = {
        "devices": 4,
        "duration_s": 10.0,
        "broker": ("127.0.0.1", broker.port),
        "out": tmp_path / "fleet",
        "db": tmp_path / "gateway.db",
        "rate_per_min": 60.0,
        "heartbeat_s": 1,
        "seed": 4,
        "drain_timeout_s": 45.0,
    }
    return simulate.FleetParams(**{**base, **kw})


def _report(db: Path) -> dict[str, Any]:
    with Store(db, readonly=True) as store:
        result = report_mod.build_report(
            store.conn, device=None, period=report_mod.Period.parse(None, None),
            missing=store.missing,
        )  # fmt: skip
    return json.loads(report_mod.render(result, "json"))


def _assert_nothing_lost_nothing_doubled(truth: dict[str, Any], db: Path) -> dict[str, Any]:
    assert truth["drained"], "not every device was acknowledged up to its last record"
    assert simulate.stored_check(truth, db) == []
    report = _report(db)
    assert simulate.compare(truth, report) == []
    with Store(db, readonly=True) as store:
        for dev in truth["devices"]:
            # Each signed record stored as new exactly once: a record counted twice, or a
            # genuine record refused, would show here.
            assert store.findings(dev["kid"]).get("verified") == dev["records"], dev["name"]
    return report


@pytest.mark.timeout(120)
def test_report_equals_ground_truth(
    tmp_path: Path, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    """`signet simulate` against a running gateway (devices enrolled while it runs), then
    `signet report --format json` against truth.json."""
    gateway.start()
    out = tmp_path / "fleet"
    sim = subprocess.run(
        [SIGNET, "simulate", "--devices", "4", "--duration", "10", "--rate", "60",
         "--outage", "3+3:2", "--reboots", "1", "--heartbeat", "1", "--hardware", "1",
         "--seed", "11", "--broker", f"127.0.0.1:{broker.port}",
         "--gateway-config", str(gateway.config), "--out", str(out)],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stdout + sim.stderr + gateway.tail()
    assert "every device's journal is acknowledged" in sim.stdout
    assert gateway.stop() == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["format"] == "signet-sim-truth/1"
    rep = subprocess.run(
        [SIGNET, "report", "--config", str(gateway.config), "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    report = json.loads(rep.stdout)
    assert simulate.compare(truth, report) == []
    assert simulate.stored_check(truth, tmp_path / "gateway.db") == []
    # The run was not trivial: both currencies sold, one device rebooted, two lost their link.
    assert set(truth["totals"]["revenue"]) == {"EUR", "USD"}
    assert truth["totals"]["reboots"] == 1
    rebooted = [d for d in truth["devices"] if d["reboots"]]
    assert len(rebooted) == 1 and len(rebooted[0]["boots"]) == 2
    assert rebooted[0]["boots"][1]["rc"] == "wdt"
    assert sum(1 for d in truth["devices"] if d["outages"]) == 2
    by_kid = {d["device"]: d for d in report["devices"]}
    for dev in truth["devices"]:
        up = by_kid[dev["kid"]]["uptime"]
        assert up["up_ms"] == dev["uptime"]["up_ms"] > 0
        # The reboot's off time is down: the rebooted device's ratio is visibly lower.
        if dev["reboots"]:
            assert up["down_ms"] >= 1000 * dev["reboots"][0]["down_s"]
    assert by_kid[truth["devices"][0]["kid"]]["tier"] == "hardware"
    # peaq: trust level 2 for the chip-held key's events only (evidence verified at enrollment).
    events_file = tmp_path / "events.json"
    exp = subprocess.run(
        [SIGNET, "export", "peaq", "--config", str(gateway.config), "--out", str(events_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert exp.returncode == 0, exp.stderr
    doc = json.loads(events_file.read_text())
    events = doc["events"] if isinstance(doc, dict) else doc
    levels: dict[str, set[int]] = {}
    for e in events:
        levels.setdefault(e["machineId"], set()).add(e["trustLevel"])
    hardware_id = "0x" + truth["devices"][0]["kid"]  # machineId: "0x" + the machine's id
    assert levels.pop(hardware_id) == {2}, levels
    assert len(levels) == 3 and all(v == {0} for v in levels.values()), levels


@pytest.mark.timeout(150)
def test_nothing_lost_through_broker_restart_gateway_kill_and_reboots(
    tmp_path: Path, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    params = _params(tmp_path, broker, duration_s=14.0, reboots=2)
    fleet = simulate.Fleet(params)
    fleet.create()
    gateway.start()
    done: list[str] = []

    def broker_down() -> None:
        broker.stop()
        done.append("broker stopped")

    def broker_up() -> None:
        broker.start()
        done.append("broker started")

    def gateway_kill() -> None:
        gateway.kill()  # SIGKILL: no drain, no commit of what is in flight
        done.append("gateway killed")

    def gateway_restart() -> None:
        gateway.start(wait=False)
        done.append("gateway restarted")

    hooks = [(2.5, broker_down), (4.5, broker_up), (7.0, gateway_kill), (8.5, gateway_restart)]
    assert fleet.run(hooks)
    assert done == ["broker stopped", "broker started", "gateway killed", "gateway restarted"]
    gateway.wait_log(SUBSCRIBED, 30)
    assert gateway.stop() == 0
    truth = fleet.truth()
    assert truth["totals"]["reboots"] == 2
    assert all(d["agent"]["disconnects"] for d in truth["devices"])  # the broker went away
    _assert_nothing_lost_nothing_doubled(truth, params.db)
    log = gateway.log.read_text()
    assert log.count("subscribed to signet/v1/+/rec") >= 2


@pytest.mark.timeout(120)
def test_hostile_traffic_refused_and_counted_good_devices_unaffected(
    tmp_path: Path, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    params = _params(tmp_path, broker, devices=3, duration_s=8.0, hardware=1)
    fleet = simulate.Fleet(params)
    fleet.create()
    gateway.start()
    cloned = fleet.devices[0]  # its key "leaks": a second payload for an n it already used
    attacks: list[adversary.Attack] = []
    state: dict[str, Any] = {}

    def attack() -> None:
        victim, genuine = demo.pick_victim(fleet)
        other = next(d for d in fleet.devices if d is not victim)
        attacks.extend(
            adversary.standard_attacks(victim.kid, victim.curve, genuine, other.kid, flood=150)
        )
        acked = cloned.stats["acked"]
        original = next(r for r in reversed(cloned.records) if r.n <= acked)
        assert cloned.signer is not None
        twin = adversary.equivocation(cloned.signer, original)
        attacks.append(
            adversary.Attack("equivocation", adversary.rec_topic(cloned.kid), twin, "equivocation")
        )
        state.update(victim=victim, other=other, original=original)
        state["sent"] = adversary.publish(
            "127.0.0.1", broker.port, [(a.topic, a.payload) for a in attacks]
        )

    assert fleet.run([(5.0, attack)])
    assert state["sent"] == len(attacks)
    assert gateway.stop() == 0
    truth = fleet.truth()
    report = _assert_nothing_lost_nothing_doubled(truth, params.db)  # revenue exact, all acked

    victim, other = state["victim"], state["other"]
    expected: dict[str, dict[str, int]] = {}
    for a in attacks:
        kid = a.topic.split("/")[2] if a.attributed else ""
        expected.setdefault(kid, {})
        expected[kid][a.expect] = expected[kid].get(a.expect, 0) + 1
    with Store(params.db, readonly=True) as store:
        for kid in (victim.kid, other.kid, cloned.kid, ""):
            got = {
                f: c
                for f, c in store.findings(kid).items()
                if f.startswith("refused:") or f == "equivocation"
            }
            want = {f: c for f, c in expected.get(kid, {}).items() if f != "duplicate"}
            assert got == want, kid or "unattributed"
        assert store.findings(victim.kid).get("duplicate", 0) >= 1  # the replay
        refusals = sum(c for kid_counts in expected.values() for f, c in kid_counts.items()
                       if f.startswith("refused:"))  # fmt: skip
        assert store.quarantine_count() == refusals
        assert store.device(cloned.kid).flagged  # type: ignore[union-attr]
        (evidence,) = store.evidence(cloned.kid)
        assert evidence[0] == state["original"].n
        stored = store.record(cloned.kid, state["original"].n)
        assert stored is not None and stored.raw == state["original"].raw  # the genuine one kept

    by_kid = {d["device"]: d for d in report["devices"]}
    assert report["refused_unattributed"] == 151  # 150 unknown-key records + 1 bad topic
    assert by_kid[victim.kid]["integrity"]["refused"] == {
        "bad_signature": 2, "high_s": 1, "malformed": 2, "too_large": 2,
    }  # fmt: skip
    assert by_kid[other.kid]["integrity"]["refused"] == {"kid_mismatch": 1}
    flagged = by_kid[cloned.kid]
    assert flagged["flagged"] and flagged["integrity"]["equivocations"] == 1
    assert flagged["score"]["letter"] == "NR" and flagged["score"]["caps"]
    for dev in fleet.devices:
        if dev is not cloned:
            assert not by_kid[dev.kid]["flagged"]
            assert by_kid[dev.kid]["integrity"]["equivocations"] == 0


@pytest.mark.timeout(150)
def test_demo_shortened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative --dir, as `./run demo` gives (out/demo): every path the demo writes into
    # gateway.toml must still name the file from the config's own directory.
    monkeypatch.chdir(tmp_path)
    code = demo.run(Path("demo"), devices=3, duration_s=12.0, rate_per_min=60.0, seed=3)
    out = capsys.readouterr().out
    assert code == 0, out
    for text in (
        "BROKER DOWN",
        "broker back",
        "crashes (no clean shutdown",
        "ATTACK:",
        # The broker's refusals, counted from its CONNACKs and PUBACKs...
        "refused at CONNECT     3 of 3",
        "refused by its ACL     7 of 7",
        "passed to the gateway  9 of 9",
        # ...the gateway's, from its findings, and none on the victim's topics.
        "refused:bad_signature         2",
        "refused:kid_mismatch          1",
        "nothing of the attack reached",
        "every hostile message accounted for: 3 of 3 clients refused at CONNECT;",
        "of 16 published, 7 refused by the broker's ACL, 8 refused by the gateway",
        "pushed off the broker by its stolen account",
        "MATCH (exact, per device and currency)",
        "every one stored, nothing missing",
        "Signet MCR report",
        "== 9. An auditor re-checks one machine offline",
        "verified: every signature, the sequence and chain rules, every inclusion proof",
        "OK (",
    ):
        assert text in out
    assert "AUDIT FAILED" not in out
    bundles = list((tmp_path / "demo").glob("audit-*.bundle"))
    assert len(bundles) == 1 and f"signet audit verify {Path('demo') / bundles[0].name}" in out
    assert "MISMATCH" not in out and "<-- expected" not in out
    assert "refused:unknown_key" not in out and "refused:bad_topic" not in out  # no account
    truth = json.loads((tmp_path / "demo" / "fleet" / "truth.json").read_text())
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert simulate.compare(truth, report) == []
    # The broker ran on `signet broker config`'s files: TLS, accounts, ACLs, no anonymous;
    # the gateway on its own account over TLS (the devices' records all came through it).
    conf = (tmp_path / "demo" / "broker" / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "acl_file ", "password_file ", "cafile "):
        assert line in conf
    assert "allow_anonymous true" not in conf
    gateway = tomllib.loads((tmp_path / "demo" / "gateway.toml").read_text())["mqtt"]
    assert gateway["username"] == "signet-gateway" and gateway["tls_ca"].endswith("ca.pem")


def test_gateway_config_with_a_relative_database_path(tmp_path: Path, monkeypatch) -> None:
    """The demo passes paths relative to the working directory; the gateway must use that file."""
    from signet_gateway.config import load

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    toml = write_gateway_config(Path("out/gateway.toml"), 1883, Path("out/gateway.db"))
    assert load(toml).store.path == tmp_path / "out" / "gateway.db"
