"""Wires agent-runner: settings, NATS, topology, the prompt consumer, the
cancel, approval and warm-hint listeners, the reaper of lapsed turns and
the expiry of idle warm CLIs."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from eventbus import bus, trace
from events import subjects
from events.config import ConfigError
from events.codec import ContractError, decode_command, encode
from events.commands import AnswerApproval, ApprovalReply, CancelReply, CancelTurn, StartTurn, WarmSession
from eventbus.consumer import consume
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.metrics import serving
from eventbus.topology import RUNNER_CONSUMER, Topology, ensure

from . import cli, identity, metrics, sandbox
from .agent import instructions
from .settings import Settings
from .turns import TurnRunner

logger = logging.getLogger("agent-runner")

C = TypeVar("C", CancelTurn, AnswerApproval, WarmSession)

#: Also bounds how long a lapsed lock waits (eventbus.locks.PENDING_LEASE_SECONDS + this).
REAP_EVERY_SECONDS = 2.0


async def main(stop: asyncio.Event, settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    # Scrapeable from the start: while NATS is away, a scrape says so.
    with serving(settings.metrics_host, settings.metrics_port):
        await run(stop, settings)


async def check_cli(settings: Settings) -> None:
    """Refuse a CLI older than the runner supports, in one line; a CLI that
    is missing or says no version is only warned about (turns will say why)."""
    version = await cli.installed_version(settings.claude_bin)
    if version is None:
        logger.warning("could not read `%s --version`; turns will fail if the CLI is missing", settings.claude_bin)
    elif version < cli.MIN_CLI_VERSION:
        raise ConfigError(
            f"BREAKGLASS_CLAUDE_BIN: Claude Code CLI {'.'.join(map(str, version))} is older than the supported "
            f"{'.'.join(map(str, cli.MIN_CLI_VERSION))}; update it (README: Supported versions)"
        )


def make_sandbox(settings: Settings) -> tuple[sandbox.Sandbox | None, str]:
    """The CLI's sandbox, or None and why there is none (said once here, in
    one line, and again in every turn it refuses)."""
    try:
        box = sandbox.make(settings.data_dir, settings.claude_bin, home=os.environ.get("HOME"))
    except sandbox.Unavailable as exc:
        if settings.allow_unsandboxed:
            logger.error("NO SANDBOX for the agent (%s) and BREAKGLASS_ALLOW_UNSANDBOXED_AGENT=1: the CLI runs with "
                      "this runner's uid and sees this machine's files and processes", exc)
        else:
            logger.error("no turn will run: %s (or set BREAKGLASS_ALLOW_UNSANDBOXED_AGENT=1, README: Threat model)", exc)
        return None, str(exc)
    who = f"uid {box.agent[0]}" if box.agent else "a user namespace"
    logger.info("the agent runs sandboxed (bubblewrap, %s)", who)
    return box, ""


async def run(stop: asyncio.Event, settings: Settings) -> None:
    await check_cli(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    box, why = await asyncio.to_thread(make_sandbox, settings)
    nc = await bus.connect_or_stop(settings.nats_url, "agent-runner", stop, logger=logger)
    if nc is None:
        return  # asked to stop before NATS was reachable
    try:
        js = nc.jetstream()
        topology = Topology.from_env()
        kv = await ensure(js, topology)
        events = EventLog(js, topology, writer="agent-runner")
        me = identity.acquire(settings.data_dir)
        runner = TurnRunner(
            settings=settings, nc=nc, events=events,
            locks=TurnLocks(kv, events, run_lease=settings.lease_seconds),
            owner=me.owner,
            system_prompt=instructions(settings.agent_file) if settings.agent_file else "",
            sandbox=box, unsandboxed=why,
        )
        metrics.watch(settings.turn_timeout_seconds, lambda: [turn.started for turn in list(runner.active.values())])
        await end_predecessors_turns(runner.locks, me)
        cancels = await nc.subscribe(subjects.CANCEL_ALL, cb=listener(
            CancelTurn, "cancel request", partial(on_cancel, runner, nc)))
        approvals = await nc.subscribe(subjects.APPROVAL_ALL, cb=listener(
            AnswerApproval, "approval answer", partial(on_approval, runner, nc)))
        hints = await nc.subscribe(subjects.WARM_ALL, queue=subjects.WARM_QUEUE, cb=listener(
            WarmSession, "warm hint", partial(on_warm, runner)))
        reaper = asyncio.create_task(reap_forever(runner.locks, stop))
        expiry = asyncio.create_task(runner.warm.expire_forever(stop)) if runner.warm is not None else None
        stopper = asyncio.create_task(cancel_on_stop(runner, stop))
        logger.info("runner %s consuming prompts (max %d concurrent turns)", runner.owner, settings.max_turns)
        try:
            await consume(
                js, RUNNER_CONSUMER, (StartTurn,), runner.run,
                stop=stop, logger=logger, topology=topology, concurrency=settings.max_turns,
            )
        finally:
            reaper.cancel()
            stopper.cancel()
            if expiry is not None:
                expiry.cancel()
            await cancels.unsubscribe()
            await approvals.unsubscribe()
            await hints.unsubscribe()
            if runner.warm is not None:
                await runner.warm.close()
            me.release()
    finally:
        await nc.close()


def listener(kind: type[C], what: str, handle: Callable[[C, Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
    """A control subject's callback: decode the message as a `kind` command
    for the session its subject names, then `handle(command, msg)`. Anything
    else is ignored: a malformed message (logged as `what`), another type,
    or a command naming another session than its subject (the bus checks
    who may publish on a session's subject, not what the body says)."""

    async def on_msg(msg: Msg) -> None:
        try:
            command = decode_command(msg.data)
        except ContractError as exc:
            logger.warning("ignored a malformed %s: %s", what, exc)
            return
        if isinstance(command, kind) and subjects.session_of(msg.subject) == command.session_id:
            await handle(command, msg)

    return on_msg


async def on_cancel(runner: TurnRunner, nc: Client, command: CancelTurn, msg: Msg) -> None:
    """Only the runner that owns the turn answers; the others stay silent."""
    turn = runner.active.get(command.session_id)
    if turn is None or (command.turn_id and command.turn_id != turn.command.turn_id):
        return
    with trace.bound(**{**trace.from_headers(msg.headers), **trace.of_command(command)}):
        logger.info("stop requested")
        turn.cancel(command.by)
        if msg.reply:
            await nc.publish(msg.reply, encode(CancelReply(cancelled=True)))


async def on_warm(runner: TurnRunner, command: WarmSession, msg: Msg) -> None:
    """The gateway's hint that a prompt may follow: warm the session's CLI."""
    with trace.bound(session_id=command.session_id):
        if runner.prewarm(command.session_id, command.model, command.vm):
            logger.info("warming the session's CLI (hint from %s)", command.by)


async def on_approval(runner: TurnRunner, nc: Client, command: AnswerApproval, msg: Msg) -> None:
    """The operator's Approve/Deny, for an approval the agent's verb tool
    holds. Only the runner that owns the session's turn answers (whether it
    still waits on that approval or not); the others stay silent."""
    turn = runner.active.get(command.session_id)
    if turn is None or turn.verbs is None:
        return
    ids = {**trace.from_headers(msg.headers), **trace.of_command(command), "turn_id": turn.command.turn_id}
    with trace.bound(**ids):
        accepted = turn.verbs.answer(command.approval_id, command.approved, command.by)
        logger.info("approval %s: %s%s", command.approval_id,
                 "approved" if command.approved else "denied", "" if accepted else " (not pending; ignored)")
        if msg.reply:
            await nc.publish(msg.reply, encode(ApprovalReply(accepted=accepted)))


async def cancel_on_stop(runner: TurnRunner, stop: asyncio.Event) -> None:
    """On shutdown, stop running turns (each still writes its end)."""
    await stop.wait()
    for turn in list(runner.active.values()):
        turn.cancel("agent-runner")


async def end_predecessors_turns(locks: TurnLocks, me: identity.Identity) -> None:
    """A runner restarted on its data directory ends the turns its dead
    predecessor owned now, not a whole lease later (agent_runner.identity).
    Best effort: whatever this misses, the reaper ends when its lease lapses."""
    if not me.exclusive:
        return
    try:
        ended = await locks.reap_owned(me.predecessors, except_owner=me.owner,
                                       reason="the agent runner restarted; the turn it was running was lost")
    except Exception as exc:
        logger.warning("could not end the previous run's turns at start-up (%s); their lease will lapse", exc)
        return
    for session_id in ended:
        with trace.bound(session_id=session_id):
            logger.warning("ended a turn this runner's previous process left running")


async def reap_forever(locks: TurnLocks, stop: asyncio.Event) -> None:
    """End turns whose runner died (their lease lapsed), whoever ran them."""
    while not stop.is_set():
        try:
            for session_id in await locks.reap_lapsed():
                with trace.bound(session_id=session_id):
                    logger.warning("reaped a turn whose runner's lease lapsed")
        except Exception as exc:
            logger.warning("reaping failed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), REAP_EVERY_SECONDS)
        except asyncio.TimeoutError:
            pass
