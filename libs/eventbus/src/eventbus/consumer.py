"""The command consumer every worker runs: pull, decode, hand over.

Delivery is at-most-once by design. A command is acknowledged (and the ack
confirmed by the server) *before* its handler runs, because the two things a
handler does must never happen twice: start a CLI turn, run a power verb. A
worker that dies mid-command is covered elsewhere: a turn's lease lapses and
it is reaped with `interrupted`; a verb's outcome is on the audit subject.

A payload that does not decode, or a command of a type this worker does not
handle, is terminated at once (never redelivered) and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from . import metrics, trace
from events.codec import ContractError, decode_command
from events.commands import Command
from .topology import Topology

Handler = Callable[[Command], Awaitable[None]]
#: What the transport says about a command (events.subjects: who may publish
#: where): given the decoded command and the subject it arrived on, the
#: command to handle. Raising ContractError terminates it.
Authority = Callable[[Command, str], Command]


async def consume(
    js: JetStreamContext,
    durable: str,
    accepts: tuple[type[Command], ...],
    handle: Handler,
    *,
    stop: asyncio.Event,
    log: logging.Logger,
    topology: Topology = Topology(),
    concurrency: int = 4,
    poll_seconds: float = 1.0,
    authority: Authority | None = None,
) -> None:
    """Run until `stop` is set; at most `concurrency` handlers at once."""
    sub = await js.pull_subscribe_bind(durable, stream=topology.commands_stream)
    running: set[asyncio.Task[None]] = set()
    for counter in (metrics.COMMANDS_REDELIVERED, metrics.COMMANDS_TERMINATED):
        counter.labels(consumer=durable)  # exported as 0 from the start, so rate() sees the first one

    async def run(command: Command, ids: dict[str, object]) -> None:
        # The handler's task, and every task it starts, logs and publishes
        # with the command's correlation ids (eventbus.trace); the command's
        # own fields win over its headers.
        trace.bind(**{**ids, **trace.of_command(command)})
        try:
            await handle(command)
        except Exception:
            log.exception("handler failed for %s", type(command).__name__)

    try:
        while not stop.is_set():
            if len(running) >= concurrency:
                await asyncio.wait(running, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await sub.fetch(concurrency - len(running), timeout=poll_seconds)
            except (NatsTimeoutError, asyncio.TimeoutError):
                continue
            except NatsError as exc:
                # JetStream away for a moment (a cluster electing a new leader
                # after losing a node, a reconnect): wait and pull again; a
                # worker never dies of it (it did: tests/cluster).
                log.warning("pulling from %s failed (%s); retrying", durable, type(exc).__name__)
                await asyncio.sleep(poll_seconds)
                continue
            for msg in msgs:
                if msg.metadata.num_delivered > 1:
                    metrics.COMMANDS_REDELIVERED.labels(consumer=durable).inc()
                try:
                    command = decode_command(msg.data)
                    if not isinstance(command, accepts):
                        raise ContractError(f"{durable} does not handle {type(command).__name__}")
                    if authority is not None:
                        command = authority(command, msg.subject)
                except ContractError as exc:
                    log.warning("terminated a poison message on %s: %s", msg.subject, exc)
                    metrics.COMMANDS_TERMINATED.labels(consumer=durable).inc()
                    try:
                        await msg.term()
                    except (NatsError, asyncio.TimeoutError):
                        pass  # redelivered, and terminated then
                    continue
                try:
                    await msg.ack_sync()
                except (NatsError, asyncio.TimeoutError) as exc:
                    # Unconfirmed: not run now (at most once). If the ack was
                    # lost, the command comes back after ack_wait and runs then.
                    log.warning("could not confirm the ack of a command on %s (%s); not run now",
                                msg.subject, type(exc).__name__)
                    continue
                task = asyncio.create_task(run(command, trace.from_headers(msg.headers)))
                running.add(task)
                task.add_done_callback(running.discard)
    finally:
        await sub.unsubscribe()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
