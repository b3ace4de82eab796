"""The command consumer against real JetStream: valid commands handled once,
poison messages terminated (not redelivered), handler errors contained."""

from __future__ import annotations

import asyncio
import logging

from events import subjects
from events.codec import encode
from events.commands import CancelTurn, RunVerb, StartTurn
from eventbus.consumer import consume
from eventbus.topology import EXECUTOR_CONSUMER, RUNNER_CONSUMER
from events.types import new_id

log = logging.getLogger("test")


def start_turn() -> StartTurn:
    return StartTurn(by="ops", session_id=new_id(), turn_id=new_id(), prompt="uptime?", model="sonnet")


async def run_until(js, topology, durable, accepts, handle, done, concurrency=4):
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(js, durable, accepts, handle, stop=stop, log=log, topology=topology,
                concurrency=concurrency, poll_seconds=0.2)
    )
    try:
        await asyncio.wait_for(done(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_valid_commands_are_handled_once_and_poison_is_terminated(js, topology, caplog):
    handled: list[StartTurn] = []
    good = [start_turn(), start_turn()]
    await js.publish(subjects.PROMPT, b"{not json")
    await js.publish(subjects.PROMPT, encode(good[0]))
    await js.publish(subjects.PROMPT, b'{"type": "prompt", "by": "x"}')
    await js.publish(subjects.PROMPT, encode(CancelTurn(by="x", session_id=new_id())))  # wrong type here
    await js.publish(subjects.PROMPT, encode(good[1]))

    async def handle(command):
        handled.append(command)

    async def two_handled():
        while len(handled) < 2:
            await asyncio.sleep(0.02)

    with caplog.at_level(logging.WARNING, logger="test"):
        await run_until(js, topology, RUNNER_CONSUMER, (StartTurn,), handle, two_handled)
    assert handled == good
    assert sum("terminated a poison message" in r.message for r in caplog.records) == 3
    info = await js.consumer_info(topology.commands_stream, RUNNER_CONSUMER)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info.num_pending == 0
    assert (await js.stream_info(topology.commands_stream)).state.messages == 0


async def test_a_failing_handler_does_not_stop_the_consumer(js, topology):
    seen: list[str] = []
    for verb in ("status", "forensics"):
        await js.publish(subjects.VERB, encode(RunVerb(by="ops", request_id=new_id(), verb=verb)))

    async def handle(command):
        seen.append(command.verb.value)
        if command.verb.value == "status":
            raise RuntimeError("boom")

    async def both():
        while len(seen) < 2:
            await asyncio.sleep(0.02)

    await run_until(js, topology, EXECUTOR_CONSUMER, (RunVerb,), handle, both)
    assert seen == ["status", "forensics"]


async def test_concurrency_is_bounded(js, topology):
    running = 0
    peak = 0
    finished = 0
    for _ in range(6):
        await js.publish(subjects.PROMPT, encode(start_turn()))

    async def handle(command):
        nonlocal running, peak, finished
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        finished += 1

    async def all_done():
        while finished < 6:
            await asyncio.sleep(0.02)

    await run_until(js, topology, RUNNER_CONSUMER, (StartTurn,), handle, all_done, concurrency=2)
    assert peak == 2
