"""`signet sign --out FILE` (tools/records/recordfile.py): a record is appended only to a file
that stays readable to the end, and never contradicts what the file holds. Each refusal
exits 2 with one line naming the reason and leaves the file byte for byte as it was."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from signet_tools.cli.main import main
from signet_tools.records import keygen


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "dev.key"
    keygen.generate("p256", path)
    return path


def sign(key: Path, out: Path, n: int, *more: str) -> list[str]:
    fields = more or ("--field", "ev=door_open")
    return ["sign", "--key", str(key), "--seq", str(n), "--kind", "evt", *fields, "--out", str(out)]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], out: Path) -> str:
    """Run argv, check it is refused (exit 2, one error line) and `out` is untouched."""
    before = out.read_bytes() if out.exists() else None
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("signet: error: ") and err.count("\n") == 1, err
    assert (out.read_bytes() if out.exists() else None) == before
    return err


def records_in(capsys: pytest.CaptureFixture[str], path: Path) -> list[dict]:
    capsys.readouterr()
    code = main(["inspect", str(path)])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 0, lines
    return lines


def test_appends_and_chains(key: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.cbor"
    assert main(sign(key, out, 1)) == 0
    assert main(sign(key, out, 2)) == 0
    first, second = records_in(capsys, out)
    assert (first["payload"]["n"], second["payload"]["n"]) == (1, 2)
    assert first["payload"]["p"] == "00" * 32 and second["payload"]["p"] != "00" * 32


def test_refuses_to_append_after_a_truncated_tail(key: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.cbor"
    assert main(sign(key, out, 1)) == 0
    assert main(sign(key, out, 2)) == 0
    whole = out.read_bytes()
    first_len = records_in(capsys, out)[0]["size"]
    out.write_bytes(whole[:-5])  # the second record cut short, as by a crash mid-write
    err = refused(capsys, sign(key, out, 3), out)
    assert "not a complete record" in err and f"head -c {first_len}" in err


def test_refuses_a_second_record_with_an_n_the_file_holds(
    key: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "r.cbor"
    assert main(sign(key, out, 1, "--field", "ev=door_open", "--time", "null")) == 0
    assert main(sign(key, out, 2)) == 0
    # A different record n=1: an equivocation made by our own tool.
    err = refused(capsys, sign(key, out, 1, "--field", "ev=door_closed"), out)
    assert "equivocation" in err and "next free n is 3" in err
    # The very same record again: a duplicate, not appended either.
    again = sign(key, out, 1, "--field", "ev=door_open", "--time", "null", "--prev", "genesis")
    err = refused(capsys, again, out)
    assert "already holds this record" in err
    # Another key may use n=1 in the same file.
    other = tmp_path / "other.key"
    keygen.generate("secp256k1", other)
    assert main(sign(other, out, 1)) == 0
    assert len(records_in(capsys, out)) == 3


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("pem", id="pem"),
        pytest.param(b'{"format": "signet-key/1"}\n', id="json"),
        pytest.param(b"hello\n", id="text"),
    ],
)
def test_refuses_a_file_that_is_not_a_record_file(
    key: Path, tmp_path: Path, capsys, content: bytes | str
) -> None:
    target = tmp_path / "target"
    target.write_bytes(Path(f"{key}.pub.pem").read_bytes() if content == "pem" else content)
    err = refused(capsys, sign(key, target, 1), target)
    assert "is not a Signet record file" in err


def test_refuses_a_missing_directory_a_directory_and_a_locked_file(
    key: Path, tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.cbor"
    err = refused(capsys, sign(key, missing, 1), missing)
    assert f"{missing.parent} does not exist" in err
    assert not missing.parent.exists()
    err = refused(capsys, sign(key, tmp_path, 1), tmp_path / "none")
    assert "is a directory" in err
    out = tmp_path / "r.cbor"
    assert main(sign(key, out, 1)) == 0
    with open(out, "rb") as holder:  # another `signet sign` in the middle of its append
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        err = refused(capsys, sign(key, out, 2), out)
    assert "being written by another program" in err
    assert main(sign(key, out, 2)) == 0


def test_a_record_refused_by_its_fields_creates_no_file(key: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.cbor"
    err = refused(capsys, sign(key, out, 1, "--field", "ev=Door Open"), out)
    assert "evt.ev" in err and not out.exists()
