# The ONE configuration loader, for boards (/config.json) and a Pi alike.
#
# A JSON object is validated field by field; every wrong field gets its own
# message naming it ("mqtt.port: must be an integer 1..65535, got 'abc'"), so a
# maker fixes the file from the first boot log instead of guessing. Defaults
# are filled in, unknown keys are refused (a typo must not silently fall back
# to a default). Passwords are wrapped in Secret, whose repr is masked, so
# printing a Config, a section or a log line never shows them. A device
# drops this module after boot (main.py); settings.py holds what stays.

import json

from . import record
from .settings import Config, Secret

_REQUIRED = object()
_EMPTY = object()  # default: the section validated as if given as {}


class ConfigError(ValueError):
    pass


def _fail(path, why, value=None, show=True):
    if show:
        why = "%s, got %s" % (why, _show(value))
    raise ConfigError("%s: %s" % (path, why))


def _show(value):
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40] + "...")
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "a JSON %s" % ("object" if isinstance(value, dict) else "array")


def _int(lo, hi):
    def check(path, v):
        if not isinstance(v, int) or v is True or v is False or not lo <= v <= hi:
            _fail(path, "must be an integer %d..%d" % (lo, hi), v)
        return v

    return check


def _str(max_len=128, secret=False):
    def check(path, v):
        if not isinstance(v, str) or not 1 <= len(v) <= max_len:
            # A wrong secret is named but never echoed.
            _fail(path, "must be a string of 1..%d characters" % max_len, v, not secret)
        return Secret(v) if secret else v

    return check


def _opt(check):
    def opt(path, v):
        return None if v is None else check(path, v)

    return opt


def _one_of(*choices):
    def check(path, v):
        if v not in choices:
            _fail(path, "must be one of %s" % ", ".join(repr(c) for c in choices), v)
        return v

    return check


def _record_rule(check):
    # Values that end up in records (src tokens, currencies) obey the record's
    # own rule: a config the agent accepts never makes records it refuses.
    def rule(path, v):
        try:
            check(path, v)
        except record.RecordError as e:
            raise ConfigError(str(e)) from None
        return v

    return rule


_token = _record_rule(record.check_token)
_currency = _record_rule(record.check_currency)


def _pin(path, v):
    # Boards name pins by number (ESP32 GPIO) or by name ("GP15", "LED" on rp2).
    if isinstance(v, str) and 1 <= len(v) <= 16:
        return v
    if isinstance(v, int) and not (v is True or v is False) and 0 <= v <= 255:
        return v
    _fail(path, "must be a GPIO number 0..255 or a pin name", v)


def _bool(path, v):
    if v is not True and v is not False:
        _fail(path, "must be true or false", v)
    return v


def _section(path, obj, spec):
    """Validate a JSON object against spec {key: (check, default)}; returns a new dict."""
    if not isinstance(obj, dict):
        _fail(path, "must be a JSON object", obj)
    for key in obj:
        if key not in spec:
            _fail(
                "%s.%s" % (path, key) if path else key,
                "unknown key (allowed: %s)" % ", ".join(sorted(spec)),
                show=False,
            )
    out = {}
    for key in spec:
        check, default = spec[key]
        sub = "%s.%s" % (path, key) if path else key
        if key in obj:
            out[key] = check(sub, obj[key])
        elif default is _REQUIRED:
            _fail(sub, "is required", show=False)
        elif default is _EMPTY:
            out[key] = check(sub, {})
        else:
            out[key] = default
    return out


def _tls(path, v):
    if v is None:
        return None
    s = _opt(_str(256))
    tls = _section(path, v, {"ca": (s, None), "cert": (s, None), "key": (s, None)})
    if (tls["cert"] is None) != (tls["key"] is None):
        _fail(path, "cert and key must be given together", show=False)
    return tls


def _mqtt_spec():
    return {
        "host": (_str(253), _REQUIRED),
        "port": (_int(1, 65535), None),  # None: 1883, or 8883 with tls
        "client_id": (_opt(_str(64)), None),  # None: the device id
        "user": (_opt(_str(128)), None),
        "password": (_opt(_str(128, True)), None),
        "tls": (_tls, None),
        "keepalive_s": (_int(5, 3600), 60),
        "timeout_ms": (_int(100, 60000), 5000),
        "backoff_min_ms": (_int(100, 3600000), 1000),
        "backoff_max_ms": (_int(100, 3600000), 120000),
        "batch_bytes": (_int(2048, 65536), 4096),
        "ack_timeout_s": (_int(1, 86400), 30),
        "ack_wait_ms": (_int(0, 60000), 2000),
    }


def _source_spec(kind):
    if kind == "pulse":
        return {
            "type": (_str(), _REQUIRED),
            "pin": (_pin, _REQUIRED),
            "value": (_int(1, 2147483647), _REQUIRED),
            "currency": (_currency, _REQUIRED),
            "debounce_ms": (_int(0, 1000), 20),
            "flush_ms": (_int(0, 3600000), 1000),
            "pull": (_one_of("up", "down", None), "up"),
            "edge": (_one_of("falling", "rising"), "falling"),
            "src": (_token, "pulse"),
        }
    if kind == "uart":
        return {
            "type": (_str(), _REQUIRED),
            "id": (_int(0, 8), 1),
            "baud": (_int(300, 1000000), 9600),
            "tx": (_opt(_pin), None),
            "rx": (_opt(_pin), None),
            "src": (_token, "uart"),
            "silence_s": (_int(0, 86400), 0),
        }
    if kind == "local":
        return {
            "type": (_str(), _REQUIRED),
            "path": (_str(107), "/run/signet/agent.sock"),  # sun_path limit
            "src": (_token, "local"),
        }
    return None


def _key_spec(kind):
    # Where the device key lives (docs/TRUST.md). "path" is always required:
    #   file      the private key file (software tier)
    #   atecc608  the binding file written at provisioning (chip serial, slot,
    #             public key): a swapped or re-keyed chip is caught at boot
    #   tpm2      the key's blob (public + wrapped private part): only the TPM
    #             that created it can load it
    s = _str(256)
    spec = {"type": (_str(), "file"), "path": (s, _REQUIRED)}
    if kind == "atecc608":
        spec["slot"] = (_int(0, 15), 0)
        spec["address"] = (_int(1, 127), 0x60)  # 0x35 on Trust&GO parts
        # Board: machine.I2C(id, scl=Pin(scl), sda=Pin(sda), freq=freq).
        # Pi: the kernel's I2C device, e.g. "/dev/i2c-1".
        spec["i2c"] = (
            lambda p, v: _section(
                p,
                v,
                {
                    "id": (_int(0, 8), 0),
                    "scl": (_opt(_pin), None),
                    "sda": (_opt(_pin), None),
                    "freq": (_int(10000, 1000000), 100000),
                    "bus": (_opt(_str(64)), None),
                },
            ),
            _EMPTY,
        )
        # The chip's monotonic counter (0 or 1) the sequence lease is bound to;
        # null: the lease lives in flash only (docs/JOURNAL.md).
        spec["counter"] = (_opt(_int(0, 1)), 1)
    elif kind == "tpm2":
        spec["tcti"] = (_str(256), "device:/dev/tpmrm0")
    if kind in ("atecc608", "tpm2"):
        # A software key file used when the secure element fails its boot
        # self-test; null: the agent signs an evt and stops instead.
        spec["fallback_path"] = (_opt(s), None)
    return spec


def _key(path, v):
    kind = v.get("type", "file") if isinstance(v, dict) else None
    if kind not in ("file", "atecc608", "tpm2"):
        if not isinstance(v, dict):
            _fail(path, "must be a JSON object", v)
        _fail(path + ".type", "must be one of 'file', 'atecc608', 'tpm2'", kind)
    return _section(path, v, _key_spec(kind))


def _sources(path, v):
    if not isinstance(v, list):
        _fail(path, "must be a JSON array", v)
    out = []
    for i, item in enumerate(v):
        sub = "%s[%d]" % (path, i)
        kind = item.get("type") if isinstance(item, dict) else None
        spec = _source_spec(kind)
        if spec is None:
            if not isinstance(item, dict):
                _fail(sub, "must be a JSON object", item)
            _fail(sub + ".type", "must be one of 'pulse', 'uart', 'local'", kind)
        out.append(_section(sub, item, spec))
    return out


def _spec():
    s = _str(256)
    return {
        "wifi": (
            _opt(
                lambda p, v: _section(
                    p, v, {"ssid": (_str(32), _REQUIRED), "password": (_opt(_str(64, True)), None)}
                )
            ),
            None,
        ),
        "mqtt": (lambda p, v: _section(p, v, _mqtt_spec()), _REQUIRED),
        "key": (_key, _REQUIRED),
        "journal": (
            lambda p, v: _section(
                p,
                v,
                {
                    "dir": (s, "/journal"),
                    "segment_bytes": (_int(2048, 1048576), 4096),
                    "segments": (_int(3, 4096), 16),
                    "reserve_segments": (_int(1, 1024), 2),
                    # recent sale refs kept for idempotent retries (31 bytes each); 0 = off
                    "ref_window": (_int(0, 1024), 16),
                },
            ),
            _EMPTY,
        ),
        "intervals": (
            lambda p, v: _section(
                p,
                v,
                {
                    "heartbeat_s": (_int(1, 86400), 60),
                    "loop_ms": (_int(1, 10000), 100),
                    # no progress this long, every step out of memory: stop feeding
                    # the watchdog (0 = never)
                    "stall_s": (_int(0, 86400), 300),
                },
            ),
            _EMPTY,
        ),
        "time": (
            lambda p, v: _section(
                p,
                v,
                {
                    "ntp_host": (_opt(_str(253)), "pool.ntp.org"),
                    "resync_s": (_int(60, 7 * 86400), 3600),
                },
            ),
            _EMPTY,
        ),
        "sources": (_sources, []),
        "watchdog_ms": (_int(0, 3600000), 0),
        "led": (
            _opt(
                lambda p, v: _section(
                    p, v, {"pin": (_pin, _REQUIRED), "active_low": (_bool, False)}
                )
            ),
            None,
        ),
    }


def parse(obj, board=False):
    """Validate a decoded JSON object; returns a Config or raises ConfigError.

    board=True: a MicroPython board (Wi-Fi required, no Unix-socket source).
    """
    if not isinstance(obj, dict):
        raise ConfigError("config: must be a JSON object")
    data = _section("", obj, _spec())
    mq = data["mqtt"]
    if mq["port"] is None:
        mq["port"] = 8883 if mq["tls"] else 1883
    if mq["backoff_max_ms"] < mq["backoff_min_ms"]:
        raise ConfigError("mqtt.backoff_max_ms: must be >= backoff_min_ms")
    if mq["password"] is not None and mq["user"] is None:
        raise ConfigError("mqtt.password: needs mqtt.user")
    j = data["journal"]
    if j["reserve_segments"] > j["segments"] - 2:
        raise ConfigError(
            "journal.reserve_segments: must leave at least 2 of %d segments, got %d"
            % (j["segments"], j["reserve_segments"])
        )
    if board:
        if data["wifi"] is None:
            raise ConfigError("wifi: is required on a board")
        if data["key"]["type"] == "tpm2":
            raise ConfigError("key.type: 'tpm2' exists only on a Pi")
        for i, src in enumerate(data["sources"]):
            if src["type"] == "local":
                raise ConfigError("sources[%d].type: 'local' exists only on a Pi" % i)
    return Config(data)


def loads(text, board=False):
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError("config: not valid JSON (%s)" % e) from None
    return parse(obj, board)


def load(path, board=False):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("config: cannot read %s (%s)" % (path, e)) from None
    return loads(text, board)
