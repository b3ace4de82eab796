"""The Claude Code CLI as a subprocess: its argv, its environment, its life.

- argv is a list, never a shell string; the prompt is one argument after
  `--`, so a prompt like `--help` or `; rm -rf /` is only ever text.
- The environment is built from nothing: HOME and temp dirs of the session,
  a fixed PATH, and only `ANTHROPIC_*` / `CLAUDE_CODE_*` from the runner's
  own environment. The runner's NATS credentials and any Proxmox setting
  never reach the CLI or the commands the agent runs.
- stdin is /dev/null (an open, silent stdin makes the CLI wait), except for
  a warm CLI (`warm`): it is started without a prompt in streaming-input
  mode (`--input-format stream-json`) and reads each turn's prompt, and
  Stop's interrupt request, as JSON lines on its stdin.
- The one tool beyond Bash/Read/Grep/Glob is the power-verb tool, an MCP
  server named in a per-turn `--mcp-config` with `--strict-mcp-config`, so
  no other MCP server (user or project settings) is ever loaded.
- No settings but the runner's: `--setting-sources ""` (no user, project or
  local settings, no CLAUDE.md of theirs) and `--settings` with the per-turn
  template (`TURN_SETTINGS`), so nothing an earlier turn planted applies.
- The CLI and everything it starts run in the sandbox (`sandbox`): the
  runner spawns `bwrap`, which SIGINT leaves alone (the CLI still gets it).
- The CLI dies with the runner (a SIGKILLed runner leaves no turn running
  unobserved; the lease reaper records `interrupted`).
- The CLI runs in its own process group: Stop sends SIGINT (the CLI ends the
  turn cleanly and says so), then SIGKILL to the whole group after a grace
  period, so no tool process outlives its turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from eventbus.service import die_with_parent

from .workspace import Workspace

TOOLS = ("Bash", "Read", "Grep", "Glob")
PASSTHROUGH_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LINE_LIMIT = 8 * 1024 * 1024
STDERR_CAP = 16 * 1024


@dataclass(frozen=True)
class Invocation:
    bin: str
    model: str
    session_id: str
    resume: bool
    system_prompt: str = ""
    mcp_config: str | None = None
    extra_tools: tuple[str, ...] = ()
    #: The per-turn settings file (`TURN_SETTINGS`), laid by the runner.
    settings: str | None = None


#: The only settings the CLI loads: hooks off, whatever a managed file says.
TURN_SETTINGS = {"disableAllHooks": True}


def argv(inv: Invocation, prompt: str | None) -> list[str]:
    """`prompt` None: a warm CLI, in streaming-input mode (prompts on stdin)."""
    args = [
        inv.bin, "-p",
        *(("--input-format", "stream-json") if prompt is None else ()),
        "--output-format", "stream-json", "--verbose", "--include-partial-messages",
        "--model", inv.model,
        f"--tools={','.join(TOOLS)}",
        f"--allowedTools={','.join(TOOLS + inv.extra_tools)}",
    ]
    args += ["--resume", inv.session_id] if inv.resume else ["--session-id", inv.session_id]
    args += ["--setting-sources", ""]
    if inv.settings:
        args += ["--settings", inv.settings]
    if inv.system_prompt:
        args += ["--append-system-prompt", inv.system_prompt]
    if inv.mcp_config:
        args += [f"--mcp-config={inv.mcp_config}", "--strict-mcp-config"]
    return args if prompt is None else [*args, "--", prompt]


def user_message(prompt: str) -> bytes:
    """One prompt as a streaming-input line (JSON: no way to break out of it)."""
    return _line({"type": "user", "message": {"role": "user", "content": prompt}, "parent_tool_use_id": None})


def initialize_request(request_id: str) -> bytes:
    """What the Agent SDK sends first: the CLI does its start-up work (tools,
    MCP servers, the system prompt) now rather than on the first prompt,
    and answers with a `control_response` of the same `request_id`."""
    return _line({"type": "control_request", "request_id": request_id, "request": {"subtype": "initialize"}})


def interrupt_request(request_id: str) -> bytes:
    """The CLI's own Stop (the control request the Agent SDK sends): it
    aborts the model call and the running tool and answers with a `result`,
    and the process stays usable for the next turn."""
    return _line({"type": "control_request", "request_id": request_id, "request": {"subtype": "interrupt"}})


def _line(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


def environment(
    runner_env: Mapping[str, str], ws: Workspace, *, mcp_tool_timeout_seconds: float | None = None,
) -> dict[str, str]:
    """`mcp_tool_timeout_seconds`: how long the CLI waits for an MCP tool (the
    verb tool waits for the operator's approval, longer than the CLI's own
    default would)."""
    env = {k: v for k, v in runner_env.items() if k.startswith(PASSTHROUGH_PREFIXES)}
    env.update(
        HOME=str(ws.home),
        PATH=SAFE_PATH,
        LANG="C.UTF-8",
        TMPDIR=str(ws.tmp),
        CLAUDE_CODE_TMPDIR=str(ws.tmp),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    if mcp_tool_timeout_seconds is not None:
        env["MCP_TOOL_TIMEOUT"] = str(int(mcp_tool_timeout_seconds * 1000))
    return env


class CliProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._stderr = bytearray()
        self._stderr_task = asyncio.create_task(self._collect_stderr())

    @classmethod
    async def start(
        cls, args: list[str], env: dict[str, str], cwd: str, *, pass_fds: tuple[int, ...] = (),
        sandboxed: bool = False, streaming: bool = False,
    ) -> "CliProcess":
        """`sandboxed`: `args` starts bwrap, which would die of the group's
        SIGINT and take the CLI with it before it ends the turn cleanly; so
        bwrap ignores SIGINT (the CLI sets its own handler, and the tools it
        starts get the default back)."""
        die = die_with_parent()

        def preexec() -> None:
            if die is not None:
                die()
            if sandboxed:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        process = await asyncio.create_subprocess_exec(
            *args, env=env, cwd=cwd, stdin=asyncio.subprocess.PIPE if streaming else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=LINE_LIMIT, preexec_fn=preexec, pass_fds=pass_fds,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.returncode is None

    async def send(self, line: bytes) -> None:
        """One line to a streaming CLI's stdin; raises ConnectionError
        (BrokenPipeError, ConnectionResetError) when the CLI is gone."""
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing():
            raise BrokenPipeError("the CLI's stdin is closed")
        stdin.write(line)
        await stdin.drain()

    def close_stdin(self) -> None:
        """A streaming CLI reads no more prompts: it finishes and exits."""
        if self._process.stdin is not None:
            self._process.stdin.close()

    async def lines(self) -> AsyncIterator[bytes]:
        """stdout, one line at a time; an over-long line is dropped, not fatal."""
        stdout = self._process.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # over LINE_LIMIT: the reader already discarded it
                yield b"<line over the size limit>"
                continue
            if not line:
                return
            yield line

    async def _collect_stderr(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            room = STDERR_CAP - len(self._stderr)
            if room > 0:
                self._stderr += chunk[:room]

    def stderr_text(self) -> str:
        return self._stderr.decode(errors="replace").strip()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._process.pid, sig)
        except ProcessLookupError:
            pass

    def interrupt(self) -> None:
        self._signal_group(signal.SIGINT)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    async def stop(self, grace: float) -> None:
        """SIGINT, then SIGKILL to the group if it is still there after `grace`."""
        self.interrupt()
        try:
            await asyncio.wait_for(asyncio.shield(self._process.wait()), grace)
        except asyncio.TimeoutError:
            self.kill()

    async def wait(self) -> int:
        code = await self._process.wait()
        await self._stderr_task
        self._signal_group(signal.SIGKILL)  # tool processes left in the group go with the turn
        return code


#: The oldest Claude Code CLI the runner drives (README: Supported versions);
#: the suite runs the pinned tools/claude-cli one.
MIN_CLI_VERSION = (2, 1, 0)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`2.1.328 (Claude Code)` -> (2, 1, 328); anything else -> None."""
    head = text.strip().split(" ", 1)[0].split(".")
    if len(head) != 3 or not all(part.isdigit() for part in head):
        return None
    return int(head[0]), int(head[1]), int(head[2])


async def installed_version(claude_bin: str, timeout: float = 15.0) -> tuple[int, int, int] | None:
    """What `claude --version` says, or None when it cannot say (missing,
    hung, or a stand-in that prints no version)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            claude_bin, "--version", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env={"PATH": SAFE_PATH, "HOME": "/nonexistent", "DISABLE_AUTOUPDATER": "1"},
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return parse_version(out.decode(errors="replace"))
