"""`signet audit export` while the gateway runs and records arrive: each bundle verifies,
and a later bundle shows it extends an earlier one's checkpoint (given to `audit verify`
as a checkpoint the auditor kept). A real Mosquitto and gateway process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, enrolled_gateway
from signet_gateway.audit import bundle as bundle_format
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto

SIGNET = str(Path(sys.executable).parent / "signet")


def _signet(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNET, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.timeout(180)
def test_bundles_exported_while_records_arrive_verify_and_extend_each_other(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(i) for i in range(2)]
    cfg = enrolled_gateway(tmp_path, broker.port, devs, log={"checkpoint_interval_s": 1})
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port, "fleet")
    clients.append(client)
    records = {d.kid: d.chain(400) for d in devs}
    client.publish_all([(d.topic, records[d.kid][i]) for i in range(20) for d in devs])
    client.wait_acks({d.kid: 20 for d in devs})
    vkey = _signet("gateway", "key", "--config", cfg).stdout.strip()

    # The rest arrives in waves, each followed at once by an export: the gateway is storing
    # (and signing checkpoints every second) while the exports issue theirs.
    bundles = []
    for k, start in enumerate((20, 147, 274)):
        wave = [
            (d.topic, records[d.kid][i]) for i in range(start, min(start + 127, 400)) for d in devs
        ]
        client.publish_all(wave)  # the broker has them; the gateway is taking them in
        out = tmp_path / f"dev0-{k}.bundle"
        done = _signet("audit", "export", "--config", cfg, "--device", devs[0].kid,
                       "--out", out, "--consistency-all")  # fmt: skip
        assert done.returncode == 0, done.stderr
        bundles.append(out)
    counts = [len(bundle_format.decode(b.read_bytes()).records) for b in bundles]
    assert counts == sorted(counts) and counts[0] >= 20, counts
    client.wait_acks({d.kid: 400 for d in devs}, timeout=60)
    last = tmp_path / "dev0-last.bundle"
    done = _signet("audit", "export", "--config", cfg, "--device", devs[0].kid,
                   "--out", last, "--consistency-all")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(bundle_format.decode(last.read_bytes()).records) == 400
    held = []
    for k, path in enumerate(bundles):
        done = _signet("audit", "verify", path, "--gateway-key", vkey)
        assert done.returncode == 0, (k, done.stderr)
        note = tmp_path / f"held-{k}.checkpoint"
        note.write_bytes(bundle_format.decode(path.read_bytes()).checkpoint)
        held += ["--checkpoint", note]
    done = _signet("audit", "verify", last, "--gateway-key", vkey, *held)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("extended by the bundle's") + done.stdout.count("the same root") == 3
    assert gw.stop() == 0
