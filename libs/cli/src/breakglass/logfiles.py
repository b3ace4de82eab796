"""Where `breakglass up` keeps each service's log: `<data dir>/logs/<name>.jsonl`.

One JSON object per line whatever the terminal shows, so `breakglass logs`
(and `jq`) can follow a turn across services after the fact. A file that
passes `MAX_BYTES` is renamed to `<name>.jsonl.1` (replacing the previous
one) and started afresh: a console that runs for months never fills the
disk it may be needed to rescue.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

MAX_BYTES = 20 * 1024 * 1024
SUFFIX = ".jsonl"

_NATS_LEVEL = re.compile(r"\[(INF|WRN|ERR|FTL|DBG|TRC)\]")
_LEVELS = {"INF": "info", "WRN": "warning", "ERR": "error", "FTL": "error", "DBG": "debug", "TRC": "debug"}


def directory(data_dir: Path) -> Path:
    return data_dir / "logs"


def files(data_dir: Path) -> list[Path]:
    """Every log file `up` wrote under `data_dir`, rotated ones first."""
    logs = directory(data_dir)
    return sorted(logs.glob(f"*{SUFFIX}.1")) + sorted(logs.glob(f"*{SUFFIX}")) if logs.is_dir() else []


def wrap(service: str, text: str) -> dict[str, Any]:
    """A line that is not JSON (nats-server's, a stray print) as a log entry."""
    level = _NATS_LEVEL.search(text)
    return {
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": _LEVELS[level.group(1)] if level else "info",
        "service": service,
        "msg": text,
    }


class LogFiles:
    """One append-only file per service; callers serialise writes."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = directory(data_dir)
        self._open: dict[str, IO[str]] = {}

    def write(self, service: str, line: str) -> None:
        f = self._open.get(service)
        if f is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            f = self._open[service] = open(self._dir / f"{service}{SUFFIX}", "a", encoding="utf-8")
        f.write(line + "\n")
        f.flush()
        if f.tell() > MAX_BYTES:
            f.close()
            path = self._dir / f"{service}{SUFFIX}"
            path.replace(path.with_name(path.name + ".1"))
            del self._open[service]

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()
