"""A warm home template: the CLI's first-run state, done once per runner.

A CLI started in an empty HOME first migrates and records its first start
in `~/.claude.json`; the per-turn clean-up (`workspace`) empties HOME, so
without a template every CLI start redoes that work. The runner keeps the
state the first warm CLI wrote (read once it answered `initialize`, before
any prompt reached it, so no agent wrote it) and lays it in every
session's HOME after the clean-up, before the CLI starts.

Only the keys below are kept, whatever the file held: the template is
copied into every session's HOME, so nothing in it may carry anything
from one session to another (no project entries, no MCP servers, no
per-session history), and a value of the wrong type drops the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE = ".claude.json"
#: First-run facts and their types: migrations done, when and which CLI.
KEYS: dict[str, type | tuple[type, ...]] = {
    "firstStartTime": str,
    "firstStartVersion": str,
    "migrationVersion": int,
    "opusProMigrationComplete": bool,
    "hasResetAutoModeOptInForDefaultOffer": bool,
    "userID": str,
    "machineID": str,
}


def read(home: Path) -> dict[str, Any] | None:
    """The first-run state a CLI left in `home`, allow-listed; None if none."""
    path = home / FILE
    try:
        if path.is_symlink() or not path.is_file():
            return None
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    kept = {k: v for k, v in state.items() if k in KEYS and isinstance(v, KEYS[k]) and len(str(v)) <= 256}
    return kept or None


def lay(home: Path, state: dict[str, Any]) -> None:
    """Write the template into a cleaned HOME (mode 0600)."""
    path = home / FILE
    path.write_text(json.dumps(state))
    path.chmod(0o600)
