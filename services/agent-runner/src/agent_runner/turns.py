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
import contextlib
import json
import time
from collections import deque
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from nats.aio.client import Client

from events import subjects
from events.codec import encode
from events.commands import Ending, Running, StartTurn
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
from eventbus.locks import TurnLocks, end_msg_id
from eventbus.log import EventLog
from eventbus.retry import Backoff, polling, retrying
from events.vms import Vm

from . import metrics, warm_turn
from .devvm import DevvmTarget, with_vm
from .cli import TURN_SETTINGS, CliProcess, Invocation, argv, environment
from .sandbox import Mounts, Sandbox
from .settings import APPROVE_MUTATING, Settings
from .translate import Translator
from .verb_tool import TOOL_NAME, VerbTool
from .warm import WarmCli, WarmPool
from .workspace import Workspace

logger = logging.getLogger("agent-runner.turns")

APPEND_RETRY_SECONDS = 30.0
#: NATS reconnecting: the lock's calls try again every 0.2 s, the appends back off to 2 s.
THROUGH_RECONNECTS = Backoff(APPEND_RETRY_SECONDS, 0.2)
APPEND_BACKOFF = Backoff(APPEND_RETRY_SECONDS, 0.2, most=2.0)
#: Stored events a turn may have queued but not confirmed before the
#: recorder waits for them (backpressure while NATS is slow or away).
MAX_PENDING = 2000

T = TypeVar("T")


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
    #: When this runner last renewed the turn's lease (monotonic).
    renewed_at: float = field(default_factory=time.monotonic)

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
    #: The box the CLI runs in; None when none could be made (`unsandboxed` says why).
    sandbox: Sandbox | None = None
    unsandboxed: str = ""
    #: The warm CLIs (agent_runner.warm); None: every turn starts its own.
    warm: WarmPool | None = None
    #: The CLI's first-run state, laid in every HOME (agent_runner.home_template).
    home_state: dict | None = None

    def __post_init__(self) -> None:
        if self.settings.max_warm > 0:
            self.warm = WarmPool(self.launch_warm, max_warm=self.settings.max_warm,
                                 idle_seconds=self.settings.warm_idle_seconds, busy=self.active.__contains__)

    def prewarm(self, session_id: str, model: str | None = None, vm: str | None = None) -> bool:
        """Start the session's warm CLI ahead of need (a hint, or a turn's end)."""
        if self.warm is None or (self.sandbox is None and not self.settings.allow_unsandboxed):
            return False
        if self._vm(vm) is None:
            return False  # a VM this runner does not know: its turns will say so
        return self.warm.warm(session_id, model or self.settings.model, vm)

    async def run(self, command: StartTurn) -> None:
        try:
            await self._run(command)
        finally:
            self.prewarm(command.session_id, command.model, command.vm)

    async def _run(self, command: StartTurn) -> None:
        sid, tid = command.session_id, command.turn_id
        revision = await self._claim(sid, tid)
        if revision is None:
            logger.info("turn is no longer open (cancelled or reaped before pick-up); dropped")
            return
        turn = ActiveTurn(command)
        self.active[sid] = turn
        metrics.TURNS_STARTED.inc()
        recorder = Recorder(self.events, self.nc, command, guard=lambda: self._guard(turn))
        lease = asyncio.create_task(self._keep_lease(turn, recorder))
        try:
            outcome, reason = await self._run_cli(turn, recorder)
        except Exception as exc:
            logger.exception("turn failed inside the runner")
            outcome, reason = Outcome.ERROR, TurnFailed(error=f"the agent runner failed: {type(exc).__name__}", **recorder.envelope("agent-runner"))
        finally:
            lease.cancel()
            self.active.pop(sid, None)
        if turn.stop.is_set() and turn.cancelled_by is None:
            logger.warning("turn lost its lock (reaped); its end was recorded by the reaper")
            return
        if not await self._still_owner(turn):
            logger.warning("turn lost its lock before its end was written (reaped); the reaper records its end")
            return
        if reason is not None:
            await recorder.append(reason)
        if not await self._still_owner(turn, ending=True):
            logger.warning("turn lost its lock before its end was written (reaped); the reaper records its end")
            return
        await recorder.append(TurnEnded(outcome=outcome, **recorder.envelope("agent-runner")), msg_id=end_msg_id(tid))
        metrics.turn_ended(outcome, turn.started)
        logger.info("turn ended: %s after %.1f s", outcome.value, time.monotonic() - turn.started)
        await self._release(sid, tid)

    async def _claim(self, sid: str, tid: str) -> int | None:
        """Claim the turn's lock, through NATS reconnects: the command is
        already acknowledged, so a claim lost to a NATS blip would leave the
        turn unstarted until its pick-up lease lapses."""
        return await _through_reconnects("claim the turn's lock", lambda: self.locks.claim(sid, tid, self.owner))

    async def _release(self, sid: str, tid: str) -> None:
        """Free the lock right after `turn_end`, through NATS reconnects: a
        lock left behind blocks the session until its lease lapses."""
        await _through_reconnects("release the turn's lock", lambda: self.locks.release(sid, tid))

    async def _still_owner(self, turn: ActiveTurn, *, ending: bool = False) -> bool:
        """Renew the lease once more (CAS) before writing the turn's end: the
        lock decides who writes it. If this runner's lease lapsed (NATS away
        longer than the lease) and a reaper took the lock over, the reaper
        writes the end, never both (eventbus.locks.TurnLocks.reap). `ending`:
        right before `turn_end`, also move the lock to phase `ending`
        (events.commands.Ending), so a reaper never writes `interrupted`
        after a `turn_end` this runner stored but did not release."""
        mine = await polling(  # raced (None): ask again; NATS briefly away: retry like the appends do
            lambda: self._renew(turn, ending=ending), THROUGH_RECONNECTS, retry_on=lambda exc: True,
            on_retry=lambda exc: logger.warning("could not confirm the turn's lock before its end: %s; retrying", exc),
        )
        return bool(mine)  # None: out of time; its lease lapses and a reaper ends the turn

    async def _renew(self, turn: ActiveTurn, *, ending: bool = False) -> bool | None:
        """One renewal (CAS) of the lease if the lock is still this runner's:
        True renewed, False lost (reaped or taken), None raced (try again)."""
        command = turn.command
        held = await self.locks.current(command.session_id)
        mine = (Running(runner=self.owner), Ending(runner=self.owner))
        if held is None or held.lock.turn_id != command.turn_id or held.lock.phase not in mine:
            return False
        phase = mine[1] if ending else held.lock.phase
        if await self.locks.renew(command.session_id, command.turn_id, phase, held.revision) is None:
            return None
        turn.renewed_at = time.monotonic()
        return True

    async def _guard(self, turn: ActiveTurn) -> bool:
        """Before each stored event of the turn: is the turn still this
        runner's? While the lease was renewed recently, yes; after a longer
        silence (NATS away) a reaper may have ended the turn, so ask the lock
        (CAS) first, and record nothing more if it is lost: nothing of a
        turn may follow its `turn_end`."""
        if turn.stop.is_set() and turn.cancelled_by is None:
            return False  # lost its lock already
        if time.monotonic() - turn.renewed_at < self.settings.lease_seconds / 2:
            return True
        if await self._still_owner(turn):
            return True
        turn.stop.set()  # stop the CLI; the reaper wrote the end
        return False

    async def _keep_lease(self, turn: ActiveTurn, recorder: "Recorder") -> None:
        """Renew the lease, and tell attached clients the turn is alive."""
        while True:
            await recorder.record(self._status(turn))
            await asyncio.sleep(self.settings.lease_renew_seconds)
            try:
                mine = await self._renew(turn)
            except Exception as exc:  # NATS briefly away: try again next round, the lease has slack
                logger.warning("could not renew the lease: %s", exc)
                continue
            if mine is False:
                turn.stop.set()  # reaped or taken: stop the CLI, do not write an end
                return

    def _status(self, turn: ActiveTurn) -> TurnStatus:
        now = time.monotonic()
        return TurnStatus(
            session_id=turn.command.session_id, turn_id=turn.command.turn_id, by="agent-runner",
            elapsed_seconds=round(now - turn.started, 1), since_output_seconds=round(now - turn.last_output, 1),
            lease_seconds=self.settings.lease_seconds, runner=self.owner,
        )

    async def _run_cli(self, turn: ActiveTurn, recorder: "Recorder") -> tuple[Outcome, Envelope | None]:
        cmd = turn.command
        if self.sandbox is None and not self.settings.allow_unsandboxed:
            error = f"no turn runs without the agent's sandbox: {self.unsandboxed} (README: Threat model)"
            return Outcome.ERROR, TurnFailed(error=error, **recorder.envelope("agent-runner"))
        vm = self._vm(cmd.vm)
        if vm is None:
            error = (f"this session is about VM {cmd.vm!r}, which is not in agent-runner's BREAKGLASS_VMS "
                     f"({', '.join(v.name for v in self.settings.vms.vms)}); nothing was run")
            return Outcome.ERROR, TurnFailed(error=error, **recorder.envelope("agent-runner"))
        warm = await self.warm.claim(cmd.session_id, cmd.model, cmd.vm) if self.warm is not None else None
        if warm is not None:
            try:
                ended = await warm_turn.run(self, turn, recorder, warm)
            finally:
                self.warm.release(warm)  # type: ignore[union-attr]
            if ended is not None:
                metrics.TURN_STARTS.labels(start="warm").inc()
                return ended
            logger.warning("the warm CLI was gone before it read the prompt; starting one for the turn")
        devvm = self._devvm(cmd.vm, vm)
        ws = self._workspace(cmd.session_id, devvm)
        if turn.stop.is_set():
            return self._cancelled(turn, recorder)
        verbs = self._verb_tool(ws, cmd, recorder, vm)
        turn.verbs = verbs
        metrics.TURN_STARTS.labels(start="cold").inc()
        try:
            mcp_config = await verbs.start()
            invocation = self._invocation(ws, cmd.session_id, cmd.model, mcp_config, with_vm(self.system_prompt, vm, devvm))
            return await self._run_process(turn, recorder, ws, invocation, self._environment(ws), verbs)
        finally:
            turn.verbs = None
            await verbs.close()

    # ------------------------------------------------------------ what a CLI gets

    def _vm(self, name: str | None) -> Vm | None:
        """The session's VM (None: not one this runner knows)."""
        return self.settings.vms.named(name) if name is not None else self.settings.vms.default

    def _devvm(self, name: str | None, vm: Vm) -> DevvmTarget | None:
        return self.settings.devvm_for(vm) if name is not None or vm.devvm is not None else self.settings.devvm

    def _workspace(self, session_id: str, devvm: DevvmTarget | None) -> Workspace:
        """The session's workspace, cleaned (workspace: a clean agent every CLI)."""
        ws = Workspace.for_session(self.settings.data_dir, session_id)
        return ws.prepare(devvm.ssh_config() if devvm else None, self.home_state)

    def _verb_tool(self, ws: Workspace, command: StartTurn | None, recorder: "Recorder | None", vm: Vm) -> VerbTool:
        settings = self.settings
        return VerbTool(
            command=command, root=ws.root, records=recorder, nc=self.nc, events=self.events,
            policy=turn_policy(command, settings) if command else settings.verb_policy,
            two_person=settings.two_person, vm=vm,
            approval_timeout_seconds=settings.approval_timeout_seconds, verb_wait_seconds=settings.verb_wait_seconds,
        )

    def _invocation(self, ws: Workspace, session_id: str, model: str, mcp_config: Path, system_prompt: str) -> Invocation:
        ws.settings.write_text(json.dumps(TURN_SETTINGS))
        return Invocation(
            bin=self.settings.claude_bin, model=model, session_id=session_id, resume=ws.started,
            system_prompt=system_prompt, mcp_config=str(mcp_config), extra_tools=(TOOL_NAME,),
            settings=str(ws.settings),
        )

    def _environment(self, ws: Workspace) -> dict[str, str]:
        # The CLI must outwait the longest verb answer: approval, then the executor.
        settings = self.settings
        tool_timeout = settings.approval_timeout_seconds + settings.verb_wait_seconds + 60
        return environment(self.runner_env, ws, mcp_tool_timeout_seconds=tool_timeout)

    # ------------------------------------------------------------ warm CLIs

    async def launch_warm(self, session_id: str, model: str, vm: str | None) -> WarmCli:
        return await warm_turn.launch(self, session_id, model, vm)

    async def _run_process(
        self, turn: ActiveTurn, recorder: "Recorder", ws: Workspace, invocation: Invocation, env: dict[str, str],
        verbs: VerbTool,
    ) -> tuple[Outcome, Envelope | None]:
        cmd = turn.command
        try:
            with contextlib.ExitStack() as files:
                args, fds = self._contained(argv(invocation, cmd.prompt), ws, verbs, files)
                process = await CliProcess.start(args, env, str(ws.work), pass_fds=fds, sandboxed=self.sandbox is not None)
        except OSError as exc:
            return Outcome.ERROR, TurnFailed(error=f"the Claude CLI could not start: {exc.strerror or exc}", **recorder.envelope("agent-runner"))
        logger.info("CLI started, pid %d (%s session)", process.pid, "resumed" if invocation.resume else "new")
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
                        await recorder.record(event, read_at=read_at)
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

    def _contained(
        self, args: list[str], ws: Workspace, verbs: VerbTool, files: contextlib.ExitStack,
    ) -> tuple[list[str], tuple[int, ...]]:
        """The CLI's argv inside the sandbox, and the descriptors of the
        secret files it gets (the devvm key and its known hosts), open until
        the sandbox has copied them."""
        box = self.sandbox
        if box is None:
            logger.warning("the CLI runs WITHOUT a sandbox (BREAKGLASS_ALLOW_UNSANDBOXED_AGENT=1)")
            return args, ()
        wanted = [self.settings.devvm_key_file, self.settings.devvm_known_hosts]
        given = {}
        for path in filter(None, wanted):
            given[Path(path)] = files.enter_context(open(path, "rb")).fileno()
        extra = () if verbs.socket_path.parent == ws.root else (verbs.socket_path,)
        box.hand_over(ws.home, ws.work, ws.tmp, ws.settings, verbs.socket_path, verbs.config_path)
        mounts = Mounts(root=ws.root, writable=(ws.home, ws.work, ws.tmp), files=given, extra=extra)
        return box.argv(args, mounts, ws.work), tuple(given.values())

    async def _stop_on_signal(self, turn: ActiveTurn, process: CliProcess) -> None:
        await turn.stop.wait()
        await process.stop(self.settings.cancel_grace_seconds)

    def _cancelled(self, turn: ActiveTurn, recorder: "Recorder") -> tuple[Outcome, Envelope]:
        return Outcome.CANCELLED, TurnCancelled(**recorder.envelope(turn.cancelled_by or "operator"))


def turn_policy(command: StartTurn, settings: Settings) -> str:
    """The verb policy of one turn: a read-only turn (an alert's triage, no
    human watching) always waits for a human's Approve before a mutating
    verb, whatever `BREAKGLASS_VERB_POLICY` says."""
    return APPROVE_MUTATING if command.read_only else settings.verb_policy


async def _through_reconnects(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, tried again while NATS reconnects (for up to
    APPEND_RETRY_SECONDS, like the appends); then its error propagates."""
    return await retrying(attempt, THROUGH_RECONNECTS,
                          on_retry=lambda exc: logger.warning("could not %s: %s; retrying", what, exc))


class Recorder:
    """Writes a turn's events: stored ones to the log (idempotent message ids,
    retried while NATS reconnects), live-only ones to the live subject.

    Stored events are pipelined (eventbus.log.Appender): `record` queues an
    event and returns without waiting for its ack, and whatever queued up
    while a batch was in flight goes out as the next atomic batch, so the
    runner records at the bus's speed instead of one round trip per CLI
    line. Order and the hash chain are the appender's. `append` (the turn's
    end, verb phases) waits until it and everything before it are stored.
    If a batch fails (NATS away), the appender is dropped and the events it
    did not confirm are appended again one by one, in order, with their
    message ids: one that was stored after all is recognised as a duplicate
    and not stored twice."""

    def __init__(self, events: EventLog, nc: Client, command: StartTurn, guard=None) -> None:  # type: ignore[no-untyped-def]
        self._events = events
        self._nc = nc
        self._command = command
        self._count = 0
        #: Asked before each attempt to store an event: False drops it (the
        #: turn lost its lock to a reaper, see TurnRunner._guard).
        self._guard = guard
        self._appender = events.appender(command.session_id)
        #: Queued events not known to be stored yet: (event, msg id, future).
        self._pending: deque[tuple[Envelope, str, asyncio.Future[int]]] = deque()

    def envelope(self, by: str) -> dict:
        return {"session_id": self._command.session_id, "turn_id": self._command.turn_id, "by": by}

    async def record(self, event: Envelope, *, read_at: float | None = None) -> None:
        if isinstance(event, (TextDelta, TurnStatus)):
            try:
                await self._nc.publish(subjects.live(self._command.session_id), encode(event))
            except Exception:  # live frames are best effort; the whole text is stored anyway
                pass
            return
        if self._appender.failed or len(self._pending) >= MAX_PENDING:
            await self.flush()
        if self._guard is not None and not await self._guard():
            logger.warning("dropped a %s event: the turn lost its lock (reaped)", type(event).__name__)
            return
        self._count += 1
        msg_id = f"{self._command.turn_id}:{self._count}"
        future = self._appender.append(event, msg_id=msg_id)
        if read_at is not None:
            future.add_done_callback(lambda f: f.exception() or metrics.line_recorded(event, read_at))
        pending = self._pending
        pending.append((event, msg_id, future))
        while pending and pending[0][2].done() and pending[0][2].exception() is None:  # stored: forget it (oldest first)
            pending.popleft()

    async def flush(self) -> None:
        """Wait until every queued event is stored; append again, one by one,
        what a failed batch left unconfirmed."""
        pending, self._pending = self._pending, deque()
        if pending:
            await asyncio.wait([future for _, _, future in pending])
        retry = [(event, msg_id) for event, msg_id, future in pending if future.exception() is not None]
        if retry or self._appender.failed:
            self._appender = self._events.appender(self._command.session_id)
        for event, msg_id in retry:
            await self._append_retrying(event, msg_id, guarded=True)

    async def append(self, event: Envelope, *, msg_id: str | None = None) -> None:
        await self.flush()
        self._count += 1
        await self._append_retrying(event, msg_id or f"{self._command.turn_id}:{self._count}", guarded=True)

    async def _append_retrying(self, event: Envelope, msg_id: str, *, guarded: bool = True) -> None:
        async def attempt() -> None:
            if guarded and self._guard is not None and not await self._guard():
                logger.warning("dropped a %s event: the turn lost its lock (reaped)", type(event).__name__)
                return
            await self._events.append(event, msg_id=msg_id)

        await retrying(attempt, APPEND_BACKOFF, on_retry=lambda exc: logger.warning("append failed (%s); retrying", exc))
