"""The notifier's memory: where it is in the events stream, and which
notifications still wait for a retry. A small JSON file it alone writes.

The notifier connects as the read-only `reader` user, which may keep no
consumer on the server (eventbus.access), so its place is its own to keep:

    {"stream": "BREAKGLASS_EVENTS", "position": 4182, "pending": {"4170": 3}}

`position`: every event up to it was handed to the rules; `pending`: the
events among them whose notification is not settled yet (a failed POST
waiting for its retry), with the attempts made. Written after each change,
by a rename, so a crash leaves the old file or the new one, never half of
one: a restart resumes after `position` and retries what is pending (at
least once, as a redelivered message was before).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


class PositionError(OSError):
    """The state file exists but cannot be used; the message says why."""


@dataclass
class Position:
    path: Path
    stream: str
    position: int = 0
    pending: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, stream: str) -> "Position | None":
        """The saved state, None when there is none yet."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PositionError(f"cannot read the notifier's state {path}: {exc}") from None
        try:
            if raw["stream"] != stream:
                raise PositionError(f"{path} is the state of stream {raw['stream']!r}, not {stream!r}")
            return cls(path, stream, int(raw["position"]), {int(k): int(v) for k, v in raw["pending"].items()})
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PositionError(f"{path} is not a notifier state file") from None

    def save(self) -> None:
        body = {"stream": self.stream, "position": self.position,
                "pending": {str(k): v for k, v in sorted(self.pending.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
