"""A turn on a warm CLI (agent_runner.warm), and the start of one: the
runner's side of the streaming-input protocol.

`launch` lays the session's workspace and verb tool and starts the CLI in
its sandbox exactly as a per-turn CLI is (the runner's own helpers), then
waits for its answer to `initialize`. `run` binds the verb tool to the
turn, writes the prompt, and records the CLI's lines up to the `result`;
the lease, the reaper and the turn's end stay the runner's
(`turns.TurnRunner.run`), with the same outcomes as a per-turn CLI, and a
CLI that dies mid-turn ends it `interrupted` (the next turn resumes the
conversation from the transcript with a new CLI).

`self` is the TurnRunner: these are its methods, kept apart so that
`turns` stays about one turn whatever runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from events.kinds import (
    CliSessionBound,
    Envelope,
    Outcome,
    ResultReported,
    ToolCalled,
    TurnFailed,
    TurnInterrupted,
)

from . import home_template, metrics
from .cli import CliProcess, argv
from .devvm import with_vm
from .translate import Translator
from .warm import WarmCli

if TYPE_CHECKING:
    from .turns import ActiveTurn, Recorder, TurnRunner

logger = logging.getLogger("agent-runner.turns")

#: Stop on a warm CLI: how long its own interrupt gets to end the turn
#: before the process group is signalled (SIGINT, then SIGKILL).
INTERRUPT_SECONDS = 2.0


async def launch(self: TurnRunner, session_id: str, model: str, vm_name: str | None) -> WarmCli:
    """A CLI for the session's next turns, laid out and contained exactly
    like a per-turn one (the session's VM told, its devvm reachable),
    waiting for its first prompt on stdin."""
    vm = self._vm(vm_name)
    if vm is None:
        raise ValueError(f"VM {vm_name!r} is not in BREAKGLASS_VMS")
    devvm = self._devvm(vm_name, vm)
    ws = self._workspace(session_id, devvm)
    verbs = self._verb_tool(ws, None, None, vm)
    try:
        mcp_config = await verbs.start()
        invocation = self._invocation(ws, session_id, model, mcp_config, with_vm(self.system_prompt, vm, devvm))
        with contextlib.ExitStack() as files:
            args, fds = self._contained(argv(invocation, None), ws, verbs, files)
            process = await CliProcess.start(args, self._environment(ws), str(ws.work), pass_fds=fds,
                                             sandboxed=self.sandbox is not None, streaming=True)
    except BaseException:
        await verbs.close()
        raise
    logger.info("warm CLI started, pid %d (%s session)", process.pid, "resumed" if invocation.resume else "new")
    warm = WarmCli(session_id=session_id, model=model, vm=vm_name, process=process, verbs=verbs, ws=ws, stamp=None)
    try:
        await warm.ready()
    except BaseException:
        await warm.close()
        raise
    warm.stamp = ws.transcript()  # after its start-up: a resumed CLI writes to it then
    if self.home_state is None:  # no prompt has reached it: the CLI's own first-run state
        self.home_state = home_template.read(ws.home)
        if self.home_state is not None:
            logger.info("took the CLI's first-run state as the home template (%s)", ", ".join(self.home_state))
    return warm


@dataclass
class _Read:
    """What reading a turn off the CLI saw, kept outside the read so that
    a read ended by an exception still tells how far it got."""

    lines: int = 0
    #: The `result`'s error, when the CLI reported one.
    failed: str | None = None
    timed_out: bool = False
    #: The CLI's output ended (or its stdin closed) before a `result`.
    died: bool = False
    exit_code: int | None = None


async def run(
    self: TurnRunner, turn: ActiveTurn, recorder: Recorder, warm: WarmCli,
) -> tuple[Outcome, Envelope | None] | None:
    """The turn on the session's warm CLI: the prompt on its stdin, its
    lines up to the `result`. None: the CLI was gone before printing a
    line (killed between turns), so nothing ran and the turn may start
    its own CLI."""
    if turn.stop.is_set():
        return self._cancelled(turn, recorder)
    read = await _converse(self, turn, recorder, warm)
    if read.died:
        warm.spent = True
        read.exit_code = await warm.process.wait()
        metrics.cli_exited(read.exit_code)
        if read.lines == 0 and turn.cancelled_by is None:
            return None
    if turn.cancelled_by is not None:
        return self._cancelled(turn, recorder)
    return _ending(self, read, recorder)


async def _converse(self: TurnRunner, turn: ActiveTurn, recorder: Recorder, warm: WarmCli) -> _Read:
    """The warm CLI's verb tool acts for this turn, and a stop reaches the
    CLI, only while the turn reads: bound before the prompt and let go
    however the read ends (its pending approvals denied), so nothing acts
    for a turn that is over."""
    from .turns import turn_policy  # turns imports this module

    cmd = turn.command
    warm.verbs.bind(cmd, recorder, turn_policy(cmd, self.settings))
    turn.verbs = warm.verbs
    read = _Read()
    stopper = asyncio.create_task(_interrupt_on_signal(self, turn, warm))
    try:
        async with asyncio.timeout(self.settings.turn_timeout_seconds):
            await _prompt_and_record(turn, recorder, warm, read)
    except TimeoutError:
        read.timed_out = True
        warm.spent = True
        await warm.process.stop(self.settings.cancel_grace_seconds)
    except ConnectionError:  # stdin closed under us: the CLI is gone
        read.died = True
    finally:
        stopper.cancel()
        turn.verbs = None
        await warm.verbs.unbind()
    return read


async def _prompt_and_record(turn: ActiveTurn, recorder: Recorder, warm: WarmCli, read: _Read) -> None:
    """The prompt, then each line as events up to the `result`: the CLI
    stays for the next turn, so its output never ends on its own; when it
    does, the CLI died."""
    translator = Translator(turn.command.session_id, turn.command.turn_id)
    await warm.prompt(turn.command.prompt)
    async for line in warm.process.lines():
        read.lines += 1
        turn.last_output = read_at = time.monotonic()
        for event in translator.feed(line):
            _note(event, warm, translator, read)
            await recorder.record(event, read_at=read_at)
        if translator.saw_result:
            return
    read.died = True


def _note(event: Envelope, warm: WarmCli, translator: Translator, read: _Read) -> None:
    """What an event tells beyond the log: that the CLI's session exists
    (the next CLI resumes it), that the CLI may have changed files (the
    next turn gets a clean one), and how the turn ended."""
    if isinstance(event, CliSessionBound):
        warm.ws.mark_started()
    elif isinstance(event, ToolCalled) and event.name == "Bash":
        warm.spent = True
    elif isinstance(event, ResultReported):
        read.failed = (translator.last_error or "error") if event.is_error else None


def _ending(self: TurnRunner, read: _Read, recorder: Recorder) -> tuple[Outcome, Envelope | None]:
    """The outcomes a per-turn CLI has, plus `interrupted` for a warm CLI
    that died mid-turn: the next turn resumes from the transcript."""
    if read.timed_out:
        minutes = self.settings.turn_timeout_seconds / 60
        return Outcome.TIMEOUT, TurnFailed(
            error=f"the turn timed out after {minutes:g} min and was stopped", **recorder.envelope("agent-runner"))
    if read.died:
        reason = (f"the agent's CLI ended mid-turn (exit code {read.exit_code}); "
                  "the next turn resumes the conversation")
        return Outcome.INTERRUPTED, TurnInterrupted(reason=reason, **recorder.envelope("agent-runner"))
    if read.failed is not None:
        return Outcome.ERROR, TurnFailed(
            error=f"the Claude CLI failed: {read.failed[:2000]}", **recorder.envelope("agent-runner"))
    return Outcome.OK, None


async def _interrupt_on_signal(self: TurnRunner, turn: ActiveTurn, warm: WarmCli) -> None:
    """Stop: the CLI's own interrupt (it answers with the turn's
    `result` and stays usable); if that does not end the turn in
    INTERRUPT_SECONDS, the process group's SIGINT then SIGKILL."""
    await turn.stop.wait()
    with contextlib.suppress(ConnectionError):
        await warm.interrupt()
    await asyncio.sleep(INTERRUPT_SECONDS)
    logger.warning("the CLI did not end the turn on its interrupt; signalling it")
    warm.spent = True
    await warm.process.stop(self.settings.cancel_grace_seconds)
