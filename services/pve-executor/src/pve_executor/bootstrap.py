"""Wires pve-executor: settings, NATS, topology, the verb consumer."""

from __future__ import annotations

import asyncio
import logging

from events import bus
from events.commands import RunVerb
from events.consumer import consume
from events.topology import EXECUTOR_CONSUMER, Topology, ensure

from .handlers import Handlers
from .settings import Settings

log = logging.getLogger("pve-executor")


async def main(stop: asyncio.Event, settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    nc = await bus.connect(settings.nats_url, "pve-executor", log=log)
    try:
        js = nc.jetstream()
        topology = Topology.from_env()
        await ensure(js, topology)
        handlers = Handlers(settings=settings, js=js, topology=topology, log=log)
        log.info("consuming verb commands for VM %d", settings.pve_vmid)
        await consume(js, EXECUTOR_CONSUMER, (RunVerb,), handlers.handle, stop=stop, log=log, topology=topology)
    finally:
        await nc.close()
