"""JSON lines for the gateway's log (``[logging] format = "json"``): one object per event.

Each line is ``{"time", "level", "logger", "message"}`` plus ``"device"`` when the event names a
device (the gateway's lines name one by its 32-hex id, in a sentence or in a topic: the first
such id is taken), and ``"exception"`` with the traceback when there is one. Only the standard
library: a base install without the gateway extra logs JSON too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

__all__ = ["JsonFormatter", "device_in"]

# A device id: exactly 32 lowercase hex digits, not part of a longer hex string (a hash).
_DEVICE = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def device_in(message: str) -> str | None:
    match = _DEVICE.search(message)
    return None if match is None else match.group(0)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        event = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        device = getattr(record, "device", None) or device_in(message)
        if device is not None:
            event["device"] = device
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)
