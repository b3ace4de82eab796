"""A session's private directory on the runner: the CLI's HOME, working
directory and temp dir.

The CLI keeps its conversation under HOME, and `--resume` only finds it
with the same HOME, so HOME is per session and lives under DATA_DIR (a
shared volume when runners are replicated). `started` records that the CLI
accepted `--session-id` once; later turns must `--resume` instead (reusing
`--session-id` fails with "already in use").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from events.subjects import session_events


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def for_session(cls, data_dir: Path, session_id: str) -> "Workspace":
        session_events(session_id)  # refuses anything that is not a UUID before it becomes a path
        return cls(data_dir / "sessions" / session_id)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def started(self) -> bool:
        """True when the CLI holds a conversation to `--resume`. The CLI's own
        transcript (HOME/.claude/projects/<cwd>/<session id>.jsonl) decides:
        a runner SIGKILLed after the CLI's init line but before the CLI wrote
        its transcript leaves the marker without a conversation, and every
        later `--resume` would fail with "No conversation found"
        (tests/chaos). The marker decides only where the CLI keeps no such
        directory."""
        projects = self.home / ".claude" / "projects"
        if projects.is_dir():
            return any(projects.glob(f"*/{self.root.name}.jsonl"))
        return (self.root / "cli-started").exists()

    def mark_started(self) -> None:
        (self.root / "cli-started").touch()

    def prepare(self, ssh_config: str | None = None) -> "Workspace":
        for path in (self.home, self.work, self.tmp):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if ssh_config is not None:
            ssh = self.home / ".ssh"
            ssh.mkdir(exist_ok=True, mode=0o700)
            (ssh / "config").write_text(ssh_config)
            (ssh / "config").chmod(0o600)
        return self
