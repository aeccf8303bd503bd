"""The virtual fleet's parts without a broker: parameters, the virtual network, the ground
truth's uptime rule (against docs/MCR.md's worked example), the report comparison, and the
hostile messages of tools/fleet/adversary.py against the gateway's own verifier."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest

from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet.signer import SoftwareSigner
from signet_gateway.ingest.wire import split_message
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.refusals import Refused
from signet_gateway.verify.verifier import Verifier
from signet_tools.fleet import adversary, hardware, simulate
from signet_tools.fleet.virtual_platform import LinkTransport, VirtualNet, VirtualPlatform

SIGNET = str(Path(sys.executable).parent / "signet")


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("20+10", simulate.OutageSpec(20.0, 10.0, None)),
        ("2.5+1.5:3", simulate.OutageSpec(2.5, 1.5, 3)),
        (" 0 + 4 : 1 ", simulate.OutageSpec(0.0, 4.0, 1)),
    ],
)
def test_outage_spec_parses(spec: str, want: simulate.OutageSpec) -> None:
    assert simulate.OutageSpec.parse(spec) == want


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("20", "expected AT\\+DURATION"),
        ("20-10", "expected AT\\+DURATION"),
        ("20+0", "duration must be > 0"),
        ("20+5:0", "device count must be >= 1"),
        ("a+b", "expected AT\\+DURATION"),
    ],
)
def test_outage_spec_refuses_nonsense(spec: str, message: str) -> None:
    with pytest.raises(simulate.SimulationError, match=message):
        simulate.OutageSpec.parse(spec)


def test_broker_address() -> None:
    assert simulate.parse_broker("127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert simulate.parse_broker("::1:8883") == ("::1", 8883)
    for bad in ("localhost", ":1883", "host:0", "host:99999", "host:x"):
        with pytest.raises(simulate.SimulationError, match="HOST:PORT"):
            simulate.parse_broker(bad)


def _params(tmp_path: Path, **kw: Any) -> simulate.FleetParams:
    base: dict[str, Any] = {
        "devices": 3,
        "duration_s": 10.0,
        "broker": ("127.0.0.1", 1883),
        "out": tmp_path / "fleet",
        "db": tmp_path / "gw.db",
    }
    return simulate.FleetParams(**{**base, **kw})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"devices": 0}, "--devices"),
        ({"duration_s": 0}, "--duration"),
        ({"rate_per_min": -1}, "--rate"),
        ({"reboots": -1}, "--reboots"),
        ({"hardware": 4}, "--hardware"),
        ({"outages": [simulate.OutageSpec(8, 2)]}, "must end before the run does"),
        ({"outages": [simulate.OutageSpec(1, 2, 4)]}, "only 3 devices"),
    ],
)
def test_fleet_params_checked(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(simulate.SimulationError, match=message):
        _params(tmp_path, **change).check()


def test_fleet_refuses_a_used_directory(tmp_path: Path) -> None:
    params = _params(tmp_path)
    params.out.mkdir()
    (params.out / "truth.json").write_text("{}")
    with pytest.raises(simulate.SimulationError, match="already holds a simulated fleet"):
        simulate.Fleet(params).create()


def test_fleet_refuses_a_missing_database_and_creates_nothing(tmp_path: Path) -> None:
    params = _params(tmp_path)
    with pytest.raises(simulate.SimulationError, match="signet db init"):
        simulate.Fleet(params).create()
    assert not params.db.exists() and not params.out.exists()


def test_a_second_fleet_on_one_database_is_refused_by_name(tmp_path: Path) -> None:
    from signet_gateway.store.sqlite import Store

    first = _params(tmp_path, devices=2)
    Store.create(first.db).close()
    simulate.Fleet(first).create()
    again = _params(tmp_path, devices=2, out=tmp_path / "fleet2")
    with pytest.raises(simulate.SimulationError, match="enrolling sim-01: the name 'sim-01' is"):
        simulate.Fleet(again).create()
    with Store(first.db, readonly=True) as store:
        assert len(store.devices()) == 2
    # With its own name prefix (`signet simulate --name-prefix`), a second fleet joins.
    other = _params(tmp_path, devices=2, out=tmp_path / "fleet3", name_prefix="site2")
    simulate.Fleet(other).create()
    with Store(first.db, readonly=True) as store:
        names = sorted(d.name or "" for d in store.devices())
    assert names == ["sim-01", "sim-02", "site2-01", "site2-02"]


def test_fleet_enrolls_every_device_with_its_tier(tmp_path: Path) -> None:
    from signet_gateway.store.sqlite import Store

    params = _params(tmp_path, devices=4, hardware=2)
    Store.create(params.db).close()  # `signet db init`: a simulation never creates one
    fleet = simulate.Fleet(params)
    fleet.create()
    try:
        with Store(params.db, readonly=True) as store:
            devices = {d.kid: d for d in store.devices()}
        assert set(devices) == {d.kid for d in fleet.devices}
        # Real evidence, verified at enrollment: a chip's certificate chain and its answer to
        # a challenge, and (swtpm installed) a TPM2_Certify by a certified AK.
        chip, second = (devices[d.kid] for d in fleet.devices[:2])
        assert chip.tier == "hardware" and chip.evidence_kind == "se-chain"
        want = "tpm2-certify" if hardware.tpm_available() else "se-chain"
        assert second.tier == "hardware" and second.evidence_kind == want
        assert b"SIMULATED" not in (chip.evidence or b"")
        assert fleet.devices[0].key_kind == "atecc608" and fleet.devices[0].hardware is not None
        assert fleet.devices[0].hardware.opened.counter is not None  # the lease bound to it
        assert all(devices[d.kid].tier == "software" for d in fleet.devices[2:])
        assert devices[fleet.devices[2].kid].curve == "secp256k1"  # both curves in a fleet
        assert all((d.dir / "device.key").stat().st_mode & 0o077 == 0 for d in fleet.devices[2:])
        # The roots to give the gateway's [trust]: written, and naming the test roots.
        assert fleet.trust["se_roots"] == [str(tmp_path / "fleet" / "trust" / "se-root.pem")]
        assert Path(fleet.trust["se_roots"][0]).read_bytes().startswith(b"-----BEGIN CERT")
    finally:
        for dev in fleet.devices:
            dev.close()


# -- the virtual network ----------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Inner:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *a: self.calls.append(name)


def test_link_transport_dies_like_a_socket_during_an_outage() -> None:
    clock = _Clock()
    net = VirtualNet(clock)
    net.add_outage(10.0, 15.0)
    inner = _Inner()
    link = LinkTransport(inner, net)
    platform = VirtualPlatform(net, "power_on")
    link.publish("t", b"x")
    assert platform.network_ready() and platform.sync_clock()
    clock.now = 10.0
    assert not platform.network_ready() and not platform.sync_clock()
    for call in (
        lambda: link.poll(),
        lambda: link.publish("t", b"x"),
        lambda: link.connect("w", b"o"),
    ):
        with pytest.raises(OSError, match="network down"):
            call()
    # The real connection is dropped without DISCONNECT (so the broker sends the will).
    assert "close" in inner.calls and "disconnect" not in inner.calls
    assert link.published == 1
    clock.now = 15.0
    link.connect("w", b"o")
    assert inner.calls[-1] == "connect" and platform.network_ready()


# -- ground truth -------------------------------------------------------------------------------


def _point(n: int, kind: str, b: int, u_s: float, iv_s: float | None = None) -> simulate.Signed:
    fields: dict[str, Any] = {"iv": int(iv_s * 1000), "st": "ok"} if iv_s else {"ls": 0}
    return simulate.Signed(n, kind, b, int(u_s * 1000), None, fields, b"")


def test_uptime_truth_follows_the_worked_example_of_mcr_md() -> None:
    # docs/MCR.md section 3: up = 60 + 66 + 300 + 60 s; 127 s is a gap beyond tolerance.
    records = [
        _point(1, "boot", 1, 0),
        _point(2, "hb", 1, 60, 60),
        _point(3, "hb", 1, 126, 60),
        _point(4, "hb", 1, 253, 60),
        _point(5, "hb", 1, 553, 300),
        simulate.Signed(6, "rev", 1, 600_000, None, {"am": 1, "cur": "EUR", "src": "x"}, b""),
        _point(7, "boot", 2, 0),
        _point(8, "hb", 2, 60, 60),
    ]
    truth = simulate.uptime_truth(reversed(records), 0.1)  # order of capture does not matter
    assert truth["up_ms"] == 486_000
    assert truth["up_intervals"] == [
        [1, 0, 60_000],
        [1, 60_000, 126_000],
        [1, 253_000, 553_000],
        [2, 0, 60_000],
    ]
    assert truth["down_gaps_within_boots"] == [[1, 126_000, 253_000]]
    # The boundary is exact: one ms more than iv * 1.1 is down.
    edge = [_point(1, "boot", 1, 0), _point(2, "hb", 1, 2.201, 2)]
    assert simulate.uptime_truth(edge, 0.1)["up_ms"] == 0
    edge[1] = _point(2, "hb", 1, 2.2, 2)
    assert simulate.uptime_truth(edge, 0.1)["up_ms"] == 2200


def test_ranges() -> None:
    assert simulate.ranges([3, 1, 2, 65, 66, 70]) == [[1, 3], [65, 66], [70, 70]]
    assert simulate.ranges([]) == []


def _report_and_truth() -> tuple[dict[str, Any], dict[str, Any]]:
    truth = {
        "devices": [
            {
                "name": "sim-01",
                "kid": "a" * 32,
                "tier": "software",
                "revenue": {"EUR": {"amount": 1250, "count": 2}},
                "uptime": {"up_ms": 10_000},
            }
        ]
    }
    report = {
        "devices": [
            {
                "device": "a" * 32,
                "tier": "software",
                "revenue": {
                    "currencies": [{"currency": "EUR", "amount": 1250, "count": 2, "days": 1}]
                },
                "uptime": {"up_ms": 10_000, "overlap_ms": 0},
            }
        ]
    }
    return truth, report


def test_compare_accepts_an_exact_report_and_names_every_difference() -> None:
    truth, report = _report_and_truth()
    assert simulate.compare(truth, report) == []
    off_by_one = copy.deepcopy(report)
    off_by_one["devices"][0]["revenue"]["currencies"][0]["amount"] = 1251
    assert "revenue" in simulate.compare(truth, off_by_one)[0]
    counted_twice = copy.deepcopy(report)
    counted_twice["devices"][0]["revenue"]["currencies"][0]["count"] = 3
    assert "revenue" in simulate.compare(truth, counted_twice)[0]
    uptime = copy.deepcopy(report)
    uptime["devices"][0]["uptime"]["up_ms"] = 10_001
    assert "up 10001 ms" in simulate.compare(truth, uptime)[0]
    uptime["devices"][0]["uptime"]["overlap_ms"] = 1  # counted once for overlapping boots
    assert simulate.compare(truth, uptime) == []
    missing = {"devices": []}
    assert simulate.compare(truth, missing) == ["sim-01: not in the report"]
    assert simulate.revenue_totals(report, ["a" * 32]) == {"EUR": {"amount": 1250, "count": 2}}


# -- hostile messages, checked against the gateway's own verifier ------------------------------


def _signed_records(signer: SoftwareSigner) -> list[simulate.Signed]:
    """A boot record, a heartbeat and a sale, chained, as a virtual device captures them."""
    builder = RecordBuilder(signer)
    records = []
    prev = GENESIS_HASH
    for n, (kind, fields) in enumerate(
        [("boot", {"rc": "power_on", "fw": "0.1.0", "ls": 0}),
         ("hb", {"iv": 2000, "st": "ok"}),
         ("rev", {"am": 250, "cur": "EUR", "src": "sim"})],
        start=1,
    ):  # fmt: skip
        payload, raw = builder.build(kind, n, 1, n * 1000, None, prev, fields)
        records.append(simulate.Signed(n, kind, 1, n * 1000, None, fields, bytes(raw)))
        prev = hashlib.sha256(payload).digest()
    return records


def _verifier(*signers: SoftwareSigner) -> Verifier:
    return Verifier({s.kid: DevicePublicKey.from_sec1(s.public_key, s.curve.name) for s in signers})


def _gateway_outcome(verifier: Verifier, attack: adversary.Attack) -> str:
    """What the gateway's verifier makes of an attack: refused:<reason>, or verified."""
    try:
        for raw in split_message(attack.payload):
            verifier.verify(raw, attack.topic.split("/")[2])
    except Refused as exc:
        return f"refused:{exc.reason}"
    return "verified"


def test_every_standard_attack_is_what_it_claims_to_be() -> None:
    victim = SoftwareSigner.generate("secp256k1")
    other = SoftwareSigner.generate("p256")
    verifier = _verifier(victim, other)
    records = _signed_records(victim)
    attacks = adversary.standard_attacks(
        victim.device_id, "secp256k1", records, other.device_id, flood=3
    )
    assert adversary.expected_counts(attacks)["refused:unknown_key"] == 3
    for attack in attacks:
        topic_kid = attack.topic.split("/")[2]
        if attack.expect == "refused:bad_topic":
            assert len(topic_kid) != 32
            continue
        try:
            elements = split_message(attack.payload)
            for raw in elements:
                verifier.verify(raw, topic_kid)
        except Refused as exc:
            assert f"refused:{exc.reason}" == attack.expect, attack.label
        else:
            assert attack.expect == "duplicate", attack.label
            assert attack.payload == records[2].raw
    twin = adversary.equivocation(victim, records[2])
    verified = verifier.verify(twin, victim.device_id)  # validly signed by the device's key
    assert verified.seq == 3 and verified.payload["am"] != 250
    assert cbor2.loads(twin).value[2] != cbor2.loads(records[2].raw).value[2]


def test_a_stolen_accounts_attacks_are_refused_by_the_layer_they_claim() -> None:
    """Those marked for the broker publish outside the thief's ACL (the file `signet broker
    config` writes); the others, on the thief's own topic, are refused by the gateway's
    verifier for the reason they name (the replay verifies: a duplicate)."""
    from signet_tools.broker.accounts import DeviceAccount
    from signet_tools.broker.mosquitto_conf import render_acl

    victim = SoftwareSigner.generate("p256")
    thief = SoftwareSigner.generate("secp256k1")
    acl = render_acl(
        "signet-gateway", (DeviceAccount(thief.device_id, (thief.device_id,), "thief"),)
    )
    granted = acl.split(f"user {thief.device_id}\n", 1)[1].splitlines()
    writable = {line.split()[-1] for line in granted if line.startswith("topic write ")}
    verifier = _verifier(victim, thief)
    attacks = adversary.stolen_account_attacks(
        victim.device_id,
        _signed_records(victim),
        thief.device_id,
        "secp256k1",
        _signed_records(thief),
    )
    at_broker = [a for a in attacks if a.at_broker]
    assert {a.topic for a in at_broker} == {
        f"signet/v1/{victim.device_id}/rec", f"signet/v1/{victim.device_id}/status",
        f"signet/v1/{victim.device_id}/ack", "signet/v1/not-a-device/rec",
    }  # fmt: skip
    for attack in attacks:
        assert (attack.topic in writable) != attack.at_broker, attack.label
        if not attack.at_broker:
            want = "verified" if attack.expect == "duplicate" else attack.expect
            assert _gateway_outcome(verifier, attack) == want, attack.label
    assert adversary.expected_counts(attacks) == {
        adversary.BROKER_ACL: 7, "refused:bad_signature": 2, "refused:high_s": 1,
        "duplicate": 1, "refused:kid_mismatch": 1, "refused:malformed": 2,
        "refused:too_large": 2,
    }  # fmt: skip
    assert [i.expect for i in adversary.intrusions(thief.device_id)] == [
        adversary.BROKER_CONNECT
    ] * 3


# -- the command line ---------------------------------------------------------------------------


def test_simulate_usage_errors_name_the_argument(tmp_path: Path) -> None:
    base = [SIGNET, "simulate", "--devices", "2", "--duration", "5", "--out", str(tmp_path / "o")]
    cases = [
        (["--broker", "nowhere", "--db", str(tmp_path / "x.db")], "--broker 'nowhere'"),
        (["--broker", "h:1", "--db", str(tmp_path / "x.db"), "--outage", "9+1"], "must end"),
        (["--broker", "h:1", "--gateway-config", str(tmp_path / "none.toml")], "cannot read"),
    ]
    for extra, message in cases:
        result = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and result.stderr.startswith("signet: error:")
