"""`signet demo`: the main demo. A secured broker, the gateway, a virtual fleet, attacks,
the report.

Zero manual steps, about a minute:

1. gateway.toml in the work directory, the fleet's keys enrolled in the gateway's database
   (two devices as hardware tier, their keys in an emulated ATECC608 and a swtpm when
   installed, enrolled on verified evidence; the rest software tier);
2. the broker's configuration written from that database by `signet broker config`'s code
   (tools/broker/: a TLS listener on loopback with a generated CA, one password account per
   machine and one for the gateway, ACLs so that no device can speak for another, anonymous
   access off) and a private Mosquitto started with it (tools/runners/mosquitto.py);
3. the gateway as a separate process on its own account: ``signet gateway run``;
4. a virtual fleet running the real agent code (tools/fleet/simulate.py), each device on its
   own account, with sales, heartbeats, a network outage on some devices, one
   crash-and-reboot, and the broker itself stopped and restarted mid-run;
5. an attacker mid-run (tools/fleet/adversary.py): clients without a valid account, refused
   at CONNECT; then one device's stolen account publishing another device's attacks
   (refused by the broker's ACL) and, on its own topics, forgeries, a replay, a record moved
   from the other device, garbage and oversized messages (refused by the gateway);
6. the fleet drains (every device acknowledged up to its last record), the gateway is
   stopped with SIGTERM (graceful);
7. the MCR report (``signet report`` table), what the broker and the gateway refused, and
   the report compared with the simulator's ground truth.

Exit 0 only if the revenue matches the ground truth exactly, uptime matches the rule,
every signed record is stored, every hostile message was refused by the layer expected
to refuse it (or classified) and the gateway stopped cleanly.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signet_gateway.mcr.display import counted
from signet_tools.broker.accounts import DEFAULT_GATEWAY_ACCOUNT
from signet_tools.broker.generate import (
    CONF,
    TLS_DIR,
    BrokerConfigError,
    BrokerOptions,
    write_broker_config,
)
from signet_tools.runners.gateway_process import (
    GatewayProcess,
    GatewayProcessError,
    write_gateway_config,
)
from signet_tools.runners.mosquitto import BrokerError, Mosquitto, free_port

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


def _acknowledged(dev: simulate.VirtualDevice) -> list[simulate.Signed] | None:
    """The device's acknowledged records if they hold a sale and a heartbeat (so that a
    replay is a duplicate of a stored record), else None."""
    acked = dev.stats.get("acked", 0)
    genuine = [r for r in dev.records if r.n <= acked]
    return genuine if {"rev", "hb"} <= {r.kind for r in genuine} else None


def pick_victim(
    fleet: simulate.Fleet, besides: simulate.VirtualDevice | None = None
) -> tuple[simulate.VirtualDevice, list[simulate.Signed]]:
    """A device other than `besides`, software tier if one qualifies, with an acknowledged
    sale and heartbeat, and those acknowledged records."""
    others = [d for d in fleet.devices if d is not besides]
    software = [d for d in others if d.tier == "software"]
    for dev in software + [d for d in others if d not in software]:
        genuine = _acknowledged(dev)
        if genuine is not None:
            return dev, genuine
    raise DemoError("no device has an acknowledged sale yet: is the gateway running?")


def attack_notice(intruders: int, thief: str, sent: int, victim: str) -> str:
    """The progress line the attack prints."""
    return (
        f"ATTACK: {counted(intruders, 'client')} without a valid account tried to connect;"
        f" with {thief}'s stolen account, {counted(sent, 'hostile message')} published"
        f" (victim {victim}; see the summary below)"
    )


def _reset(directory: Path) -> None:
    """Remove what an earlier demo left in the work directory (and only that)."""
    for name in ("broker", "broker-config", "fleet"):
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
    except (
        DemoError,
        BrokerError,
        BrokerConfigError,
        GatewayProcessError,
        simulate.SimulationError,
    ) as exc:
        print(f"signet: error: {exc}", file=sys.stderr)
        return 2


@dataclass
class AttackLog:
    """What the attacker tried and what the broker answered each time (in words)."""

    victim: str = ""  # device names, for people
    thief: str = ""
    victim_kid: str = ""
    thief_kid: str = ""
    intrusions: list[tuple[adversary.Intrusion, str]] = field(default_factory=list)
    published: list[tuple[adversary.Attack, str]] = field(default_factory=list)

    @property
    def attacks(self) -> list[adversary.Attack]:
        return [a for a, _ in self.published]


def _run(directory: Path, n_devices: int, duration: float, rate: float, seed: int | None) -> int:
    if n_devices < 2:
        raise DemoError("the demo needs at least 2 devices (one's stolen account attacks another)")
    directory.mkdir(parents=True, exist_ok=True)
    _reset(directory)
    started = time.monotonic()
    _say(f"Signet demo in {directory}: a secured broker, the gateway, {n_devices} virtual devices")
    _say("running the real agent code, an attacker with a stolen account, then the MCR report.")

    _step("1. Gateway configuration and enrollment")
    db = directory / "gateway.db"
    toml = directory / "gateway.toml"
    port = free_port()
    # Also creates the (reset) database, as an operator's `signet db init` does: neither
    # the gateway nor enrollment creates one. Written again once the broker has its accounts.
    write_gateway_config(toml, port, db, aggregate={"hb_tolerance": 0.1})
    config_dir = (directory / "broker-config").resolve()
    access = simulate.BrokerAccess(config_dir / TLS_DIR / "ca.pem", config_dir)
    params = simulate.FleetParams(
        devices=n_devices,
        duration_s=duration,
        broker=("127.0.0.1", port),
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
        access=access,
    )
    fleet = simulate.Fleet(params, events=_say)
    fleet.create()
    try:
        return _secured_run(directory, fleet, toml, started)
    finally:
        if not fleet.ended_ms:  # fleet.run() closes the devices' keys and files
            for dev in fleet.devices:
                dev.close()


def _secured_run(directory: Path, fleet: simulate.Fleet, toml: Path, started: float) -> int:
    params = fleet.params
    db, n_devices, duration = params.db, params.devices, params.duration_s
    assert params.access is not None
    access = params.access
    port = params.broker[1]
    _say(f"  {toml} written; database {db}")
    for dev in fleet.devices:
        extra = ""
        if dev.tier == "hardware":
            kind = "se-chain" if dev.key_kind == "atecc608" else "tpm2-certify"
            extra = f"  (key in {simulate.KEY_LABELS[dev.key_kind]}, evidence {kind} verified)"
        _say(f"  enrolled {dev.name}  {dev.kid}  {dev.curve:<9}  tier {dev.tier}{extra}")

    _step(f"2. The broker   (signet broker config --db {db} --out {directory / 'broker-config'})")
    written = write_broker_config(
        db, BrokerOptions(out=access.config_dir, port=port, bind="127.0.0.1", hosts=("127.0.0.1",))
    )
    if written.ca_file != access.ca:
        raise DemoError(f"the broker's CA is {written.ca_file}, not {access.ca}")
    gateway_mqtt = dict(
        client_id="signet-demo-gateway",
        username=DEFAULT_GATEWAY_ACCOUNT,
        password=access.password(DEFAULT_GATEWAY_ACCOUNT),
        tls_ca=str(access.ca),
    )
    # The hardware devices' test roots go into the gateway's [trust], as an operator's
    # manufacturer roots would: `signet devices --evidence` re-checks against them.
    write_gateway_config(
        toml, port, db, mqtt=gateway_mqtt, aggregate={"hb_tolerance": 0.1}, trust=fleet.trust
    )
    broker = Mosquitto(directory / "broker", conf=access.config_dir / CONF)
    gateway: GatewayProcess | None = None
    try:
        broker.start()
        _say(
            f"  mosquitto on 127.0.0.1:{broker.port}: TLS only (certificate from the generated"
            f" CA {access.ca.name}), anonymous refused, persistence on"
        )
        _say(
            f"  {len(written.accounts.devices)} device accounts (each machine's id, its own"
            f" password) and the gateway's ({DEFAULT_GATEWAY_ACCOUNT}); passwords in"
            f" {directory / 'broker-config' / 'credentials'}/ (mode 0600)"
        )
        _say(
            "  ACL: a device publishes only on its own signet/v1/<id>/rec and status and reads"
            " only its own ack; the gateway reads every rec and status and alone writes acks"
        )

        _step("3. Gateway process")
        gateway = GatewayProcess(toml, directory / "gateway.log")
        gateway.start(timeout=GATEWAY_START_S)
        _say(f"  signet gateway run --config {toml}   (log: {gateway.log})")
        _say(
            f"  account {DEFAULT_GATEWAY_ACCOUNT} over TLS; subscribed to signet/v1/+/rec,"
            " MQTT v5 persistent session, SQLite WAL"
        )

        _step(f"4. The fleet trades for {duration:g} s (progress every 5 s)")
        _say(
            f"  {n_devices} devices, each on its own account over TLS, heartbeat every"
            f" {params.heartbeat_s} s, about {params.rate_per_min:g} sales per device per"
            " minute in EUR and USD"
        )
        log = AttackLog()
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
            thief, stolen = pick_victim(fleet, besides=victim)
            log.victim, log.thief, log.victim_kid, log.thief_kid = (
                victim.name, thief.name, victim.kid, thief.kid
            )  # fmt: skip
            at = adversary.Broker("127.0.0.1", broker.port, access.ca)
            for intrusion in adversary.intrusions(thief.kid):
                log.intrusions.append((intrusion, adversary.try_intrusion(at, intrusion)))
            attacks = adversary.stolen_account_attacks(
                victim.kid, genuine, thief.kid, thief.curve, stolen
            )
            answers = adversary.publish_as(at, thief.kid, access.password(thief.kid), attacks)
            log.published.extend(zip(attacks, answers, strict=True))
            fleet.emit(attack_notice(len(log.intrusions), thief.name, len(attacks), victim.name))
            fleet.emit(
                f"{thief.name} pushed off the broker by its stolen account (one connection per"
                " account), reconnects and resends what was not acknowledged"
            )

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

        return _results(directory, db, truth, log, code, started)
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


def _broker_refusals(log: AttackLog) -> bool:
    """The broker's answers to the attacker: every intruder refused at CONNECT, every publish
    outside the stolen account's ACL refused in its PUBACK, the rest passed on."""
    _say(
        "  the broker (TLS, an account per machine, ACLs: `signet broker config`), before"
        " the gateway sees anything:"
    )
    ok = True
    if not log.intrusions and not log.published:
        _say("    nothing: the attack did not run   <-- expected the attack")
        return False
    refused = [(i, a) for i, a in log.intrusions if adversary.refused_answer(a)]
    answers = sorted({a for _, a in log.intrusions})
    _say(
        f"    refused at CONNECT   {len(refused):>3} of {len(log.intrusions)}   "
        + "; ".join(i.label for i, _ in log.intrusions)
        + f"   (CONNACK: {', '.join(answers)})"
    )
    for intrusion, answer in log.intrusions:
        if not adversary.refused_answer(answer):
            ok = False
            _say(f"    {intrusion.label}: {answer}   <-- expected refused at CONNECT")
    at_acl = [(a, answer) for a, answer in log.published if a.at_broker]
    denied = sum(answer == "Not authorized" for _, answer in at_acl)
    _say(
        f"    refused by its ACL   {denied:>3} of {len(at_acl)}   {log.thief}'s account"
        f" publishing on {log.victim}'s rec, status and ack topics and on a topic naming no device"
        " (PUBACK: Not authorized)"
    )
    passed = [(a, answer) for a, answer in log.published if not a.at_broker]
    through = sum(not adversary.refused_answer(answer) for _, answer in passed)
    _say(
        f"    passed to the gateway {through:>2} of {len(passed)}   {log.thief}'s account on"
        " its own topic: what a record says is not the broker's to judge"
    )
    for attack, answer in log.published:
        if attack.at_broker:
            want, good = "Not authorized", answer == "Not authorized"
        else:
            want, good = "accepted", not adversary.refused_answer(answer)
        if good:
            continue
        ok = False
        _say(f"    {attack.label}: the broker said {answer!r}   <-- expected {want}")
    return ok


def _gateway_findings(log: AttackLog, findings: dict[str, int]) -> bool:
    """The findings table against what the attacks that reached the gateway must produce."""
    reached = [a for a in log.attacks if not a.at_broker]
    expected = adversary.expected_counts(reached)
    _say(
        f"  the gateway (findings, whole fleet; what it refused came from {log.thief}'s"
        " account, on its own topic):"
    )
    ok = True
    notes = {
        "verified": "records stored as new (signature, schema, sequence rules passed)",
        "duplicate": "same n, same payload (a resend, or the injected replay): not counted again",
        "equivocation": "same n, different signed payload",
    }
    for finding in sorted(set(findings) | set(expected), key=lambda f: (f != "verified", f)):
        count = findings.get(finding, 0)
        want = expected.get(finding, 0)
        labels = sorted({a.label for a in reached if a.expect == finding})
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
        _say(f"    {finding:<24} {count:>6}   {note}{mark}")
    return ok


def _nothing_reached_the_victim(
    log: AttackLog, victim_findings: dict[str, int], quarantined: list[str]
) -> bool:
    """What the ACL refused never reached the gateway: no refusal counted for the victim,
    nothing quarantined but from the thief's topic; and every hostile message is accounted."""
    on_victim = sum(c for f, c in victim_findings.items() if f.startswith("refused:"))
    elsewhere = [t for t in quarantined if t.split("/")[2:3] != [log.thief_kid]]
    refused_by_gateway = sum(1 for a in log.attacks if a.expect.startswith("refused:"))
    ok = not on_victim and not elsewhere and len(quarantined) == refused_by_gateway
    if on_victim or elsewhere:
        _say(
            f"  REACHED THE GATEWAY: {on_victim} refusals counted for {log.victim},"
            f" {len(elsewhere)} quarantined messages not on {log.thief}'s topic   <-- expected 0"
        )
    else:
        _say(
            f"  nothing of the attack reached {log.victim}: no refusal counted for it, every"
            f" quarantined message ({len(quarantined)}) on {log.thief}'s own topic"
        )
    # The tally from what each layer said: the broker's CONNACKs and PUBACKs, the gateway's
    # quarantine (one entry per message it refused); the replay is a duplicate, not counted.
    at_connect = sum(adversary.refused_answer(answer) for _, answer in log.intrusions)
    at_acl = sum(a.at_broker and answer == "Not authorized" for a, answer in log.published)
    replays = sum(1 for a in log.attacks if a.expect == "duplicate")
    accounted = at_connect == len(log.intrusions) and (
        at_acl + len(quarantined) + replays == len(log.attacks)
    )
    ok &= accounted
    _say(
        ("  every hostile message accounted for: " if accounted else "  NOT ACCOUNTED FOR: ")
        + f"{at_connect} of {counted(len(log.intrusions), 'client')} refused at CONNECT;"
        f" of {len(log.attacks)} published, {at_acl} refused by the broker's ACL,"
        f" {len(quarantined)} refused by the gateway, {counted(replays, 'replay')} not"
        " counted again"
        + ("" if accounted else f"   <-- expected {refused_by_gateway} refused by the gateway")
    )
    _say(
        "  why both: the broker knows accounts and topics, not records; it keeps each account"
        " to its own topics and strangers out. On its own topic a stolen account publishes"
        " what it likes: only the gateway can tell a record from a forgery."
    )
    return ok


def _results(
    directory: Path,
    db: Path,
    truth: dict[str, Any],
    log: AttackLog,
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
        victim_findings = store.findings(log.victim_kid) if log.victim_kid else {}
        quarantined = [row.topic for row in store.quarantine(limit=1_000_000)]
    table = report_mod.render(result, "table")
    report = json.loads(report_mod.render(result, "json"))
    (directory / "report.txt").write_text(table)
    (directory / "report.json").write_text(json.dumps(report, indent=1) + "\n")

    _step(f"6. MCR report   (signet report --config {directory / 'gateway.toml'})")
    _say(table.rstrip())

    _step("7. What the broker and the gateway refused")
    ok = _broker_refusals(log)
    ok &= _gateway_findings(log, findings)
    ok &= _nothing_reached_the_victim(log, victim_findings, quarantined)

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
            " (by the broker or the gateway) or classified; nothing lost, nothing counted twice."
        )
        _say(f"Try: signet report --config {directory / 'gateway.toml'} --format json")
        _say(f"     {try_audit}")
        return 0
    _say(f"FAILED ({took:.0f} s): see above.")
    return 1
