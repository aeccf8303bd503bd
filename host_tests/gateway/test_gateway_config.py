"""gateway.toml loading: defaults, relative paths, and one specific error per wrong field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.paths import REPO
from signet_gateway.config import ConfigError, load, parse
from signet_gateway.ingest.wire import (
    BadTopic,
    ack_payload,
    device_of_topic,
    parse_ack,
    split_message,
)
from signet_gateway.verify.refusals import Refused


def test_defaults_and_relative_store_path(tmp_path: Path) -> None:
    cfg_file = tmp_path / "gateway.toml"
    cfg_file.write_text('[store]\npath = "data/signet.db"\n')
    cfg = load(cfg_file)
    assert cfg.store.path == tmp_path / "data" / "signet.db"
    assert cfg.mqtt.port == 1883 and cfg.mqtt.receive_maximum >= cfg.ingest.batch_max
    assert cfg.source == cfg_file
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load(empty).store.path == tmp_path / "signet.db"


def test_example_config_in_deploy_loads() -> None:
    example = REPO / "deploy" / "gateway.toml"
    cfg = load(example)
    assert cfg.mqtt.client_id == "signet-gateway"
    assert cfg.store.path.is_absolute()


def test_password_is_never_in_repr() -> None:
    cfg = parse({"mqtt": {"username": "gw", "password": "hunter2"}})
    assert "hunter2" not in repr(cfg)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mqtt": {"port": "x"}}, "mqtt.port: must be an integer 1..65535, got 'x'"),
        ({"mqtt": {"port": 0}}, "mqtt.port: must be an integer 1..65535, got 0"),
        ({"mqtt": {"port": True}}, "mqtt.port: must be an integer"),
        ({"mqtt": {"recieve_maximum": 10}}, "mqtt.recieve_maximum: unknown key"),
        ({"mqtt": {"client_id": "a/b"}}, "mqtt.client_id: must be at most 128 bytes without"),
        ({"mqtt": {"host": ""}}, "mqtt.host: must be a non-empty string"),
        ({"mqtt": {"password": "p"}}, "mqtt.password: given without mqtt.username"),
        ({"mqtt": {"password": 5, "username": "u"}}, "mqtt.password: must be a non-empty string"),
        ({"mqtt": {"tls_cert": "c.pem"}}, "mqtt.tls_cert, mqtt.tls_key: give both"),
        ({"mqtt": {"receive_maximum": 70000}}, "mqtt.receive_maximum: must be an integer 1..65535"),
        ({"mqtt": 3}, "[mqtt]: must be a table"),
        ({"stor": {}}, "[stor]: unknown section"),
        ({"store": {"path": ""}}, "store.path: must be a non-empty path string"),
        ({"store": {"max_size_mb": 0}}, "store.max_size_mb: must be an integer 1..1073741824"),
        ({"ingest": {"verify_threads": 0}}, "ingest.verify_threads: must be an integer 1..64"),
        ({"ingest": {"batch_ms": 1.5}}, "ingest.batch_ms: must be an integer 1..10000, got 1.5"),
        (
            {"mqtt": {"receive_maximum": 100}, "ingest": {"batch_max": 200}},
            "ingest.batch_max: must be <= mqtt.receive_maximum (100), got 200",
        ),
        ({"quarantine": {"max_rows": -1}}, "quarantine.max_rows: must be an integer"),
        ({"time": {"max_future_skew_s": "5m"}}, "time.max_future_skew_s: must be an integer"),
        ({"aggregate": 1}, "[aggregate]: must be a table"),
    ],
)
def test_each_wrong_field_has_its_error(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert message in str(err.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nport = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(bad)


# -- wire framing (PROTOCOL 7) -----------------------------------------------------------------


def test_topic_parsing() -> None:
    kid = "0123456789abcdef0123456789abcdef"
    assert device_of_topic(f"signet/v1/{kid}/rec".encode()) == kid
    for bad in (f"signet/v1/{kid.upper()}/rec", "signet/v1/abc/rec", f"signet/v2/{kid}/rec"):
        with pytest.raises(BadTopic):
            device_of_topic(bad.encode())


def test_batches_are_split_or_refused_as_a_whole() -> None:
    rec = b"\xd2" + b"x" * 30
    assert split_message(rec) == [rec]
    batch = b"\x82" + b"\x58\x1f" + rec + b"\x41\x00"
    assert split_message(batch) == [rec, b"\x00"]
    cases = {
        b"": "malformed",
        b"\x80": "malformed",  # empty batch
        b"\x9f\x41\x00\xff": "malformed",  # indefinite array
        b"\x81\x5f\x41\x00\xff": "malformed",  # indefinite bstr
        b"\x82\x41\x00": "malformed",  # cut off
        b"\x81\x41\x00\x00": "malformed",  # trailing byte
        b"\x81\x58\x01\x00": "malformed",  # non-shortest length
        b"\x81\x01": "malformed",  # element not a bstr
        b"\x81" + b"\x5a" + (70000).to_bytes(4, "big"): "malformed",
        b"\x99\x01\x00" + b"\x40" * 65536: "too_large",
    }
    for payload, reason in cases.items():
        with pytest.raises(Refused) as err:
            split_message(payload)
        assert err.value.reason == reason, payload[:8]


def test_ack_payload_is_deterministic_cbor() -> None:
    assert ack_payload(3).hex() == "a1616e03"
    assert ack_payload(1000).hex() == "a1616e1903e8"
    for n in (0, 23, 24, 255, 256, 65535, 65536, 2**32, 2**53 - 1):
        assert parse_ack(ack_payload(n)) == n
    assert parse_ack(b"\xa1\x61\x6e\x18\x03") is None  # non-shortest
    assert parse_ack(b"\xa1\x61\x6d\x03") is None


# -- files the gateway opens later: checked when the configuration is read ------------------


@pytest.mark.parametrize(
    ("mqtt", "key"),
    [
        ({"tls_ca": "/nonexistent/ca.pem"}, "mqtt.tls_ca"),
        ({"tls_cert": "/nonexistent/gw.pem", "tls_key": "KEY"}, "mqtt.tls_cert"),
        ({"tls_cert": "CERT", "tls_key": "/nonexistent/gw.key"}, "mqtt.tls_key"),
    ],
)
def test_a_missing_tls_file_is_a_config_error_naming_key_and_file(
    tmp_path: Path, mqtt: dict[str, str], key: str
) -> None:
    present = tmp_path / "present.pem"
    present.write_text("-----BEGIN CERTIFICATE-----\n")
    values = {k: str(present) if v in ("CERT", "KEY") else v for k, v in mqtt.items()}
    missing = next(v for v in values.values() if v.startswith("/nonexistent"))
    with pytest.raises(ConfigError) as err:
        parse({"mqtt": values})
    assert str(err.value) == f"{key}: cannot read {missing}: No such file or directory"
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca: cannot read .*: Is a directory"):
        parse({"mqtt": {"tls_ca": str(tmp_path)}})


def test_every_command_reading_the_config_says_the_same_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from signet_tools.cli.main import main

    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[mqtt]\ntls_ca = "/nonexistent/ca.pem"\n[store]\npath = "gw.db"\n')
    expected = (
        "signet: error: mqtt.tls_ca: cannot read /nonexistent/ca.pem: No such file or directory"
    )
    for argv in (["gateway", "run", "--config", str(cfg)], ["devices", "--config", str(cfg)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [expected], argv


@pytest.mark.timeout(60)
def test_a_tls_file_that_is_not_pem_is_a_config_error_at_start(tmp_path: Path) -> None:
    """Readable but not a certificate: paho fails when the gateway loads it; that is a
    configuration error too (exit 2), naming the TLS keys, not a failure to start (3)."""
    from signet_tools.runners.gateway_process import GatewayProcess, write_gateway_config
    from signet_tools.runners.mosquitto import free_port

    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    cfg = write_gateway_config(
        tmp_path / "gateway.toml", free_port(), tmp_path / "gw.db", mqtt={"tls_ca": str(bogus)}
    )
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start(wait=False)
    try:
        assert gw.wait(30) == 2
    finally:
        gw.kill()
    said = gw.text()
    errors = [line for line in said.splitlines() if line.startswith("signet: error:")]
    assert len(errors) == 1, said
    assert errors[0].startswith(f"signet: error: cannot load the TLS files (mqtt.tls_ca = {bogus})")
    assert "Traceback" not in said


# -- durations and counts: never negative, NaN or infinite ------------------------------------

_DURATIONS_AND_COUNTS = {
    "mqtt": ["port", "receive_maximum", "session_expiry_s", "keepalive_s"],
    "store": ["max_size_mb"],
    "ingest": ["verify_threads", "batch_max", "batch_ms", "summary_s", "ack_interval_ms"],
    "quarantine": ["max_rows", "max_bytes_per_row"],
    "time": ["max_future_skew_s"],
}
_KEYS = [(section, key) for section, keys in _DURATIONS_AND_COUNTS.items() for key in keys]


@pytest.mark.parametrize(("section", "key"), _KEYS)
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "1.5", "true", '"5"'])
def test_every_duration_and_count_refuses_negative_and_non_finite_values(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: must be an integer"):
        load(cfg)


@pytest.mark.parametrize(
    ("section", "key"),
    [(s, k) for s, k in _KEYS if k not in ("summary_s", "ack_interval_ms", "max_bytes_per_row",
                                            "max_future_skew_s")],
)  # fmt: skip
def test_zero_is_refused_where_it_means_nothing(section: str, key: str) -> None:
    """Zero is allowed only where it is documented: summary_s (no summary line),
    ack_interval_ms (no coalescing), max_bytes_per_row (keep no raw bytes) and
    max_future_skew_s (any t ahead of the receive time is future)."""
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: must be an integer [1-9]"):
        parse({section: {key: 0}})


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_simulate_duration_is_a_positive_finite_number_of_seconds(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from signet_tools.cli.main import main

    argv = ["simulate", "--devices", "1", "--duration", value, "--broker", "127.0.0.1:1883",
            "--db", str(tmp_path / "gw.db"), "--out", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --duration: must be a number of seconds above 0" in err
    assert "Traceback" not in err
