"""Wires agent-runner: settings, NATS, topology, the prompt consumer."""

from __future__ import annotations

import asyncio
import logging

from events import bus
from events.commands import StartTurn
from events.consumer import consume
from events.topology import RUNNER_CONSUMER, Topology, ensure

from .handlers import Handlers
from .settings import Settings

log = logging.getLogger("agent-runner")


async def main(stop: asyncio.Event, settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    nc = await bus.connect(settings.nats_url, "agent-runner", log=log)
    try:
        js = nc.jetstream()
        topology = Topology.from_env()
        await ensure(js, topology)
        handlers = Handlers(settings=settings, js=js, topology=topology, log=log)
        log.info("consuming prompt commands (max %d concurrent turns)", settings.max_turns)
        await consume(
            js, RUNNER_CONSUMER, (StartTurn,), handlers.handle,
            stop=stop, log=log, topology=topology, concurrency=settings.max_turns,
        )
    finally:
        await nc.close()
