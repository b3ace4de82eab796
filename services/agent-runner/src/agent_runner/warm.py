"""Warm CLIs: one long-lived Claude CLI per active session, started ahead
of need, so a turn does not pay the CLI's start (0.5-0.8 s, ANCHORS.md).

A warm CLI runs in streaming-input mode (`cli.argv(..., None)`): each
turn writes the prompt to its stdin as a user message and reads the same
stream-json the per-turn CLI prints, up to the turn's `result` line
(`warm_turn.run`). It runs in exactly the sandbox, workspace
and environment a per-turn CLI gets, laid the same way before it starts,
and its verb tool (the stdio MCP server) lives as long as it does, bound
to each of its turns in turn (`verb_tool.VerbTool.bind`).

When one starts: on the gateway's warm hint (an operator opened or
attached to the session, `events.commands.WarmSession`) and after each of
the session's turns. A turn that finds none (none yet, the cap reached, the
last one died) starts its own CLI with `--resume`, as without warm CLIs.

When one is not used again, and why:
- the clean-agent rule (a turn starts from a workspace holding only what
  `--resume` needs): only Bash writes files, so a turn that ran Bash ends
  its warm CLI (and every process it left in its group) and the next one
  starts after the workspace is cleaned; a turn that did not run Bash
  changed nothing the CLI reads (settings sources are off, the settings
  file and MCP config are the runner's, read-only to the agent);
- the session's transcript changed since this CLI last wrote it (another
  runner or a per-turn CLI ran a turn): its memory of the conversation is
  stale, so it is ended and the turn resumes from the transcript;
- it died, timed out, was stopped by signal rather than by its own
  interrupt, or the turn asks for another model or VM;
- idle longer than `warm_idle_seconds`, or evicted (least recently used
  idle one first) to make room under `max_warm`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .cli import CliProcess, initialize_request, interrupt_request, user_message
from .verb_tool import VerbTool
from .workspace import Workspace

logger = logging.getLogger("agent-runner.warm")

#: How long a starting CLI may take to answer its `initialize` request.
READY_SECONDS = 60.0
#: A closing CLI gets this long to finish writing its transcript after its
#: stdin closes, before its process group is killed.
CLOSE_GRACE_SECONDS = 3.0


@dataclass
class WarmCli:
    session_id: str
    model: str
    #: The session's VM the CLI was laid out for (its prompt, its devvm, its verbs).
    vm: str | None
    process: CliProcess
    verbs: VerbTool
    ws: Workspace
    #: The session's transcript as this CLI last left it (`Workspace.transcript`).
    stamp: tuple[int, int] | None
    last_used: float = field(default_factory=time.monotonic)
    busy: bool = False
    #: Must not serve another turn (ran Bash, was killed, timed out).
    spent: bool = False
    _ids: itertools.count = field(default_factory=itertools.count)

    @property
    def usable(self) -> bool:
        return self.process.alive and not self.spent

    async def ready(self) -> None:
        """Have the CLI do its start-up work now (`initialize`, as the Agent
        SDK does) and wait for its answer: only then is it warm. Raises
        ConnectionError if it ends first, TimeoutError after READY_SECONDS."""
        request_id = f"breakglass-init-{next(self._ids)}"
        await self.process.send(initialize_request(request_id))
        async with asyncio.timeout(READY_SECONDS):
            async for line in self.process.lines():
                if b'"control_response"' in line and request_id.encode() in line:
                    return
        raise ConnectionError(f"the CLI ended before it was ready: {self.process.stderr_text()[-500:]}")

    async def prompt(self, text: str) -> None:
        await self.process.send(user_message(text))

    async def interrupt(self) -> None:
        await self.process.send(interrupt_request(f"breakglass-stop-{next(self._ids)}"))

    async def close(self) -> None:
        """Close stdin (the CLI finishes and exits), then kill what is left
        of its process group; then its verb tool."""
        self.process.close_stdin()
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), CLOSE_GRACE_SECONDS)
        except TimeoutError:
            self.process.kill()
        await self.process.wait()
        await self.verbs.close()


Launch = Callable[[str, str, str | None], Awaitable[WarmCli]]


class WarmPool:
    """This runner's warm CLIs, at most one per session and `max_warm` in all."""

    def __init__(self, launch: Launch, *, max_warm: int, idle_seconds: float, busy: Callable[[str], bool]) -> None:
        self._launch = launch
        self.max_warm = max_warm
        self.idle_seconds = idle_seconds
        #: True while the session has a turn on this runner (no warm-up then).
        self._busy = busy
        self.ready: dict[str, WarmCli] = {}
        self._starting: dict[str, asyncio.Task[WarmCli | None]] = {}
        self._closing: dict[str, asyncio.Task[None]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self.ready) + len(self._starting)

    def warm(self, session_id: str, model: str, vm: str | None = None) -> bool:
        """Start the session's CLI in the background if there is none and
        room for one (evicting the least recently used idle CLI at the cap)."""
        if self._closed or self.max_warm == 0 or self._busy(session_id):
            return False
        if session_id in self.ready or session_id in self._starting:
            return False
        if len(self) >= self.max_warm and not self._evict():
            logger.info("no warm CLI for the session: all %d are busy (BREAKGLASS_MAX_WARM_CLIS)", self.max_warm)
            return False
        self._starting[session_id] = asyncio.create_task(self._start(session_id, model, vm))
        return True

    async def claim(self, session_id: str, model: str, vm: str | None = None) -> WarmCli | None:
        """The session's warm CLI for a turn (waiting for one still starting),
        or None: the turn starts its own CLI, as without warm CLIs."""
        starting = self._starting.get(session_id)
        if starting is not None:
            await asyncio.shield(starting)
        cli = self.ready.get(session_id)
        if cli is not None and not cli.busy:
            why = self._unfit(cli, model, vm)
            if why is None:
                cli.busy = True
                return cli
            logger.info("not using the session's warm CLI: %s", why)
            self._retire(cli)
        closing = self._closing.get(session_id)
        if closing is not None:
            await asyncio.shield(closing)  # its workspace is the turn's to lay again
        return None

    def release(self, cli: WarmCli) -> None:
        """The turn is over: keep the CLI for the next one, or end it."""
        cli.busy = False
        cli.last_used = time.monotonic()
        if cli.usable and not self._closed:
            cli.stamp = cli.ws.transcript()
        else:
            self._retire(cli)

    async def expire_forever(self, stop: asyncio.Event) -> None:
        """End warm CLIs idle longer than `idle_seconds`."""
        every = min(5.0, self.idle_seconds / 4)
        while not stop.is_set():
            now = time.monotonic()
            for cli in list(self.ready.values()):
                if not cli.busy and now - cli.last_used >= self.idle_seconds:
                    logger.info("ending a warm CLI idle for %.0f s", now - cli.last_used)
                    self._retire(cli)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def close(self) -> None:
        """Shut down: end every warm CLI and wait for them."""
        self._closed = True
        for task in list(self._starting.values()):
            with contextlib.suppress(Exception):
                await task
        for cli in list(self.ready.values()):
            if not cli.busy:
                self._retire(cli)
        if self._closing:
            await asyncio.gather(*self._closing.values(), return_exceptions=True)

    # ------------------------------------------------------------ internals

    def _unfit(self, cli: WarmCli, model: str, vm: str | None) -> str | None:
        if not cli.process.alive:
            return "it died since its last turn"
        if cli.spent:
            return "it may not serve another turn"
        if cli.model != model:
            return f"it runs model {cli.model}, the turn asks for {model}"
        if cli.vm != vm:
            return f"it was laid out for VM {cli.vm}, the turn is about {vm}"
        if cli.ws.transcript() != cli.stamp:
            return "the session's transcript changed since it last wrote it"
        return None

    def _evict(self) -> bool:
        idle = [c for c in self.ready.values() if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_used)
        logger.info("ending the least recently used warm CLI to make room (BREAKGLASS_MAX_WARM_CLIS=%d)", self.max_warm)
        self._retire(oldest)
        return True

    async def _start(self, session_id: str, model: str, vm: str | None) -> WarmCli | None:
        closing = self._closing.get(session_id)
        try:
            if closing is not None:
                await asyncio.shield(closing)
            cli = await self._launch(session_id, model, vm)
        except Exception as exc:
            logger.warning("could not start a warm CLI: %s", exc)
            return None
        finally:
            self._starting.pop(session_id, None)
        if self._closed:
            self._retire(cli)
            return None
        self.ready[session_id] = cli
        watcher = asyncio.create_task(self._watch(cli))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        logger.info("warm CLI ready, pid %d (%d warm)", cli.process.pid, len(self))
        return cli

    async def _watch(self, cli: WarmCli) -> None:
        """A CLI that dies between turns leaves the pool at once (a turn
        running on it sees its end itself)."""
        code = await cli.process.wait()
        if not cli.busy and self.ready.get(cli.session_id) is cli:
            logger.warning("a warm CLI ended between turns (exit code %s)", code)
            self._retire(cli)

    def _retire(self, cli: WarmCli) -> None:
        if self.ready.get(cli.session_id) is cli:
            del self.ready[cli.session_id]
        cli.spent = True
        previous = self._closing.get(cli.session_id)

        async def closing() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await cli.close()
            except Exception as exc:
                logger.warning("closing a warm CLI failed: %s", exc)
            finally:
                if self._closing.get(cli.session_id) is task:
                    del self._closing[cli.session_id]

        task = asyncio.create_task(closing())
        self._closing[cli.session_id] = task
