"""A test double for pve-executor: takes `RunVerb` off its durable consumer
and answers on the verb's reply subject, without any SSH or Proxmox.

pve-executor is a separate service with its own tests; the agent's verb
path only needs "a command reached the executor's queue, and an answer came
back", which this plays. It binds to the real `pve-executor` durable
consumer, so what it sees is exactly what the real executor would see.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import nats
from nats.errors import TimeoutError as NatsTimeoutError

from events import subjects
from events.codec import decode_command, encode
from events.commands import RunVerb, VerbResult
from eventbus.topology import EXECUTOR_CONSUMER, Topology, ensure


class FakeExecutor:
    def __init__(self) -> None:
        self.commands: list[RunVerb] = []
        self.answer: Callable[[RunVerb], VerbResult] = lambda c: VerbResult(
            verb=c.verb, exit_code=0, stdout=f"{c.verb.value}: done (fake executor)")
        self.arrived = asyncio.Event()

    async def wait_for(self, n: int = 1, timeout: float = 30.0) -> list[RunVerb]:
        async def enough() -> None:
            while len(self.commands) < n:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.commands


@contextlib.asynccontextmanager
async def fake_executor(nats_url: str) -> AsyncIterator[FakeExecutor]:
    nc = await nats.connect(nats_url, name="fake-pve-executor")
    executor = FakeExecutor()
    js = nc.jetstream()
    topology = Topology()
    await ensure(js, topology)
    sub = await js.pull_subscribe_bind(EXECUTOR_CONSUMER, stream=topology.commands_stream)

    async def serve() -> None:
        while True:
            try:
                msgs = await sub.fetch(1, timeout=0.5)
            except (NatsTimeoutError, asyncio.TimeoutError):
                continue
            for msg in msgs:
                await msg.ack()
                command = decode_command(msg.data)
                assert isinstance(command, RunVerb), command
                executor.commands.append(command)
                executor.arrived.set()
                await nc.publish(subjects.verb_reply(command.request_id), encode(executor.answer(command)))

    task = asyncio.create_task(serve())
    try:
        yield executor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await nc.close()


async def queued_verbs(nats_url: str) -> int:
    """RunVerb commands waiting in the work queue (none taken by anyone)."""
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info(Topology().commands_stream, EXECUTOR_CONSUMER)
        return info.num_pending + info.num_ack_pending
    finally:
        await nc.close()
