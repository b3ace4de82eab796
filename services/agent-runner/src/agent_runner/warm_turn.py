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

log = logging.getLogger("agent-runner.turns")

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
    log.info("warm CLI started, pid %d (%s session)", process.pid, "resumed" if invocation.resume else "new")
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
            log.info("took the CLI's first-run state as the home template (%s)", ", ".join(self.home_state))
    return warm


async def run(
    self: TurnRunner, turn: ActiveTurn, recorder: Recorder, warm: WarmCli,
) -> tuple[Outcome, Envelope | None] | None:
    """The turn on the session's warm CLI: the prompt on its stdin, its
    lines up to the `result`. None: the CLI was gone before printing a
    line (killed between turns), so nothing ran and the turn may start
    its own CLI."""
    cmd = turn.command
    if turn.stop.is_set():
        return self._cancelled(turn, recorder)
    from .turns import turn_policy  # turns imports this module

    warm.verbs.bind(cmd, recorder, turn_policy(cmd, self.settings))
    turn.verbs = warm.verbs
    translator = Translator(cmd.session_id, cmd.turn_id)
    stopper = asyncio.create_task(_interrupt_on_signal(self, turn, warm))
    timed_out = died = False
    lines = 0
    failed: str | None = None
    try:
        async with asyncio.timeout(self.settings.turn_timeout_seconds):
            await warm.prompt(cmd.prompt)
            async for line in warm.process.lines():
                lines += 1
                turn.last_output = read_at = time.monotonic()
                for event in translator.feed(line):
                    if isinstance(event, CliSessionBound):
                        warm.ws.mark_started()
                    elif isinstance(event, ToolCalled) and event.name == "Bash":
                        warm.spent = True  # it may have written files: the next turn starts clean
                    elif isinstance(event, ResultReported):
                        failed = (translator.last_error or "error") if event.is_error else None
                    await recorder.record(event, read_at=read_at)
                if translator.saw_result:
                    break
            else:
                died = True
    except TimeoutError:
        timed_out = True
        warm.spent = True
        await warm.process.stop(self.settings.cancel_grace_seconds)
    except ConnectionError:  # stdin closed under us: the CLI is gone
        died = True
    finally:
        stopper.cancel()
        turn.verbs = None
        await warm.verbs.unbind()
    if died:
        warm.spent = True
        code = await warm.process.wait()
        metrics.cli_exited(code)
        if lines == 0 and turn.cancelled_by is None:
            return None
    if turn.cancelled_by is not None:
        return self._cancelled(turn, recorder)
    if timed_out:
        minutes = self.settings.turn_timeout_seconds / 60
        return Outcome.TIMEOUT, TurnFailed(error=f"the turn timed out after {minutes:g} min and was stopped", **recorder.envelope("agent-runner"))
    if died:
        reason = f"the agent's CLI ended mid-turn (exit code {code}); the next turn resumes the conversation"
        return Outcome.INTERRUPTED, TurnInterrupted(reason=reason, **recorder.envelope("agent-runner"))
    if failed is not None:
        return Outcome.ERROR, TurnFailed(error=f"the Claude CLI failed: {failed[:2000]}", **recorder.envelope("agent-runner"))
    return Outcome.OK, None


async def _interrupt_on_signal(self: TurnRunner, turn: ActiveTurn, warm: WarmCli) -> None:
    """Stop: the CLI's own interrupt (it answers with the turn's
    `result` and stays usable); if that does not end the turn in
    INTERRUPT_SECONDS, the process group's SIGINT then SIGKILL."""
    await turn.stop.wait()
    with contextlib.suppress(ConnectionError):
        await warm.interrupt()
    await asyncio.sleep(INTERRUPT_SECONDS)
    log.warning("the CLI did not end the turn on its interrupt; signalling it")
    warm.spent = True
    await warm.process.stop(self.settings.cancel_grace_seconds)
