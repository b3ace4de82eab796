"""The gateway's hold on NATS: connected in the background, so the HTTP
server is up (and `/health` answers) even while NATS is not."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.js import JetStreamContext

from nats.js.kv import KeyValue

from eventbus import bus as nats_bus
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.retry import Backoff, retrying
from eventbus.topology import Topology, check

log = logging.getLogger("gateway.bus")


class Bus:
    def __init__(self, url: str, topology: Topology = Topology()) -> None:
        self.url = url
        self.topology = topology
        self.nc: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._kv: KeyValue | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_until_done())

    async def _connect_until_done(self) -> None:
        # Every error is retried: nats raises several unrelated types here.
        self.nc = await retrying(lambda: nats_bus.connect(self.url, "gateway", log=log), Backoff(None, 1.0),
                                 on_retry=lambda exc: log.warning("NATS not reachable yet (%s); retrying", exc))
        log.info("connected to NATS at %s", nats_bus.redact(self.url))

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        if self.nc and not self.nc.is_closed:
            await self.nc.close()

    @property
    def js(self) -> JetStreamContext:
        if self.nc is None or not self.nc.is_connected:
            raise ConnectionError("not connected to NATS")
        return self.nc.jetstream()

    @property
    def log(self) -> EventLog:
        return EventLog(self.js, self.topology, writer="gateway")

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(self.topology.kv_bucket)
        return self._kv

    async def locks(self) -> TurnLocks:
        return TurnLocks(await self.kv(), self.log)

    async def not_ready_reason(self) -> str | None:
        if self.nc is None or not self.nc.is_connected:
            return "NATS is not connected"
        try:
            return await asyncio.wait_for(check(self.js, self.topology), timeout=2.0)
        except Exception as exc:
            return f"JetStream did not answer: {exc}"
