"""The log's signing key (gateway/log/key.py), gateway.toml [log], and `signet gateway
init-key` / `signet gateway key`: mode 0600 from the first byte, never overwritten unless
asked, refused when others may read it, exported as a C2SP verifier key and as PEM."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_public_key,
)

from signet_gateway.config import ConfigError, parse
from signet_gateway.log import key as log_key
from signet_gateway.log.checkpoint import CheckpointSigner, open_checkpoint
from signet_gateway.log.note import NoteError, Verifier, check_key_name, open_note, sign
from signet_tools.cli.main import main

ORIGIN = "gw.example/signet"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the key file ------------------------------------------------------------------------------


def test_the_key_file_is_mode_0600_from_its_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the umask, the file never exists with a wider mode: the mode of the file
    being written is recorded when its bytes are flushed, before it gets its name."""
    seen: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        st_mode = os.fstat(fd).st_mode
        if stat.S_ISREG(st_mode):
            seen.append(stat.S_IMODE(st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    old = os.umask(0)
    try:
        path = tmp_path / "keys" / "log.key"
        log_key.save(path, log_key.generate())
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert _mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    assert [p.name for p in path.parent.iterdir()] == ["log.key"]  # no temporary file left


def test_an_existing_key_is_never_overwritten_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    first = log_key.generate()
    log_key.save(path, first)
    before = path.read_bytes()
    with pytest.raises(log_key.KeyFileError, match="exists; refusing to overwrite the log key"):
        log_key.save(path, log_key.generate())
    assert path.read_bytes() == before
    link = tmp_path / "dangling.key"
    link.symlink_to(tmp_path / "nowhere")  # a name that is taken, even if it points nowhere
    with pytest.raises(log_key.KeyFileError, match="exists"):
        log_key.save(link, log_key.generate())
    with pytest.raises(log_key.KeyFileError, match="is a directory"):
        log_key.save(tmp_path, log_key.generate())
    second = log_key.generate()
    log_key.save(path, second, force=True)
    assert path.read_bytes() != before and _mode(path) == 0o600
    assert log_key.verifier(log_key.load(path), ORIGIN) == log_key.verifier(second, ORIGIN)


def test_a_key_that_appears_while_writing_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.key"
    real_link = os.link

    def link(src: str, dst: str) -> None:
        Path(dst).write_text("another process's key")  # the race: it lands first
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(log_key.KeyFileError, match="appeared while writing"):
        log_key.save(path, log_key.generate())
    assert path.read_text() == "another process's key"
    assert [p.name for p in tmp_path.iterdir()] == ["log.key"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o610, 0o601])
def test_a_key_others_may_access_is_refused_with_the_chmod_hint(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "log.key"
    log_key.save(path, log_key.generate())
    os.chmod(path, mode)
    with pytest.raises(log_key.KeyFileError) as refused:
        log_key.load(path)
    assert str(refused.value) == (
        f"log.key: {path} is accessible by group/others (mode {mode:04o}); the private key must"
        f" be private: chmod 600 {path}"
    )


def _write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is not a PEM private key"),
        (b"not a key\n", "is not a PEM private key"),
        (b"x" * 20_000, "is not a key file"),
        (
            Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
            ),
            "is encrypted",
        ),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            "is an EC secp256r1 key; the log key is Ed25519",
        ),
        (
            rsa.generate_private_key(65537, 1024).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            "is an RSA-1024 key; the log key is Ed25519",
        ),
    ],
    ids=["empty", "text", "huge", "encrypted", "p256", "rsa"],
)
def test_a_file_that_is_not_an_ed25519_key_is_refused(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = _write_private(tmp_path / "log.key", content)
    with pytest.raises(log_key.KeyFileError) as refused:
        log_key.load(path)
    assert reason in str(refused.value) and str(refused.value).startswith("log.key: ")


def test_a_missing_key_names_the_command_that_creates_it(tmp_path: Path) -> None:
    with pytest.raises(log_key.KeyFileError, match="create one: signet gateway init-key"):
        log_key.load(tmp_path / "none.key")
    with pytest.raises(log_key.KeyFileError, match="not a regular file"):
        log_key.load(tmp_path)


def test_the_exported_public_keys_verify_what_the_loaded_key_signs(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    log_key.save(path, log_key.generate())
    private = log_key.load(path)
    public_pem = log_key.save_public(path, private)
    assert public_pem == tmp_path / "log.key.pub.pem" and _mode(public_pem) == 0o644
    vkey = log_key.verifier(private, ORIGIN).vkey
    name, key_id, _ = vkey.split("+", 2)
    assert name == ORIGIN and len(key_id) == 8
    signed = sign("hello\n", log_key.signer(private, ORIGIN))
    assert open_note(signed, [Verifier.from_vkey(vkey)]).text == "hello\n"
    from_pem = Verifier.from_public_key(ORIGIN, load_pem_public_key(public_pem.read_bytes()))  # type: ignore[arg-type]
    assert from_pem.vkey == vkey


# -- gateway.toml [log] -------------------------------------------------------------------------


def test_log_section_defaults_and_relative_key_path(tmp_path: Path) -> None:
    default = parse({}, base_dir=tmp_path).log
    assert default.key == tmp_path / "gateway-log.key"
    assert default.origin == f"{socket.gethostname()}/signet"
    set_ = parse({"log": {"key": "keys/log.key", "origin": ORIGIN}}, base_dir=tmp_path).log
    assert set_.key == tmp_path / "keys" / "log.key" and set_.origin == ORIGIN


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"keys": "x"}, "log.keys: unknown key (known: checkpoint_interval_s, enabled, key,"),
        ({"key": ""}, "log.key: must be a non-empty path string"),
        ({"key": 3}, "log.key: must be a non-empty path string"),
        ({"origin": ""}, "log.origin: must be a non-empty string"),
        ({"origin": 5}, "log.origin: must be a non-empty string"),
        ({"origin": "a b/signet"}, "log.origin: must contain no spaces, control characters or '+'"),
        ({"origin": "a+b/signet"}, "log.origin: must contain no spaces"),
        ({"origin": "a\u2003b"}, "log.origin: must contain no spaces"),
        ({"origin": "a\x01b"}, "log.origin: must contain no spaces"),
        ({"origin": "a" * 256}, "log.origin: must be at most 255 bytes"),
        ({"enabled": 1}, "log.enabled: must be true or false, got 1"),
        ({"checkpoint_interval_s": -1}, "log.checkpoint_interval_s: must be an integer 0..604800"),
        ({"checkpoint_interval_s": 1.5}, "log.checkpoint_interval_s: must be an integer"),
    ],
)
def test_a_wrong_log_field_is_named(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse({"log": section})
    assert message in str(refused.value)


def test_a_host_name_that_is_no_valid_origin_asks_for_log_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "my host")
    with pytest.raises(ConfigError, match=r"log\.origin: not set, and the default 'my host"):
        parse({})
    assert parse({"log": {"origin": ORIGIN}}).log.origin == ORIGIN


@pytest.mark.parametrize(
    "name",
    ["a", "gw.example/signet", "\u00e8", "a b", "a+b", "a\tb", "a\u3000b", "a\x7fb", "", "a\ud800"],
)
def test_the_config_and_the_note_code_agree_on_what_a_name_is(name: str) -> None:
    try:
        check_key_name(name)
        note_accepts = True
    except NoteError:
        note_accepts = False
    try:
        parse({"log": {"origin": name}})
        config_accepts = True
    except ConfigError:
        config_accepts = False
    assert note_accepts == config_accepts


# -- the commands -------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[log]\nkey = "keys/log.key"\norigin = "{ORIGIN}"\n')
    return path


def test_init_key_writes_the_key_and_prints_its_public_key(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gateway", "init-key", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    key = config.parent / "keys" / "log.key"
    assert _mode(key) == 0o600
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["public"] == str(key) + ".pub.pem"
    assert fields["origin"] == ORIGIN
    assert fields["log"].startswith(f"key    {key}  (mode 0600")
    vkey = fields["vkey"]
    assert vkey == log_key.verifier(log_key.load(key), ORIGIN).vkey

    assert main(["gateway", "key", "--config", str(config)]) == 0
    assert capsys.readouterr().out == vkey + "\n"
    assert main(["gateway", "key", "--pem", "--config", str(config)]) == 0
    assert capsys.readouterr().out == (key.parent / "log.key.pub.pem").read_text()

    # What the exported key verifies: a checkpoint signed with the key file.
    signed = CheckpointSigner(
        log_key.signer(log_key.load(key), ORIGIN), None, lambda old, new: True
    ).sign(0, bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
    assert open_checkpoint(signed, [Verifier.from_vkey(vkey)], origin=ORIGIN).checkpoint.size == 0


def test_init_key_refuses_an_existing_key_and_force_replaces_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gateway", "init-key", "--config", str(config)]) == 0
    key = config.parent / "keys" / "log.key"
    before = key.read_bytes()
    capsys.readouterr()
    assert main(["gateway", "init-key", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"signet: error: {key} exists; refusing to overwrite the log key (its checkpoints"
        " verify only with it): --force replaces it\n"
    )
    assert key.read_bytes() == before
    assert main(["gateway", "init-key", "--force", "--config", str(config)]) == 0
    assert key.read_bytes() != before and _mode(key) == 0o600
    assert "replaced" in capsys.readouterr().err


def test_the_commands_fail_in_one_line(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def one_line(argv: list[str], status: int, text: str) -> None:
        assert main(argv) == status
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("signet: error: ") and text in err, err
        assert "Traceback" not in err

    one_line(["gateway", "key", "--config", str(config)], 2, "no key file at")
    one_line(["gateway", "key", "--config", str(tmp_path / "none.toml")], 2, "cannot read config")
    bad = tmp_path / "bad.toml"
    bad.write_text('[log]\norigin = "a b"\n')
    one_line(["gateway", "init-key", "--config", str(bad)], 2, "log.origin: must contain no")
    assert main(["gateway", "init-key", "--config", str(config)]) == 0
    capsys.readouterr()
    key = config.parent / "keys" / "log.key"
    os.chmod(key, 0o644)
    one_line(["gateway", "key", "--config", str(config)], 2, f"chmod 600 {key}")
    blocked = tmp_path / "blocked.toml"
    (tmp_path / "file").write_text("")
    blocked.write_text('[log]\nkey = "file/log.key"\n')
    one_line(["gateway", "init-key", "--config", str(blocked)], 2, "file")
