"""gateway.toml: the ONE loader for the gateway's configuration.

Every field has a default, so an empty file is a valid configuration for a
gateway next to a local Mosquitto. A wrong field is refused with an error that
names it (``mqtt.port: must be an integer 1..65535, got 'x'``); unknown
sections and keys are errors too, because a silently ignored typo
(``recieve_maximum``) is a setting the operator believes is in force.

Sections: [mqtt], [store], [ingest], [quarantine], [time], [trust], [log] (the transparency
log), [http] (the console: API, metrics, health) and [logging] (how the process logs) are the
gateway's;
[aggregate] belongs to the report code (gateway/mcr/aggregate.py), which validates
its own keys: this loader only checks that it is a table and passes it on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import tomllib

__all__ = [
    "AggregateSection",
    "ConfigError",
    "GatewayConfig",
    "HttpConfig",
    "IngestConfig",
    "LogConfig",
    "LoggingConfig",
    "MqttConfig",
    "QuarantineConfig",
    "StoreConfig",
    "TimeConfig",
    "TrustConfig",
    "for_worker",
    "load",
    "parse",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration file is unreadable or a field in it is wrong (the message names it)."""


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "signet-gateway"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # In-flight QoS 1 messages the broker may send before we PUBACK. PUBACK waits for the
    # commit, so this bounds the gateway's memory however large the broker's backlog is.
    receive_maximum: int = 2000
    # How long the broker keeps our session (subscription + queued messages) while we are
    # down. One week: a Pi that is off over a long weekend must not lose the backlog.
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    # Several workers on one store: each subscribes to $share/<shared_group>/signet/v1/+/rec
    # (MQTT v5 shared subscription), so the broker hands each record message to one of them.
    # None (the default): one gateway, the plain subscription.
    shared_group: str | None = None


@dataclass(frozen=True)
class StoreConfig:
    # SQLite (the default, one machine): the database file.
    path: Path = Path("signet.db")
    # A cap on the database file (MiB), None for none: at the cap the gateway stops
    # acknowledging (devices keep their records) until the cap is raised or data removed.
    # SQLite only.
    max_size_mb: int | None = None
    # PostgreSQL instead: postgresql://user:password@host:port/database (libpq's URL). Set
    # instead of path, never with it. May hold a password: never printed.
    url: str | None = field(default=None, repr=False)

    @property
    def location(self) -> Path | str:
        """What opens the store (gateway/store/open.py): the URL if set, else the path."""
        return self.url if self.url is not None else self.path


@dataclass(frozen=True)
class IngestConfig:
    verify_threads: int = 2
    batch_max: int = 500  # records per transaction (one fsync each)
    batch_ms: int = 50  # longest a record waits for its batch to fill before commit
    summary_s: int = 60  # periodic summary log line; 0 = none
    # Acks that advanced are published at most this often per device while records keep
    # coming (and at once when the pipeline goes idle): during a backlog drain a device's ack
    # moves every batch, and one retained publish per device per batch costs more broker and
    # gateway work than the records. A device prunes a little later; nothing else changes.
    ack_interval_ms: int = 250


@dataclass(frozen=True)
class QuarantineConfig:
    max_rows: int = 10_000
    max_bytes_per_row: int = 2048


@dataclass(frozen=True)
class TimeConfig:
    # A record whose t is further ahead of our receive time than this is marked future.
    max_future_skew_s: int = 300


@dataclass(frozen=True)
class TrustConfig:
    # PEM files (one or more certificates each) of the roots that enrollment evidence must
    # chain to: secure-element manufacturers (Microchip's Trust&GO root) and TPM attestation
    # key CAs. Read and parsed by gateway/trust/policy.py when a command needs them.
    se_roots: tuple[Path, ...] = ()
    tpm_roots: tuple[Path, ...] = ()
    # PEM public keys of manufacturing lines whose statements the operator trusts.
    line_keys: tuple[Path, ...] = ()
    # How long an enrollment challenge (`signet challenge`) may be answered.
    challenge_ttl_s: int = 900


def default_origin() -> str:
    """The log's origin when [log] origin is not set: this host's name + "/signet"."""
    return f"{socket.gethostname() or 'localhost'}/signet"


@dataclass(frozen=True)
class LogConfig:
    # The transparency log's Ed25519 signing key (PKCS#8 PEM, mode 0600), written by
    # `signet gateway init-key`; gateway/log/key.py reads it. Not read when the config is.
    key: Path = Path("gateway-log.key")
    # The log's identity: the first line of its checkpoints and the name of its key in
    # signatures and in the verifier key auditors configure (C2SP tlog-checkpoint, signed-note).
    # Changing it changes the verifier key: set it once.
    origin: str = field(default_factory=default_origin)
    # Append every stored record to the log. Off only to measure what the log costs: records
    # stored while it is off are appended (in receive order) when the gateway next starts
    # with it on.
    enabled: bool = True
    # Sign a checkpoint this often when the tree has grown (and at a clean stop); 0: only on
    # demand (`signet log checkpoint`).
    checkpoint_interval_s: int = 60


@dataclass(frozen=True)
class HttpConfig:
    # The console (gateway/web): the read-only JSON API, /metrics, /healthz and /readyz, served
    # by the gateway process. Off unless asked for; on loopback unless told otherwise.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8470
    # /metrics asks for a bearer token like the API; false opens it to whoever reaches the
    # port (a Prometheus on the same host without credentials). /healthz and /readyz never ask.
    metrics_token: bool = True
    # [http.advertised_yield]: the yield the operator advertises per machine (device id, unique
    # prefix or name -> percent a year), shown beside the realized yield in the dashboard.
    advertised_yield: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class LoggingConfig:
    # "text": the journal's lines (`... signet-gateway INFO ...`); "json": one JSON object per
    # line (time, level, message, device where one is named), for a log collector.
    format: str = "text"


AggregateSection = Mapping[str, Any]


@dataclass(frozen=True)
class GatewayConfig:
    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    ingest: IngestConfig = IngestConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    time: TimeConfig = TimeConfig()
    trust: TrustConfig = TrustConfig()
    log: LogConfig = field(default_factory=LogConfig)
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    # [aggregate] as written in the file; gateway/mcr/aggregate.py interprets it.
    aggregate: AggregateSection = field(default_factory=lambda: MappingProxyType({}))
    source: Path | None = None  # the file this came from, if any


# -- field checkers: each returns the converted value or raises ConfigError ----------------


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise ConfigError(f"{name}: must be an integer {lo}..{hi}, got {value!r}")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise ConfigError(f"{name}: must be true or false, got {value!r}")
    return value


def _text(allow_empty: bool = False) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or (not value and not allow_empty):
            raise ConfigError(f"{name}: must be a non-empty string, got {value!r}")
        if any(ord(c) < 0x20 for c in value):
            raise ConfigError(f"{name}: must not contain control characters")
        return value

    return check


def _secret(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        # Never echo the value: it may be a password with a typo in its type.
        raise ConfigError(f"{name}: must be a non-empty string")
    return value


STORE_URL_SCHEMES = ("postgresql://", "postgres://")


def _store_url(name: str, value: Any) -> str:
    """A PostgreSQL URL. Never echoed: it may hold a password."""
    if not isinstance(value, str) or not value.startswith(STORE_URL_SCHEMES):
        raise ConfigError(f"{name}: must be a postgresql://user:password@host:port/database URL")
    if any(ord(c) < 0x20 or c.isspace() for c in value):
        raise ConfigError(f"{name}: must not contain spaces or control characters")
    return value


def _client_id(name: str, value: Any) -> str:
    value = _text()(name, value)
    if len(value.encode()) > 128 or any(c in value for c in "+#/ "):
        raise ConfigError(
            f"{name}: must be at most 128 bytes without '+', '#', '/' or spaces, got {value!r}"
        )
    return value


def _topic_level(name: str, value: Any) -> str:
    """A shared subscription's group name: one topic level (MQTT v5 4.8.2: no '/', '+', '#')."""
    value = _text()(name, value)
    if len(value.encode()) > 64 or any(c in value for c in "+#/ "):
        raise ConfigError(
            f"{name}: must be at most 64 bytes without '+', '#', '/' or spaces, got {value!r}"
        )
    return value


def _origin(name: str, value: Any) -> str:
    """A log origin that is also a valid C2SP signed-note key name (signed-note "Format": not
    empty, no Unicode space, no plus sign), so that the key's name can be the origin, as
    tlog-checkpoint recommends. gateway/log/note.py applies the same rule to every name."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: must be a non-empty string, got {value!r}")
    if any(ord(c) < 0x20 or c.isspace() or c == "+" for c in value):
        raise ConfigError(
            f"{name}: must contain no spaces, control characters or '+', got {value!r}"
        )
    if len(value.encode("utf-8", "surrogatepass")) > 255:
        raise ConfigError(f"{name}: must be at most 255 bytes")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ConfigError(f"{name}: must be valid Unicode (it holds a lone surrogate)")
    return value


class _PathCheck:
    def __init__(self, base: Path) -> None:
        self.base = base

    def __call__(self, name: str, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name}: must be a non-empty path string, got {value!r}")
        path = Path(value).expanduser()
        # Relative paths are relative to the config file, not to wherever systemd started us.
        return path if path.is_absolute() else self.base / path


class _PathListCheck:
    """A list of paths (relative to the config file), each readable when the config is read."""

    def __init__(self, base: Path) -> None:
        self.path = _PathCheck(base)

    def __call__(self, name: str, value: Any) -> tuple[Path, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{name}: must be a list of path strings, got {value!r}")
        paths = tuple(self.path(f"{name}[{i}]", item) for i, item in enumerate(value))
        for i, item in enumerate(paths):
            _readable_file(f"{name}[{i}]", item)
        return paths


def _readable_file(name: str, path: Path | None) -> None:
    """A file the gateway opens later (TLS material) must be readable now: a missing file is
    an error naming its key at load time, for every command that reads the configuration,
    rather than an OS error when the gateway first connects."""
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _section(
    data: Mapping[str, Any],
    name: str,
    default: T,
    checks: Mapping[str, Callable[[str, Any], Any]],
) -> T:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}]: must be a table, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        check = checks.get(key)
        if check is None:
            known = ", ".join(sorted(checks))
            raise ConfigError(f"{name}.{key}: unknown key (known: {known})")
        values[key] = check(f"{name}.{key}", value)
    return type(default)(**{**default.__dict__, **values})  # type: ignore[arg-type]


_SECTIONS = (
    "mqtt",
    "store",
    "ingest",
    "quarantine",
    "time",
    "trust",
    "log",
    "http",
    "logging",
    "aggregate",
)


def _host(name: str, value: Any) -> str:
    """An address to listen on: an IP address or a host name (no scheme, port or blanks)."""
    value = _text()(name, value)
    if any(c.isspace() or c in "/[]" for c in value) or value.count(":") == 1:
        raise ConfigError(f"{name}: must be an IP address or a host name, got {value!r}")
    return value


def _advertised_yield(name: str, value: Any) -> Mapping[str, float]:
    """device (id, prefix or name) -> percent a year, 0..1000 (names resolve when shown)."""
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}]: must be a table of device = percent a year")
    for device, percent in value.items():
        if type(percent) not in (int, float) or not 0 <= percent <= 1000:
            raise ConfigError(f"{name}.{device}: must be a percent a year 0..1000, got {percent!r}")
    return MappingProxyType({str(k): float(v) for k, v in value.items()})


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f"{name}: must be one of {', '.join(allowed)}, got {value!r}")
        return value  # type: ignore[no-any-return]

    return check


def parse(data: Mapping[str, Any], base_dir: Path | None = None) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from the parsed TOML tables; paths relative to base_dir."""
    base = base_dir if base_dir is not None else Path.cwd()
    path = _PathCheck(base)
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"[{key}]: unknown section (known: {', '.join(_SECTIONS)})")
    mqtt = _section(
        data,
        "mqtt",
        MqttConfig(),
        {
            "host": _text(),
            "port": _int(1, 65535),
            "client_id": _client_id,
            "username": _text(),
            "password": _secret,
            "tls_ca": path,
            "tls_cert": path,
            "tls_key": path,
            "receive_maximum": _int(1, 65535),
            "session_expiry_s": _int(1, 0xFFFFFFFF),
            "keepalive_s": _int(5, 65535),
            "shared_group": _topic_level,
        },
    )
    if (mqtt.tls_cert is None) != (mqtt.tls_key is None):
        raise ConfigError("mqtt.tls_cert, mqtt.tls_key: give both (client certificate) or neither")
    if mqtt.password is not None and mqtt.username is None:
        raise ConfigError("mqtt.password: given without mqtt.username")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        _readable_file(f"mqtt.{key}", getattr(mqtt, key))
    store = _section(
        data,
        "store",
        StoreConfig(path=base / "signet.db"),
        {"path": path, "max_size_mb": _int(1, 1 << 30), "url": _store_url},
    )
    given = data.get("store", {})
    if "url" in given and "path" in given:
        raise ConfigError(
            "store.path, store.url: give one of them, path (SQLite, the default) or url"
            " (PostgreSQL)"
        )
    if "url" in given and "max_size_mb" in given:
        raise ConfigError(
            "store.max_size_mb: SQLite only (a PostgreSQL server manages its own disk space)"
        )
    ingest = _section(
        data,
        "ingest",
        IngestConfig(),
        {
            "verify_threads": _int(1, 64),
            "batch_max": _int(1, 65535),
            "batch_ms": _int(1, 10_000),
            "summary_s": _int(0, 86_400),
            "ack_interval_ms": _int(0, 60_000),
        },
    )
    if ingest.batch_max > mqtt.receive_maximum:
        # The broker stops sending at receive_maximum unacked messages and we ack only after
        # commit: a bigger batch could never fill and every commit would wait for batch_ms.
        raise ConfigError(
            f"ingest.batch_max: must be <= mqtt.receive_maximum ({mqtt.receive_maximum}), "
            f"got {ingest.batch_max}"
        )
    quarantine = _section(
        data,
        "quarantine",
        QuarantineConfig(),
        {"max_rows": _int(1, 10_000_000), "max_bytes_per_row": _int(0, 65536)},
    )
    time = _section(data, "time", TimeConfig(), {"max_future_skew_s": _int(0, 10 * 365 * 86400)})
    paths = _PathListCheck(base)
    trust = _section(
        data,
        "trust",
        TrustConfig(),
        {
            "se_roots": paths,
            "tpm_roots": paths,
            "line_keys": paths,
            "challenge_ttl_s": _int(1, 7 * 86400),
        },
    )
    log = _section(
        data,
        "log",
        LogConfig(key=base / "gateway-log.key"),
        {
            "key": path,
            "origin": _origin,
            "enabled": _bool,
            "checkpoint_interval_s": _int(0, 7 * 86400),
        },
    )
    if "origin" not in data.get("log", {}):
        try:
            _origin("log.origin", log.origin)
        except ConfigError:
            raise ConfigError(
                f"log.origin: not set, and the default {log.origin!r} (this host's name) is not"
                " a valid log name: set log.origin"
            ) from None
    http = _section(
        data,
        "http",
        HttpConfig(),
        {
            "enabled": _bool,
            "host": _host,
            "port": _int(1, 65535),
            "metrics_token": _bool,
            "advertised_yield": _advertised_yield,
        },
    )
    logging = _section(data, "logging", LoggingConfig(), {"format": _choice("text", "json")})
    aggregate = data.get("aggregate", {})
    if not isinstance(aggregate, dict):
        raise ConfigError(f"[aggregate]: must be a table, got {type(aggregate).__name__}")
    return GatewayConfig(
        mqtt=mqtt,
        store=store,
        ingest=ingest,
        quarantine=quarantine,
        time=time,
        trust=trust,
        log=log,
        http=http,
        logging=logging,
        aggregate=MappingProxyType(dict(aggregate)),
        source=None,
    )


def for_worker(config: GatewayConfig, worker: str | None) -> GatewayConfig:
    """The configuration of the worker named ``worker`` (``signet gateway run --worker``; the
    template unit signet-gateway@NAME.service passes its instance name).

    Each worker of a shared group connects as ``mqtt.client_id-worker``: its own persistent
    session. Two workers with one client id would push each other off the broker (the broker
    ends the older connection, which reconnects and ends the newer one), so a configuration
    with ``mqtt.shared_group`` is refused without a worker name, and a worker name without
    ``mqtt.shared_group`` too (every worker would receive, verify and store every message).
    """
    mqtt = config.mqtt
    if worker is None:
        if mqtt.shared_group is not None:
            raise ConfigError(
                "mqtt.shared_group is set: name this worker (`signet gateway run --worker NAME`;"
                " signet-gateway@NAME.service passes NAME): each worker needs a client id of its"
                " own, or two would push each other off the broker"
            )
        return config
    if mqtt.shared_group is None:
        raise ConfigError(
            f"--worker {worker}: mqtt.shared_group is not set, so every worker would receive"
            " every message: set [mqtt] shared_group to share them"
        )
    client_id = _client_id("--worker", f"{mqtt.client_id}-{worker}")
    return replace(config, mqtt=replace(mqtt, client_id=client_id))


def load(path: Path | str) -> GatewayConfig:
    """Read and check a gateway.toml; raise :class:`ConfigError` naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    config = parse(data, base_dir=path.resolve().parent)
    return GatewayConfig(**{**config.__dict__, "source": path})
