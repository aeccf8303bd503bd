"""The `signet` command line, run as a user runs it (the installed console script)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization

SIGNET = str(Path(sys.executable).parent / "signet")


def signet(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNET, *map(str, args)],
        capture_output=True,
        text=stdin is None,
        input=stdin,
        timeout=120,
    )


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "dev.key"
    result = signet("keygen", "--out", key)
    assert result.returncode == 0, result.stderr
    device_id = result.stdout.split()[2]
    return key, device_id


def _sign(key: Path, out: Path, n: int, kind: str, *fields: str) -> subprocess.CompletedProcess:
    args: list[str | Path] = ["sign", "--key", key, "--seq", str(n), "--kind", kind, "--out", out]
    for f in fields:
        args += ["--field", f]
    return signet(*args)


def test_keygen_files_permissions_and_device_id(keyed: tuple[Path, str]) -> None:
    key, device_id = keyed
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    doc = json.loads(key.read_text())
    assert doc["format"] == "signet-key/1" and doc["curve"] == "p256"
    assert doc["kid"] == device_id
    pem = key.with_name("dev.key.pub.pem").read_bytes()
    public = serialization.load_pem_public_key(pem)
    compressed = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    assert hashlib.sha256(compressed).digest()[:16].hex() == device_id


def test_public_key_is_readable_by_openssl(keyed: tuple[Path, str]) -> None:
    key, _ = keyed
    openssl = shutil.which("openssl")
    assert openssl, "openssl is installed by the README test command"
    result = subprocess.run(
        [openssl, "pkey", "-pubin", "-in", f"{key}.pub.pem", "-noout", "-text"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "prime256v1" in result.stdout or "P-256" in result.stdout


def test_keygen_refuses_to_overwrite(keyed: tuple[Path, str]) -> None:
    key, _ = keyed
    before = key.read_bytes()
    result = signet("keygen", "--out", key)
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr
    assert key.read_bytes() == before
    assert signet("keygen", "--out", key, "--force").returncode == 0
    assert key.read_bytes() != before


def test_sign_chains_and_verify_accepts(keyed: tuple[Path, str], tmp_path: Path) -> None:
    key, device_id = keyed
    out = tmp_path / "records.cbor"
    assert _sign(key, out, 1, "boot", "rc=power_on", "fw=0.1.0", "ls=0").returncode == 0
    assert _sign(key, out, 2, "rev", "am=250", "cur=EUR", "src=pulse").returncode == 0
    assert _sign(key, out, 3, "hb", "iv=60000", "st=ok").returncode == 0
    lines = [json.loads(x) for x in signet("inspect", out).stdout.splitlines()]
    assert [x["payload"]["n"] for x in lines] == [1, 2, 3]
    assert all(x["device_id"] == device_id for x in lines)
    assert lines[1]["payload"]["am"] == 250 and lines[1]["alg"] == "ES256"
    # The chain: each "p" is the SHA-256 of the previous payload.
    assert lines[0]["payload"]["p"] == "00" * 32
    for before, after in itertools.pairwise(lines):
        expected = hashlib.sha256(bytes.fromhex(before["payload_hex"])).hexdigest()
        assert after["payload"]["p"] == expected
    result = signet("verify", out, "--pubkey", f"{key}.pub.pem")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 records: 3 valid, 0 refused" in result.stdout
    verdicts = [
        json.loads(x)
        for x in signet("verify", out, "--key-dir", tmp_path, "--json").stdout.splitlines()
    ]
    assert [(v["seq"], v["verdict"], v["kind"]) for v in verdicts] == [
        (1, "valid", "boot"),
        (2, "valid", "rev"),
        (3, "valid", "hb"),
    ]


def test_sign_refuses_bad_fields_with_specific_errors(
    keyed: tuple[Path, str], tmp_path: Path
) -> None:
    key, _ = keyed
    out = tmp_path / "r.cbor"
    cases = {
        ("am=2.50", "cur=EUR", "src=pulse"): "whole number of minor currency units",
        ("am=250", "cur=euro", "src=pulse"): "rev.cur",
        ("am=250", "src=pulse"): "rev.cur: is required",
        ("am=250", "cur=EUR", "src=pulse", "tip=5"): "rev.tip: unknown field",
    }
    for fields, message in cases.items():
        result = _sign(key, out, 1, "rev", *fields)
        assert result.returncode == 2
        assert message in result.stderr, result.stderr
    assert not out.exists()  # nothing half-written


def test_sign_to_stdout_hex_and_binary(keyed: tuple[Path, str]) -> None:
    key, _ = keyed
    args = ["sign", "--key", str(key), "--seq", "1", "--kind", "evt", "--field", "ev=door_open"]
    args += ["--time", "null"]
    hexed = signet(*args, "--hex")
    assert hexed.returncode == 0
    record = bytes.fromhex(hexed.stdout.strip())
    assert cbor2.loads(record).tag == 18
    binary = subprocess.run([SIGNET, *args], capture_output=True, timeout=60)
    assert binary.stdout == record  # deterministic signature: same bytes


def test_verify_refuses_tampered_and_foreign_records(
    keyed: tuple[Path, str], tmp_path: Path
) -> None:
    key, _ = keyed
    other = tmp_path / "other.key"
    assert signet("keygen", "--out", other, "--curve", "secp256k1").returncode == 0
    out = tmp_path / "mixed.cbor"
    assert _sign(key, out, 1, "rev", "am=250", "cur=EUR", "src=pulse").returncode == 0
    assert _sign(other, out, 1, "hb", "iv=1000", "st=ok").returncode == 0
    data = bytearray(out.read_bytes())
    # Flip one byte of the first record's signature.
    first_len = len(cbor2.dumps(cbor2.loads(bytes(data))))
    data[first_len - 1] ^= 0x01
    tampered = tmp_path / "tampered.cbor"
    tampered.write_bytes(bytes(data) + b"\xd2\x84\x43")  # plus a truncated third record
    result = signet("verify", tampered, "--pubkey", f"{key}.pub.pem", "--json")
    assert result.returncode == 1
    verdicts = [json.loads(x) for x in result.stdout.splitlines()]
    assert [v["reason"] for v in verdicts] == ["bad_signature", "kid_mismatch", "malformed"]
    assert verdicts[0]["seq"] == 1  # shown to help find the record, not trusted
    assert "3 records: 0 valid, 3 refused" in result.stderr


def test_verify_configuration_errors(keyed: tuple[Path, str], tmp_path: Path) -> None:
    key, _ = keyed
    out = tmp_path / "r.cbor"
    assert _sign(key, out, 1, "hb", "iv=1000", "st=ok").returncode == 0
    # A public key whose point is not on the curve: a clear error, exit 2.
    good = serialization.load_pem_public_key(Path(f"{key}.pub.pem").read_bytes())
    der = bytearray(
        good.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    der[-1] ^= 0x01  # y no longer matches x
    import base64

    bad_pem = tmp_path / "keys" / "bad.pem"
    bad_pem.parent.mkdir()
    bad_pem.write_text(
        "-----BEGIN PUBLIC KEY-----\n"
        + base64.encodebytes(bytes(der)).decode()
        + "-----END PUBLIC KEY-----\n"
    )
    result = signet("verify", out, "--key-dir", bad_pem.parent)
    assert result.returncode == 2 and "bad.pem" in result.stderr
    result = signet("verify", tmp_path / "missing.cbor", "--pubkey", f"{key}.pub.pem")
    assert result.returncode == 2 and "cannot read" in result.stderr
    empty = tmp_path / "empty.cbor"
    empty.write_bytes(b"")
    result = signet("verify", empty, "--pubkey", f"{key}.pub.pem")
    assert result.returncode == 1 and "no records" in result.stderr


def test_openssl_verifies_a_firmware_record(keyed: tuple[Path, str], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    key, _ = keyed
    record = bytes.fromhex(
        signet(
            "sign",
            "--key",
            key,
            "--seq",
            "7",
            "--kind",
            "rev",
            "--field",
            "am=990",
            "--field",
            "cur=USD",
            "--field",
            "src=local",
            "--hex",
        ).stdout
    )
    protected, _, payload, sig = cbor2.loads(record).value
    (tmp_path / "tbs.bin").write_bytes(cbor2.dumps(["Signature1", protected, b"", payload]))
    (tmp_path / "sig.der").write_bytes(
        encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    )
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            f"{key}.pub.pem",
            "-signature",
            str(tmp_path / "sig.der"),
            str(tmp_path / "tbs.bin"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "Verified OK", result.stdout + result.stderr


def test_inspect_reports_malformed_items_and_exits_1(
    keyed: tuple[Path, str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.cbor"
    junk.write_bytes(b"\x01" + b"\xd2\x84\x41")
    result = signet("inspect", junk)
    assert result.returncode == 1 and "2 malformed item(s)" in result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert lines[0]["error"] == "bad_tag" or lines[0]["error"] == "malformed"
    assert lines[1]["error"] == "malformed" and lines[1]["offset"] == 1
    key, _ = keyed
    good = tmp_path / "good.cbor"
    assert _sign(key, good, 1, "hb", "iv=1000", "st=ok").returncode == 0
    assert signet("inspect", good).returncode == 0
    good.write_bytes(good.read_bytes()[:-1])
    assert signet("inspect", good).returncode == 1


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    result = signet("--version")
    assert result.returncode == 0
    assert result.stdout == f"signet {version('signet')}\n"


def test_sign_refuses_to_write_binary_to_a_terminal(keyed: tuple[Path, str]) -> None:
    import pty

    key, _ = keyed
    argv = [SIGNET, "sign", "--key", str(key), "--seq", "1", "--kind", "evt", "--field", "ev=x"]
    host, terminal = pty.openpty()
    try:
        result = subprocess.run(argv, stdout=terminal, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(terminal)
        os.close(host)
    assert result.returncode == 2
    assert result.stderr.decode().startswith("signet: error: refusing to write a binary record")


def test_keygen_refuses_an_empty_or_directory_out(tmp_path: Path) -> None:
    for out in ("", " "):
        result = signet("keygen", "--out", out)
        assert result.returncode == 2 and "--out: must not be empty" in result.stderr
    result = signet("keygen", "--out", tmp_path)
    assert result.returncode == 2 and f"{tmp_path} is a directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bench_commands_print_their_figures() -> None:
    result = signet("bench", "sign", "--count", "5")
    assert result.returncode == 0, result.stderr
    for text in ("ES256 ", "ES256K", "ratio", "peak heap during one ES256 signature"):
        assert text in result.stdout
    result = signet("bench", "verify", "--seconds", "0.3")
    assert result.returncode == 0, result.stderr
    assert "records/s" in result.stdout and "ratio" in result.stdout


def test_help_lists_commands() -> None:
    result = signet("--help")
    for cmd in (
        "keygen",
        "sign",
        "inspect",
        "verify",
        "bench",
        "demo",
        "agent",
        "device",
        "gateway",
        "enroll",
        "devices",
        "revoke",
        "report",
        "export",
        "simulate",
    ):
        assert cmd in result.stdout
    assert os.access(SIGNET, os.X_OK)


def test_counts_of_one_take_the_singular(keyed: tuple[Path, str], tmp_path: Path) -> None:
    key, _ = keyed
    out = tmp_path / "one.cbor"
    assert _sign(key, out, 1, "boot", "rc=power_on", "fw=0.1.0", "ls=0").returncode == 0
    result = signet("verify", out, "--pubkey", f"{key}.pub.pem")
    assert "1 record: 1 valid, 0 refused" in result.stdout, result.stdout
    db = tmp_path / "gw.db"
    assert signet("db", "init", "--db", db).returncode == 0
    assert (
        signet("enroll", "--db", db, "--pubkey", f"{key}.pub.pem", "--tier", "software").returncode
        == 0
    )
    listed = signet("devices", "--db", db)
    assert f"1 device in {db}" in listed.stderr, listed.stderr
