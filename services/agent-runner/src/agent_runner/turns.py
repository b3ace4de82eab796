"""One turn, start to end: claim the lock, run the CLI, record what it says,
and always finish with exactly one `turn_end`.

Detached by design: nothing here knows whether a browser is attached. Every
path out (success, CLI error, Stop, timeout, crash of the CLI, lock lost)
writes its reason and `turn_end`, then releases the lock.

Each turn also opens the agent's power-verb tool (`verb_tool`) for the
CLI's lifetime: a socket only this turn's MCP server is told about, closed
(pending approvals denied) before the turn's end is written.
"""

from __future__ import annotations

import asyncio
import time
import logging
import os
from dataclasses import dataclass, field

from nats.aio.client import Client

from events import subjects
from events.codec import encode
from events.commands import StartTurn
from events.kinds import (
    CliSessionBound,
    Envelope,
    Outcome,
    TextDelta,
    TurnStatus,
    TurnCancelled,
    TurnEnded,
    TurnFailed,
)
from events.locks import TurnLocks, end_msg_id
from events.log import EventLog

from . import metrics
from .cli import CliProcess, Invocation, argv, environment
from .settings import Settings
from .translate import Translator
from .verb_tool import TOOL_NAME, VerbTool
from .workspace import Workspace

log = logging.getLogger("agent-runner.turns")

APPEND_RETRY_SECONDS = 30.0


@dataclass
class ActiveTurn:
    """A running turn, as the cancel handler sees it."""

    command: StartTurn
    cancelled_by: str | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    #: When the CLI last printed a line (monotonic), for the heartbeat.
    last_output: float = field(default_factory=time.monotonic)
    #: The turn's verb tool while the CLI runs (approval answers go there).
    verbs: VerbTool | None = None

    def cancel(self, by: str) -> None:
        if self.cancelled_by is None:
            self.cancelled_by = by
        self.stop.set()


@dataclass
class TurnRunner:
    settings: Settings
    nc: Client
    events: EventLog
    locks: TurnLocks
    owner: str
    system_prompt: str = ""
    runner_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    active: dict[str, ActiveTurn] = field(default_factory=dict)

    async def run(self, command: StartTurn) -> None:
        sid, tid = command.session_id, command.turn_id
        revision = await self.locks.claim(sid, tid, self.owner)
        if revision is None:
            log.info("turn is no longer open (cancelled or reaped before pick-up); dropped")
            return
        turn = ActiveTurn(command)
        self.active[sid] = turn
        metrics.TURNS_STARTED.inc()
        recorder = Recorder(self.events, self.nc, command)
        lease = asyncio.create_task(self._keep_lease(turn, revision, recorder))
        try:
            outcome, reason = await self._run_cli(turn, recorder)
        except Exception as exc:
            log.exception("turn failed inside the runner")
            outcome, reason = Outcome.ERROR, TurnFailed(error=f"the agent runner failed: {type(exc).__name__}", **recorder.envelope("agent-runner"))
        finally:
            lease.cancel()
            self.active.pop(sid, None)
        if turn.stop.is_set() and turn.cancelled_by is None:
            log.warning("turn lost its lock (reaped); its end was recorded by the reaper")
            return
        if reason is not None:
            await recorder.append(reason)
        await recorder.append(TurnEnded(outcome=outcome, **recorder.envelope("agent-runner")), msg_id=end_msg_id(tid))
        metrics.turn_ended(outcome, turn.started)
        log.info("turn ended: %s after %.1f s", outcome.value, time.monotonic() - turn.started)
        await self.locks.release(sid, tid)

    async def _keep_lease(self, turn: ActiveTurn, revision: int, recorder: "Recorder") -> None:
        """Renew the lease, and tell attached clients the turn is alive."""
        cmd = turn.command
        while True:
            await recorder.record(self._status(turn))
            await asyncio.sleep(self.settings.lease_renew_seconds)
            try:
                renewed = await self.locks.renew(cmd.session_id, cmd.turn_id, self.owner, revision)
            except Exception as exc:  # NATS briefly away: try again next round, the lease has slack
                log.warning("could not renew the lease: %s", exc)
                continue
            if renewed is None:
                turn.stop.set()  # reaped or taken: stop the CLI, do not write an end
                return
            revision = renewed

    def _status(self, turn: ActiveTurn) -> TurnStatus:
        now = time.monotonic()
        return TurnStatus(
            session_id=turn.command.session_id, turn_id=turn.command.turn_id, by="agent-runner",
            elapsed_seconds=round(now - turn.started, 1), since_output_seconds=round(now - turn.last_output, 1),
            lease_seconds=self.settings.lease_seconds, runner=self.owner,
        )

    async def _run_cli(self, turn: ActiveTurn, recorder: "Recorder") -> tuple[Outcome, Envelope | None]:
        cmd = turn.command
        devvm = self.settings.devvm
        ws = Workspace.for_session(self.settings.data_dir, cmd.session_id).prepare(devvm.ssh_config() if devvm else None)
        if turn.stop.is_set():
            return self._cancelled(turn, recorder)
        settings = self.settings
        verbs = VerbTool(
            command=cmd, root=ws.root, records=recorder, nc=self.nc, events=self.events, policy=settings.verb_policy,
            approval_timeout_seconds=settings.approval_timeout_seconds, verb_wait_seconds=settings.verb_wait_seconds,
        )
        turn.verbs = verbs
        try:
            mcp_config = await verbs.start()
            invocation = Invocation(
                bin=settings.claude_bin, model=cmd.model, session_id=cmd.session_id, resume=ws.started,
                system_prompt=self.system_prompt, mcp_config=str(mcp_config), extra_tools=(TOOL_NAME,),
            )
            # The CLI must outwait the longest verb answer: approval, then the executor.
            tool_timeout = settings.approval_timeout_seconds + settings.verb_wait_seconds + 60
            env = environment(self.runner_env, ws, mcp_tool_timeout_seconds=tool_timeout)
            return await self._run_process(turn, recorder, ws, invocation, env)
        finally:
            turn.verbs = None
            await verbs.close()

    async def _run_process(
        self, turn: ActiveTurn, recorder: "Recorder", ws: Workspace, invocation: Invocation, env: dict[str, str],
    ) -> tuple[Outcome, Envelope | None]:
        cmd = turn.command
        try:
            process = await CliProcess.start(argv(invocation, cmd.prompt), env, str(ws.work))
        except OSError as exc:
            return Outcome.ERROR, TurnFailed(error=f"the Claude CLI could not start: {exc.strerror or exc}", **recorder.envelope("agent-runner"))
        log.info("CLI started, pid %d (%s session)", process.pid, "resumed" if invocation.resume else "new")
        translator = Translator(cmd.session_id, cmd.turn_id)
        stopper = asyncio.create_task(self._stop_on_signal(turn, process))
        timed_out = False
        try:
            async with asyncio.timeout(self.settings.turn_timeout_seconds):
                async for line in process.lines():
                    turn.last_output = read_at = time.monotonic()
                    for event in translator.feed(line):
                        if isinstance(event, CliSessionBound):
                            ws.mark_started()
                        await recorder.record(event)
                        metrics.line_recorded(event, read_at)
        except TimeoutError:
            timed_out = True
            await process.stop(self.settings.cancel_grace_seconds)
        finally:
            stopper.cancel()
        code = await process.wait()
        metrics.cli_exited(code)
        if turn.cancelled_by is not None:
            return self._cancelled(turn, recorder)
        if timed_out:
            minutes = self.settings.turn_timeout_seconds / 60
            return Outcome.TIMEOUT, TurnFailed(error=f"the turn timed out after {minutes:g} min and was stopped", **recorder.envelope("agent-runner"))
        if code != 0:
            detail = translator.last_error or process.stderr_text() or "no output"
            return Outcome.ERROR, TurnFailed(error=f"the Claude CLI exited with code {code}: {detail[:2000]}", **recorder.envelope("agent-runner"))
        if not translator.saw_result:
            return Outcome.ERROR, TurnFailed(error="the Claude CLI ended without a result", **recorder.envelope("agent-runner"))
        return Outcome.OK, None

    async def _stop_on_signal(self, turn: ActiveTurn, process: CliProcess) -> None:
        await turn.stop.wait()
        await process.stop(self.settings.cancel_grace_seconds)

    def _cancelled(self, turn: ActiveTurn, recorder: "Recorder") -> tuple[Outcome, Envelope]:
        return Outcome.CANCELLED, TurnCancelled(**recorder.envelope(turn.cancelled_by or "operator"))


class Recorder:
    """Writes a turn's events: stored ones to the log (idempotent message ids,
    retried while NATS reconnects), live-only ones to the live subject."""

    def __init__(self, events: EventLog, nc: Client, command: StartTurn) -> None:
        self._events = events
        self._nc = nc
        self._command = command
        self._count = 0

    def envelope(self, by: str) -> dict:
        return {"session_id": self._command.session_id, "turn_id": self._command.turn_id, "by": by}

    async def record(self, event: Envelope) -> None:
        if isinstance(event, (TextDelta, TurnStatus)):
            try:
                await self._nc.publish(subjects.live(self._command.session_id), encode(event))
            except Exception:  # live frames are best effort; the whole text is stored anyway
                pass
            return
        await self.append(event)

    async def append(self, event: Envelope, *, msg_id: str | None = None) -> None:
        self._count += 1
        msg_id = msg_id or f"{self._command.turn_id}:{self._count}"
        deadline = asyncio.get_running_loop().time() + APPEND_RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                await self._events.append(event, msg_id=msg_id)
                return
            except Exception as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("append failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
