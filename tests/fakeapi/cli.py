"""Find and run the REAL Claude Code CLI against a FakeAnthropic.

    from tests.fakeapi.cli import require_claude, run_claude

    def test_x(tmp_path):
        claude = require_claude()            # pytest.skip only if not installable
        with FakeAnthropic() as api:
            api.script(text("hi"))
            run = run_claude(claude, api, tmp_path, "say hi", session_id=str(uuid4()))
            assert run.returncode == 0 and run.result["result"] == "hi"

Where the binary comes from, first that answers `--version`:
  1. $BREAKGLASS_CLAUDE_CLI
  2. tools/claude-cli/node_modules/.bin/claude   (scripts/test-deps.sh; npm, pinned)
  3. claude_agent_sdk/_bundled/claude            (if that PyPI wheel is installed)
If none does and npm is on PATH, `require_claude()` runs `npm ci` in
tools/claude-cli once (about 10 s, 356 MB) before giving up with a skip.

Flags that work as root: `--dangerously-skip-permissions` and
`--permission-mode bypassPermissions` are refused for root; `--allowedTools
Bash Read Grep Glob` pre-approves tools in print mode, and `--tools
Bash,Read,Grep,Glob` limits the tool set offered to the model.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLI_DIR = REPO / "tools" / "claude-cli"
NPM_CLI = CLI_DIR / "node_modules" / ".bin" / "claude"
PINNED_VERSION = "2.1.328"

DEFAULT_TOOLS = ("Bash", "Read", "Grep", "Glob")


def _version(path: Path | str) -> str | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _candidates() -> list[Path]:
    out: list[Path] = []
    if os.environ.get("BREAKGLASS_CLAUDE_CLI"):
        out.append(Path(os.environ["BREAKGLASS_CLAUDE_CLI"]))
    out.append(NPM_CLI)
    try:
        import claude_agent_sdk  # type: ignore[import-not-found]

    except ImportError:  # optional fallback, deliberately not in the lock
        pass
    else:
        out.append(Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")
    return out


def find_claude() -> Path | None:
    """The first CLI binary that runs, or None (never installs anything)."""
    for path in _candidates():
        if path.exists() and _version(path):
            return path
    return None


@functools.cache
def ensure_claude() -> tuple[Path | None, str]:
    """(path, "") when a CLI runs, installing it with npm if needed; else (None, why)."""
    found = find_claude()
    if found:
        return found, ""
    npm = shutil.which("npm")
    if not npm:
        return None, "the Claude Code CLI is not installed and npm is not on PATH (run scripts/test-deps.sh)"
    cmd = [npm, "ci" if (CLI_DIR / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    proc = subprocess.run(cmd, cwd=CLI_DIR, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, f"`npm ci` of the Claude Code CLI failed: {' | '.join(tail)}"
    wrapper = CLI_DIR / "node_modules" / "@anthropic-ai" / "claude-code"
    if not _version(NPM_CLI) and (wrapper / "install.cjs").exists() and shutil.which("node"):
        # An npm that skipped the postinstall leaves a placeholder; run it by hand.
        subprocess.run(["node", "install.cjs"], cwd=wrapper, capture_output=True, timeout=120)
    found = find_claude()
    return (found, "") if found else (None, "the Claude Code CLI was installed but does not run")


def require_claude() -> Path:
    """The CLI path, or pytest.skip with the reason it cannot be had."""
    path, why = ensure_claude()
    if path is None:
        import pytest

        pytest.skip(why)
    return path


def claude_env(api_url: str, home: Path | str, **extra: str | None) -> dict[str, str]:
    """A scrubbed environment: nothing from the caller's env but PATH.

    `extra` adds or (with None) removes variables, e.g. CLAUDE_CODE_MAX_RETRIES="1".
    """
    env = {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "test",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_TMPDIR": str(home),
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    }
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def claude_argv(
    claude: Path | str,
    prompt: str,
    *,
    session_id: str | None = None,
    resume: str | None = None,
    model: str = "sonnet",
    tools: Sequence[str] = DEFAULT_TOOLS,
    partial: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """`claude -p PROMPT --output-format stream-json --verbose ...` as an argv list."""
    argv = [str(claude), "-p", prompt, "--output-format", "stream-json", "--verbose", "--model", model]
    if session_id:
        argv += ["--session-id", session_id]
    if resume:
        argv += ["--resume", resume]
    if partial:
        argv.append("--include-partial-messages")
    argv += list(extra)
    if tools:
        # --tools limits what the model is offered; --allowedTools pre-approves (works as root).
        argv += ["--tools", ",".join(tools), "--allowedTools", *tools]
    return argv


@dataclass
class ClaudeRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    lines: list[dict[str, Any]] = field(default_factory=list)

    def of(self, type_: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [
            ln for ln in self.lines if ln.get("type") == type_ and (subtype is None or ln.get("subtype") == subtype)
        ]

    @property
    def result(self) -> dict[str, Any] | None:
        results = self.of("result")
        return results[-1] if results else None

    def content(self, type_: str, role: str = "assistant") -> list[dict[str, Any]]:
        """Content blocks of `type_` in the assistant (or user) lines."""
        out = []
        for ln in self.of(role):
            content = (ln.get("message") or {}).get("content")
            if isinstance(content, list):
                out.extend(b for b in content if isinstance(b, dict) and b.get("type") == type_)
        return out

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content("text"))


def run_claude(
    claude: Path | str,
    api: Any,
    home: Path | str,
    prompt: str,
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 60.0,
    **argv_kw: Any,
) -> ClaudeRun:
    """Run one print-mode turn to completion (stdin from /dev/null) and parse its stdout."""
    argv = claude_argv(claude, prompt, **argv_kw)
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        env=claude_env(api.url, home, **dict(env or {})),
        cwd=str(cwd or home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    lines = []
    for raw in proc.stdout.splitlines():
        raw = raw.strip()
        if raw:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"type": "__unparsed__", "raw": raw})
    return ClaudeRun(argv, proc.returncode, proc.stdout, proc.stderr, seconds, lines)
