"""`signet demo`: the main demo. A broker, the gateway, a virtual fleet, attacks, the report.

Zero manual steps, about a minute:

1. a private Mosquitto on a free loopback port (tools/runners/mosquitto.py);
2. gateway.toml in the work directory, the fleet's keys enrolled in the gateway's database
   (two devices as hardware tier, their keys in an emulated ATECC608 and a swtpm when
   installed, enrolled on verified evidence; the rest software tier);
3. the gateway as a separate process: ``signet gateway run --config gateway.toml``;
4. a virtual fleet running the real agent code (tools/fleet/simulate.py) with sales, heartbeats,
   a network outage on some devices, one crash-and-reboot, and the broker itself stopped and
   restarted mid-run;
5. hostile traffic injected mid-run (tools/fleet/adversary.py): forgeries, a replay, a record
   moved to another device's topic, garbage, oversized messages, a bad topic and an unknown
   device flooding;
6. the fleet drains (every device acknowledged up to its last record), the gateway is
   stopped with SIGTERM (graceful);
7. the MCR report (``signet report`` table), what the gateway verified and refused by
   reason, and the report compared with the simulator's ground truth.

Exit 0 only if the revenue matches the ground truth exactly, uptime matches the rule,
every signed record is stored, every attack was refused or classified as expected and the
gateway stopped cleanly.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from signet_gateway.mcr.display import counted
from signet_tools.runners.gateway_process import (
    GatewayProcess,
    GatewayProcessError,
    write_gateway_config,
)
from signet_tools.runners.mosquitto import BrokerError, Mosquitto

from . import adversary, simulate

DEVICES = 12
DURATION_S = 50.0
GATEWAY_START_S = 20.0
GATEWAY_STOP_S = 30.0


class DemoError(Exception):
    pass


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(text: str) -> None:
    _say(f"\n== {text}")


def pick_victim(fleet: simulate.Fleet) -> tuple[simulate.VirtualDevice, list[simulate.Signed]]:
    """A software-tier device with an acknowledged sale and heartbeat (so the replay is a
    duplicate of a stored record), and those acknowledged records."""
    candidates = [d for d in fleet.devices if d.tier == "software"] or fleet.devices
    for dev in candidates:
        acked = dev.stats.get("acked", 0)
        genuine = [r for r in dev.records if r.n <= acked]
        if {"rev", "hb"} <= {r.kind for r in genuine}:
            return dev, genuine
    raise DemoError("no device has an acknowledged sale yet: is the gateway running?")


def attack_notice(sent: int, victim: str) -> str:
    """The progress line the attack prints."""
    return (
        f"ATTACK: {counted(sent, 'hostile message')} published on the broker"
        f" (victim {victim}; see the summary below)"
    )


def _reset(directory: Path) -> None:
    """Remove what an earlier demo left in the work directory (and only that)."""
    for name in ("broker", "fleet"):
        shutil.rmtree(directory / name, ignore_errors=True)
    for name in ("gateway.toml", "gateway.log", "report.json", "report.txt"):
        (directory / name).unlink(missing_ok=True)
    for db in directory.glob("gateway.db*"):
        db.unlink()
    for stale in ("records.cbor", "coffee-machine.key", "ev-charger.key", "stranger.key"):
        (directory / stale).unlink(missing_ok=True)  # the first demo's files
    shutil.rmtree(directory / "trusted", ignore_errors=True)


def run(
    directory: Path,
    *,
    devices: int = DEVICES,
    duration_s: float = DURATION_S,
    rate_per_min: float = 12.0,
    seed: int | None = None,
) -> int:
    """The demo in `directory` (reset first); 0 only if everything matched."""
    try:
        return _run(Path(directory), devices, duration_s, rate_per_min, seed)
    except (DemoError, BrokerError, GatewayProcessError, simulate.SimulationError) as exc:
        print(f"signet: error: {exc}", file=sys.stderr)
        return 2


def _run(directory: Path, n_devices: int, duration: float, rate: float, seed: int | None) -> int:
    if n_devices < 2:
        raise DemoError("the demo needs at least 2 devices (an attack moves a record between two)")
    directory.mkdir(parents=True, exist_ok=True)
    _reset(directory)
    started = time.monotonic()
    _say(f"Signet demo in {directory}: a broker, the gateway, {n_devices} virtual devices running")
    _say("the real agent code, an attacker on the broker, then the MCR report.")

    _step("1. Mosquitto")
    broker = Mosquitto(directory / "broker")
    gateway: GatewayProcess | None = None
    try:
        broker.start()
        _say(f"  mosquitto listening on 127.0.0.1:{broker.port} (persistence on)")

        _step("2. Gateway configuration and enrollment")
        db = directory / "gateway.db"
        toml = directory / "gateway.toml"
        # Also creates the (reset) database, as an operator's `signet db init` does: neither
        # the gateway nor enrollment creates one.
        write_gateway_config(
            toml,
            broker.port,
            db,
            mqtt={"client_id": "signet-demo-gateway"},
            aggregate={"hb_tolerance": 0.1},
        )
        params = simulate.FleetParams(
            devices=n_devices,
            duration_s=duration,
            broker=("127.0.0.1", broker.port),
            out=directory / "fleet",
            db=db,
            rate_per_min=rate,
            outages=[simulate.OutageSpec(duration * 0.15, duration * 0.2, max(1, n_devices // 3))],
            reboots=1,
            reboot_down_s=3.0,
            heartbeat_s=2,
            hb_tolerance=0.1,
            hardware=min(2, n_devices - 1),
            seed=seed,
            drain_timeout_s=60.0,
        )
        fleet = simulate.Fleet(params, events=_say)
        fleet.create()
        _say(f"  {toml} written; database {db}")
        # The hardware devices' test roots go into the gateway's [trust], as an operator's
        # manufacturer roots would: `signet devices --evidence` re-checks against them.
        write_gateway_config(
            toml,
            broker.port,
            db,
            mqtt={"client_id": "signet-demo-gateway"},
            aggregate={"hb_tolerance": 0.1},
            trust=fleet.trust,
        )
        for dev in fleet.devices:
            extra = ""
            if dev.tier == "hardware":
                kind = "se-chain" if dev.key_kind == "atecc608" else "tpm2-certify"
                extra = f"  (key in {simulate.KEY_LABELS[dev.key_kind]}, evidence {kind} verified)"
            _say(f"  enrolled {dev.name}  {dev.kid}  {dev.curve:<9}  tier {dev.tier}{extra}")

        _step("3. Gateway process")
        gateway = GatewayProcess(toml, directory / "gateway.log")
        gateway.start(timeout=GATEWAY_START_S)
        _say(f"  signet gateway run --config {toml}   (log: {gateway.log})")
        _say("  subscribed to signet/v1/+/rec, MQTT v5 persistent session, SQLite WAL")

        _step(f"4. The fleet trades for {duration:g} s (progress every 5 s)")
        _say(
            f"  {n_devices} devices, heartbeat every {params.heartbeat_s} s, about"
            f" {params.rate_per_min:g} sales per device per minute in EUR and USD"
        )
        attacks: list[adversary.Attack] = []
        sent = [0]
        broker_down = duration * 0.55
        broker_back = broker_down + max(3.0, duration * 0.1)

        def stop_broker() -> None:
            broker.stop()
            fleet.emit("BROKER DOWN: mosquitto stopped (devices keep signing into their journals)")

        def start_broker() -> None:
            broker.start()
            fleet.emit("broker back: devices and gateway reconnect, journals catch up in batches")

        def attack() -> None:
            victim, genuine = pick_victim(fleet)
            other = next(d for d in fleet.devices if d is not victim)
            attacks.extend(adversary.standard_attacks(victim.kid, victim.curve, genuine, other.kid))
            sent[0] = adversary.publish(
                "127.0.0.1", broker.port, [(a.topic, a.payload) for a in attacks]
            )
            fleet.emit(attack_notice(sent[0], victim.name))

        hooks = [
            (broker_down, stop_broker),
            (broker_back, start_broker),
            (min(duration - 0.5, max(duration * 0.8, broker_back + 2.0)), attack),
        ]
        drained = fleet.run(hooks, progress=lambda f, t: _say(simulate.progress_line(f, t)))
        truth_path = fleet.write_truth()
        truth = fleet.truth()
        if not drained:
            raise DemoError(
                "not every device was acknowledged in time; gateway log:\n" + gateway.tail()
            )
        _say(
            f"  trade over; every device's journal acknowledged up to its last record;"
            f" ground truth -> {truth_path}"
        )

        _step("5. Stopping the gateway (SIGTERM: drain, commit, acknowledge, disconnect)")
        code = gateway.stop(GATEWAY_STOP_S)
        gateway = None
        _say(f"  gateway exited with status {code}")
        broker.stop()

        return _results(directory, db, truth, attacks, sent[0], code, started)
    finally:
        if gateway is not None:
            gateway.kill()
        broker.stop()


def _audit(directory: Path, kid: str) -> tuple[bool, str]:
    """Export one machine's audit bundle from the gateway's database and verify it as an
    auditor would: with the log's verifier key only, no database (docs/AUDIT.md)."""
    from signet_gateway.audit import bundle as bundle_format
    from signet_gateway.audit.export import export_bundle
    from signet_gateway.audit.verify import default_jobs, verify_bundle
    from signet_gateway.config import load
    from signet_gateway.log import key as log_key
    from signet_gateway.store.sqlite import Store

    config = load(directory / "gateway.toml")
    signer, _ = log_key.open_signer(config.log)
    with Store(config.store.path) as store:
        exported = export_bundle(
            store.conn,
            signer,
            device=kid,
            max_future_skew_ms=config.time.max_future_skew_s * 1000,
        )
    data = bundle_format.encode(exported.bundle)
    path = directory / f"audit-{kid[:8]}.bundle"
    path.write_bytes(data)
    vkey = log_key.verifier(log_key.load(config.log.key), config.log.origin)
    _say(
        f"  {path.name}: {len(exported.bundle.records)} records with their inclusion proofs,"
        f" checkpoint of {exported.size} records, the signed report ({len(data)} bytes)"
    )
    _say(f"  the log's verifier key: {vkey.vkey}")
    outcome = verify_bundle(data, vkey, jobs=default_jobs())
    again = f"signet audit verify {path} --gateway-key '{vkey.vkey}'"
    if outcome.ok:
        _say(
            "  verified: every signature, the sequence and chain rules, every inclusion proof,"
            " the checkpoint's and the report's signatures, and every figure recomputed"
        )
        return True, again
    _say(f"  AUDIT FAILED: {outcome.failure.message if outcome.failure else '?'}")
    return False, again


def _results(
    directory: Path,
    db: Path,
    truth: dict[str, Any],
    attacks: list[adversary.Attack],
    sent: int,
    gateway_code: int,
    started: float,
) -> int:
    from signet_gateway.mcr import report as report_mod
    from signet_gateway.store.sqlite import Store

    with Store(db, readonly=True) as store:
        result = report_mod.build_report(
            store.conn, device=None, period=report_mod.Period.parse(None, None),
            missing=store.missing,
        )  # fmt: skip
        findings = store.findings()
    table = report_mod.render(result, "table")
    report = json.loads(report_mod.render(result, "json"))
    (directory / "report.txt").write_text(table)
    (directory / "report.json").write_text(json.dumps(report, indent=1) + "\n")

    _step(f"6. MCR report   (signet report --config {directory / 'gateway.toml'})")
    _say(table.rstrip())

    _step("7. What the gateway verified and refused (findings, whole fleet)")
    expected = adversary.expected_counts(attacks)
    ok = True
    notes = {
        "verified": "records stored as new (signature, schema, sequence rules passed)",
        "duplicate": "same n, same payload (a resend, or the injected replay): not counted again",
        "equivocation": "same n, different signed payload",
    }
    for finding in sorted(set(findings) | set(expected), key=lambda f: (f != "verified", f)):
        count = findings.get(finding, 0)
        want = expected.get(finding, 0)
        labels = sorted({a.label for a in attacks if a.expect == finding})
        note = notes.get(finding) or "; ".join(labels)
        if finding.startswith("refused:"):
            good = count == want  # nothing genuine is ever refused: only the injected items
            mark = "" if good else f"   <-- expected {want}"
        elif finding == "duplicate":
            good = count >= want
            mark = "" if good else f"   <-- expected at least {want}"
        else:
            good = finding == "verified" or want == count
            mark = ""
        ok &= good
        _say(f"  {finding:<24} {count:>6}   {note}{mark}")
    if sent != len(attacks):
        ok = False
        _say(f"  only {sent} of {len(attacks)} hostile messages reached the broker")

    _step("8. Report vs the simulator's ground truth")
    kids = [d["kid"] for d in truth["devices"]]
    got = simulate.revenue_totals(report, kids)
    want_rev = truth["totals"]["revenue"]
    rev_ok = got == want_rev
    _say(
        f"  revenue  report {simulate.fmt_money(got)}\n"
        f"           truth  {simulate.fmt_money(want_rev)}   "
        + ("MATCH (exact, per device and currency)" if rev_ok else "MISMATCH")
    )
    problems = simulate.compare(truth, report)
    up_report = sum(d["uptime"]["up_ms"] for d in report["devices"] if d["device"] in kids)
    up_truth = truth["totals"]["up_ms"]
    up_ok = not any(": up " in p for p in problems)
    _say(
        f"  uptime   report up {up_report / 1000:.3f} s in all, the rule applied to the signed"
        f" heartbeats {up_truth / 1000:.3f} s   " + ("MATCH" if up_ok else "MISMATCH")
    )
    lost = simulate.stored_check(truth, db)
    records = truth["totals"]["records"]
    _say(
        f"  records  {records} signed by the fleet, "
        + (
            "every one stored, nothing missing, every ack up to the last record"
            if not lost
            else f"PROBLEMS: {'; '.join(lost[:3])}"
        )
    )
    for p in problems:
        _say(f"  MISMATCH {p}")
    ok &= rev_ok and not problems and not lost and gateway_code == 0

    _step("9. An auditor re-checks one machine offline (signet audit export, signet audit verify)")
    audited, try_audit = _audit(directory, truth["devices"][0]["kid"])
    ok &= audited
    if gateway_code != 0:
        _say(f"  the gateway exited with status {gateway_code} (log: {directory / 'gateway.log'})")
    _say()
    took = time.monotonic() - started
    if ok:
        _say(
            f"OK ({took:.0f} s): the report equals the ground truth; every attack was refused"
            " or classified; nothing lost, nothing counted twice."
        )
        _say(f"Try: signet report --config {directory / 'gateway.toml'} --format json")
        _say(f"     {try_audit}")
        return 0
    _say(f"FAILED ({took:.0f} s): see above.")
    return 1
