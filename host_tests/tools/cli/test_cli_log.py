"""`signet log checkpoint | checkpoints | proof | consistency` on a gateway database whose
records were stored through the writer's sequence rules (so they are in the log)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, write_config
from signet_gateway.ingest.sequencer import Findings, Sequencer
from signet_gateway.log import key as log_key
from signet_gateway.log.checkpoint import open_checkpoint
from signet_gateway.log.merkle import leaf_hash
from signet_gateway.log.tlog_proof import parse_tlog_proof
from signet_gateway.log.verification import verify_consistency, verify_inclusion
from signet_gateway.mcr.aggregate import day_of
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.verifier import Verifier
from signet_tools.cli.main import main

ORIGIN = "gw.test/signet"
T = 1_700_000_000_000


class Site:
    """A gateway.toml, its database with two devices, and its log key."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "gateway.db"
        self.config = write_config(tmp_path / "gateway.toml", 1883, self.db, log={"origin": ORIGIN})
        self.devs = [Dev(0), Dev(1)]
        with Store(self.db) as store:
            for d in self.devs:
                store.enroll(d.key, "software", name=f"dev{d.kid[:4]}")
        assert main(["gateway", "init-key", "--config", str(self.config)]) == 0
        self.verifier = log_key.verifier(log_key.load(tmp_path / "gateway-log.key"), ORIGIN)
        self.raws: dict[tuple[str, int], bytes] = {}

    def store(self, count: int) -> None:
        with Store(self.db) as store:
            seq = Sequencer(store.conn, Findings(), record_log=RecordLog(store.conn))
            verifier = Verifier(store.active_keys())
            with store.transaction():
                for _ in range(count):
                    for d in self.devs:
                        raw = d.make("hb")
                        self.raws[(d.kid, d.n)] = raw
                        seq.apply(verifier.verify(raw), T, day_of(T))
                seq.flush()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_checkpoint_signs_the_tree_and_proofs_check_against_it(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.store(5)
    code, note, _ = _run(capsys, "log", "checkpoint", "--config", str(site.config))
    assert code == 0
    first = open_checkpoint(note, [site.verifier], origin=ORIGIN).checkpoint
    assert first.size == 10
    # Unchanged tree: the same checkpoint again, nothing new stored.
    assert _run(capsys, "log", "checkpoint", "--config", str(site.config))[1] == note
    site.store(3)
    code, note2, _ = _run(capsys, "log", "checkpoint", "--config", str(site.config))
    second = open_checkpoint(note2, [site.verifier], origin=ORIGIN).checkpoint
    assert second.size == 16

    code, out, _ = _run(capsys, "log", "checkpoints", "--db", str(site.db))
    sizes = [int(line.split()[0]) for line in out.splitlines()]
    assert code == 0 and sizes == [10, 16]
    code, out, _ = _run(capsys, "log", "checkpoints", "--json", "--config", str(site.config))
    assert [json.loads(line)["note"] for line in out.splitlines()] == [note, note2]

    dev = site.devs[1]
    code, out, _ = _run(
        capsys, "log", "proof", "--db", str(site.db), "--device", dev.kid, "--n", "7"
    )
    assert code == 0
    proof = parse_tlog_proof(out.encode())
    assert proof.checkpoint.decode() == note2  # the latest by default
    assert proof.index == 13  # the 14th record stored (two devices, interleaved)
    verify_inclusion(leaf_hash(site.raws[(dev.kid, 7)]), 13, 16, proof.hashes, second.root)
    code, out, _ = _run(
        capsys, "log", "proof", "--db", str(site.db), "--device", dev.kid[:8], "--n", "2",
        "--size", "10",
    )  # fmt: skip
    proof = parse_tlog_proof(out.encode())
    assert proof.checkpoint.decode() == note and proof.index == 3
    verify_inclusion(leaf_hash(site.raws[(dev.kid, 2)]), 3, 10, proof.hashes, first.root)

    code, out, _ = _run(capsys, "log", "consistency", "--db", str(site.db), "--from", "10")
    hashes = [base64.b64decode(line) for line in out.splitlines()]
    verify_consistency(10, 16, first.root, second.root, hashes)
    code, out, _ = _run(
        capsys, "log", "consistency", "--db", str(site.db), "--from", "10", "--to", "16", "--json"
    )
    doc = json.loads(out)
    assert (doc["from"]["checkpoint"], doc["to"]["checkpoint"]) == (note, note2)
    assert [base64.b64decode(h) for h in doc["proof"]] == hashes


def test_each_refusal_is_one_line(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.store(2)
    kid = site.devs[0].kid
    cases = [
        (
            ["log", "proof", "--db", str(site.db), "--device", kid, "--n", "1"],
            "is in no checkpoint",
        ),
        (
            ["log", "proof", "--db", str(site.db), "--device", kid, "--n", "9"],
            "no stored record n=9",
        ),
        (["log", "proof", "--db", str(site.db), "--device", "nobody", "--n", "1"], "nobody"),
        (
            ["log", "consistency", "--db", str(site.db), "--from", "3"],
            "no stored checkpoint of size 3",
        ),
        (["log", "checkpoints", "--db", str(site.db) + ".missing"], "does not exist"),
    ]
    for argv, needle in cases:
        code, out, err = _run(capsys, *argv)
        assert (code, out) == (2, ""), argv
        assert err.count("\n") == 1 and err.startswith("signet: error: ") and needle in err, err
    os.chmod(site.config.parent / "gateway-log.key", 0o640)
    code, out, err = _run(capsys, "log", "checkpoint", "--config", str(site.config))
    assert code == 2 and "chmod 600" in err and err.count("\n") == 1
    with Store(site.db, readonly=True) as store:
        assert RecordLog(store.conn).checkpoints() == []  # nothing signed
