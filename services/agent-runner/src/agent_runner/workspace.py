"""A session's private directory on the runner: the CLI's HOME, working
directory and temp dir.

The CLI keeps its conversation under HOME, and `--resume` only finds it
with the same HOME, so HOME is per session and lives under DATA_DIR (a
shared volume when runners are replicated). `started` records that the CLI
accepted `--session-id` once; later turns must `--resume` instead (reusing
`--session-id` fails with "already in use").

A clean agent every turn: an injected turn may plant settings, hooks, a
CLAUDE.md or an .mcp.json anywhere it can write, so before each turn the
working and temp directories are emptied and HOME keeps only the
conversation transcripts `--resume` reads. The runner's own files (the
per-turn settings, the verb tool's socket and MCP config) sit in the
session's directory itself, which the sandbox shows the agent read-only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from events.subjects import session_events

from . import home_template


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
        if projects.is_dir() or (self.root / "cli-keeps-transcripts").exists():
            return any(projects.glob(f"*/{self.root.name}.jsonl"))
        return (self.root / "cli-started").exists()

    def transcript(self) -> tuple[int, int] | None:
        """The CLI's transcript of the session as (size, mtime ns), or None:
        a warm CLI compares it with what it last left, to see a turn that
        ran without it (another runner, a per-turn CLI)."""
        for path in (self.home / ".claude" / "projects").glob(f"*/{self.root.name}.jsonl"):
            with contextlib.suppress(OSError):
                stat = path.stat()
                return stat.st_size, stat.st_mtime_ns
        return None

    def mark_started(self) -> None:
        """The CLI said it started. Whether it keeps transcripts in HOME is
        noted too: the HOME clean-up before the next turn (`_clean`) leaves
        no trace of a CLI killed before its first transcript, and a marker
        alone would then send it a `--resume` with nothing to resume."""
        (self.root / "cli-started").touch()
        if (self.home / ".claude").is_dir():
            (self.root / "cli-keeps-transcripts").touch()

    @property
    def settings(self) -> Path:
        """The per-turn settings the runner lays (`--settings`)."""
        return self.root / "settings.json"

    def prepare(self, ssh_config: str | None = None, home_state: dict | None = None) -> "Workspace":
        """Clean, then lay what the runner gives every CLI: the devvm's ssh
        config, the CLI's first-run state (`home_template`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)  # the agent's uid may enter (to reach the files put there for it), not list
        self._clean()
        for path in (self.home, self.work, self.tmp):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if ssh_config is not None:
            ssh = self.home / ".ssh"
            ssh.mkdir(exist_ok=True, mode=0o700)
            (ssh / "config").write_text(ssh_config)
            (ssh / "config").chmod(0o600)
        if home_state:
            home_template.lay(self.home, home_state)
        return self

    def _clean(self) -> None:
        """Empty `work` and `tmp`; in HOME keep only the transcripts under
        `.claude/projects/<dir>/` (what `--resume` reads), nothing else."""
        for path in (self.work, self.tmp):
            _remove(path)
        if not self.home.is_dir() or self.home.is_symlink():
            _remove(self.home)
            return
        projects = self.home / ".claude" / "projects"
        keep = {p for p in projects.glob("*/*.jsonl") if p.is_file() and not p.is_symlink()} if _plain_dir(projects) else set()
        for dirpath, dirnames, filenames in os.walk(self.home, topdown=False):
            for name in filenames:
                path = Path(dirpath) / name
                if path not in keep:
                    path.unlink(missing_ok=True)
            for name in dirnames:
                path = Path(dirpath) / name
                if path.is_symlink():
                    path.unlink()
                elif not any(k.is_relative_to(path) for k in keep):
                    shutil.rmtree(path, ignore_errors=True)


def _plain_dir(path: Path) -> bool:
    """A real directory all the way from HOME (no symlink planted on the way)."""
    return path.is_dir() and not path.is_symlink() and not path.parent.is_symlink()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
