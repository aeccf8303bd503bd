"""[http] and [logging] in gateway.toml: defaults, one-line errors; the console's start-up
errors (a port in use, the gateway extra missing) as one `signet: error:` line, exit 2."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from kit.gatewaykit import write_config
from signet_gateway.config import ConfigError, HttpConfig, parse
from signet_tools.cli.main import main


def test_defaults_loopback_and_off() -> None:
    config = parse({})
    assert config.http == HttpConfig(enabled=False, host="127.0.0.1", port=8470)
    assert config.http.metrics_token and config.logging.format == "text"
    on = parse(
        {"http": {"enabled": True, "host": "::1", "port": 9000}, "logging": {"format": "json"}}
    )
    assert (on.http.enabled, on.http.host, on.http.port, on.logging.format) == (
        True, "::1", 9000, "json",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"http": {"enabled": "yes"}}, "http.enabled: must be true or false, got 'yes'"),
        ({"http": {"port": 0}}, "http.port: must be an integer 1..65535, got 0"),
        ({"http": {"port": "80"}}, "http.port: must be an integer 1..65535, got '80'"),
        ({"http": {"host": "http://x"}}, "http.host: must be an IP address or a host name"),
        ({"http": {"host": "localhost:80"}}, "http.host: must be an IP address or a host name"),
        ({"http": {"bind": "x"}}, "http.bind: unknown key (known: advertised_yield, enabled, host"),
        ({"http": []}, "[http]: must be a table"),
        ({"logging": {"format": "xml"}}, "logging.format: must be one of text, json, got 'xml'"),
    ],
)
def test_bad_fields_are_named(section: dict, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(section)
    assert str(caught.value).startswith(error) and "\n" not in str(caught.value)


def test_a_port_in_use_is_a_one_line_set_up_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        cfg = write_config(tmp_path / "gateway.toml", 1, tmp_path / "g.db",
                           http={"enabled": True, "port": port})  # fmt: skip
        assert main(["gateway", "run", "--config", str(cfg)]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err == (
        f"signet: error: http: cannot listen on 127.0.0.1:{port}: Address already in use"
        " (is another gateway or program using http.port?)\n"
    )


def test_without_the_gateway_extra_the_console_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in [m for m in sys.modules if m.startswith(("signet_gateway.web.", "fastapi"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi: ModuleNotFoundError
    cfg = write_config(tmp_path / "gateway.toml", 1, tmp_path / "g.db", http={"enabled": True})
    assert main(["gateway", "run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("signet: error: signet gateway run: fastapi is not installed; install")
    assert err.count("\n") == 1 and "[gateway]" in err
