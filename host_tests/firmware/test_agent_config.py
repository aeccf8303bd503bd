"""signet.config: one specific error per wrong field; secrets never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signet import config
from signet.settings import Secret

BASE = {"mqtt": {"host": "broker.local"}, "key": {"path": "/key.json"}}


def _with(path: str, value: object) -> dict:
    obj = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    node = obj
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return obj


def test_minimal_config_gets_defaults() -> None:
    cfg = config.parse(BASE)
    assert cfg.mqtt["port"] == 1883 and cfg.mqtt["keepalive_s"] == 60
    assert cfg.journal == {
        "dir": "/journal",
        "segment_bytes": 4096,
        "segments": 16,
        "reserve_segments": 2,
        "ref_window": 16,
    }
    assert cfg.intervals["heartbeat_s"] == 60 and cfg.sources == [] and cfg.wifi is None
    assert config.parse(_with("mqtt.tls", {"ca": "/ca.pem"})).mqtt["port"] == 8883


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("mqtt.port", "abc", "mqtt.port: must be an integer 1..65535, got 'abc'"),
        ("mqtt.port", 0, "mqtt.port: must be an integer 1..65535, got 0"),
        ("mqtt.port", True, "mqtt.port: must be an integer 1..65535, got true"),
        ("mqtt.host", "", "mqtt.host: must be a string of 1..253 characters, got ''"),
        ("mqtt.keepalive_s", 1, "mqtt.keepalive_s: must be an integer 5..3600, got 1"),
        ("mqtt.timeout_ms", 2.5, "mqtt.timeout_ms: must be an integer 100..60000, got 2.5"),
        ("mqtt.batch_bytes", 100, "mqtt.batch_bytes: must be an integer 2048..65536, got 100"),
        ("mqtt.tls", {"cert": "/c.pem"}, "mqtt.tls: cert and key must be given together"),
        ("mqtt.tls", {"cafile": "/ca"}, "mqtt.tls.cafile: unknown key (allowed: ca, cert, key)"),
        ("mqtt.hots", "x", "mqtt.hots: unknown key (allowed: "),
        ("key.type", "tpm", "key.type: must be one of 'file', 'atecc608', 'tpm2', got 'tpm'"),
        ("journal.segments", 2, "journal.segments: must be an integer 3..4096, got 2"),
        ("journal.reserve_segments", 15, "journal.reserve_segments: must leave at least 2 of 16"),
        ("journal.ref_window", 1025, "journal.ref_window: must be an integer 0..1024, got 1025"),
        ("journal.ref_window", -1, "journal.ref_window: must be an integer 0..1024, got -1"),
        ("intervals.heartbeat_s", 0, "intervals.heartbeat_s: must be an integer 1..86400, got 0"),
        ("time.resync_s", 10, "time.resync_s: must be an integer 60..604800, got 10"),
        ("watchdog_ms", -1, "watchdog_ms: must be an integer 0..3600000, got -1"),
        ("led", {"pin": 2, "active_low": "yes"}, "led.active_low: must be true or false"),
        ("sources", {}, "sources: must be a JSON array, got a JSON object"),
        ("sources", [{"type": "coin"}], "sources[0].type: must be one of 'pulse', 'uart', 'local'"),
        (
            "sources",
            [{"type": "pulse", "pin": 4, "value": 50, "currency": "eur"}],
            "sources[0].currency: must be a 3-letter ISO 4217 code such as 'EUR', got 'eur'",
        ),
        (
            "sources",
            [{"type": "pulse", "pin": 4, "currency": "EUR"}],
            "sources[0].value: is required",
        ),
        (
            "sources",
            [{"type": "uart", "baud": 12}],
            "sources[0].baud: must be an integer 300..1000000, got 12",
        ),
        (
            "sources",
            [{"type": "pulse", "pin": -1, "value": 1, "currency": "EUR"}],
            "sources[0].pin",
        ),
        (
            "sources",
            [{"type": "local", "src": "Local"}],
            "sources[0].src: character 'L' not allowed (allowed: a-z 0-9 _ . -)",
        ),
    ],
)
def test_each_wrong_field_has_its_own_error(path: str, value: object, message: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(_with(path, value))
    assert str(err.value).startswith(message), str(err.value)


def test_missing_required_and_not_an_object() -> None:
    with pytest.raises(config.ConfigError, match=r"^key: is required$"):
        config.parse({"mqtt": {"host": "h"}})
    with pytest.raises(config.ConfigError, match=r"^config: must be a JSON object$"):
        config.parse([])
    with pytest.raises(config.ConfigError, match=r"^config: not valid JSON"):
        config.loads("{mqtt: 1}")
    with pytest.raises(config.ConfigError, match=r"^config: cannot read /nonexistent"):
        config.load("/nonexistent/config.json")


def test_board_rules() -> None:
    with pytest.raises(config.ConfigError, match=r"^wifi: is required on a board$"):
        config.parse(BASE, board=True)
    obj = _with("wifi", {"ssid": "cafe"})
    obj["sources"] = [{"type": "local"}]
    with pytest.raises(
        config.ConfigError, match=r"sources\[0\]\.type: 'local' exists only on a Pi"
    ):
        config.parse(obj, board=True)


def test_secrets_never_printed(tmp_path: Path) -> None:
    obj = _with("mqtt.user", "dev1")
    obj["mqtt"]["password"] = "hunter2-mqtt"
    obj["wifi"] = {"ssid": "cafe", "password": "hunter2-wifi"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(obj))
    cfg = config.load(str(path))
    for text in (repr(cfg), str(cfg), repr(cfg.mqtt), str(cfg.wifi), f"{cfg.mqtt['password']}"):
        assert "hunter2" not in text
        assert "***" in text
    assert isinstance(cfg.mqtt["password"], Secret)
    assert cfg.mqtt["password"].reveal() == "hunter2-mqtt"
    assert cfg.wifi["password"].reveal() == "hunter2-wifi"
    # A wrong secret is named, never echoed.
    bad = _with("wifi", {"ssid": "cafe", "password": "x" * 65 + "hunter2"})
    with pytest.raises(config.ConfigError) as err:
        config.parse(bad)
    assert str(err.value) == "wifi.password: must be a string of 1..64 characters"
    with pytest.raises(config.ConfigError, match=r"^mqtt\.password: needs mqtt\.user$"):
        config.parse(_with("mqtt.password", "hunter2"))
