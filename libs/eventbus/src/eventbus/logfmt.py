"""Log lines: one JSON object per line for machines, one short line for people.

Every service logs through the standard `logging` module; this decides how a
record looks. JSON is what log shippers and `jq` read; the console form is
for a person at a terminal (`make run`). Both carry the correlation ids of
`eventbus.trace`, so a turn can be followed across services either way.

`BREAKGLASS_LOG_FORMAT` picks: `json`, `console`, or `auto` (the default:
console when stderr is a terminal, JSON otherwise).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from . import trace

FORMATS = ("auto", "json", "console")


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "service", "logger", "msg", ids..., "exc"?}` per line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(trace.current())
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS.mmm LEVEL logger: message  turn_id=... verb=...`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(trace.current())
        text = render(
            {"ts": _timestamp(record.created), "level": record.levelname.lower(), "logger": record.name,
             "msg": record.getMessage(), **fields}
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def render(line: dict[str, Any], *, service: bool = False) -> str:
    """One JSON log line as a person reads it; `service` prefixes its name."""
    ts = str(line.get("ts", ""))
    clock = ts[11:23] if len(ts) >= 23 else ts
    ids = "  ".join(f"{name}={line[name]}" for name in trace.FIELDS if line.get(name))
    head = f"{line.get('service', '?'):<12} " if service else ""
    text = f"{head}{clock} {str(line.get('level', '')).upper():<7} {line.get('logger', '')}: {line.get('msg', '')}"
    if ids:
        text += f"  {ids}"
    if line.get("exc"):
        text += "\n" + str(line["exc"])
    return text


def parse(text: str) -> dict[str, Any] | None:
    """A JSON log line as a dict, or None if the line is not one."""
    if not text.startswith("{"):
        return None
    try:
        line = json.loads(text)
    except ValueError:
        return None
    return line if isinstance(line, dict) else None


def choose(setting: str, stream: TextIO) -> str:
    """The format `setting` means for `stream`: `json` or `console`."""
    if setting == "auto":
        isatty = getattr(stream, "isatty", None)
        return "console" if isatty is not None and isatty() else "json"
    return setting


def install(service: str, level: str, setting: str, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one in the chosen format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service) if choose(setting, stream) == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
