"""Wires pve-executor: settings, NATS, topology, the SSH runner, the verb
consumer. The only place that picks concrete adapters."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client

from eventbus import bus
from events.commands import RunVerb
from eventbus.consumer import consume
from eventbus.log import EventLog
from eventbus.metrics import serving
from eventbus.topology import EXECUTOR_CONSUMER, Topology, ensure

from .binding import SessionVms
from .grants import Grants, from_transport
from .records import IdempotencyRecords, VmLocks
from .settings import Settings
from .ssh import SshRunner, Target
from .verbs import VerbHandler

logger = logging.getLogger("pve-executor")


def runner_for(settings: Settings) -> SshRunner | None:
    """The SSH runner, or None when the settings cannot reach a host safely."""
    if settings.problem() is not None:
        return None
    assert settings.pve_host and settings.pve_known_hosts
    target = Target(
        host=settings.pve_host, port=settings.pve_port, user=settings.pve_user,
        known_hosts=settings.pve_known_hosts, key_file=settings.pve_key_file,
        agent_socket=None if settings.pve_key_file else settings.agent_socket,
        connect_timeout=settings.connect_timeout_seconds,
    )
    return SshRunner(target, settings.output_cap_bytes)


async def main(stop: asyncio.Event, settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    # asyncssh narrates every connection at INFO; its warnings are enough.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    # Scrapeable from the start: while NATS is away, a scrape says so.
    with serving(settings.metrics_host, settings.metrics_port):
        await run(stop, settings)


async def run(stop: asyncio.Event, settings: Settings) -> None:
    nc = await bus.connect_or_stop(settings.nats_url, "pve-executor", stop, logger=logger)
    if nc is None:
        return  # asked to stop before NATS was reachable
    try:
        js = nc.jetstream()
        topology = Topology.from_env()
        kv = await ensure(js, topology)
        handler = VerbHandler(
            settings=settings,
            runner=runner_for(settings),
            events=EventLog(js, topology, writer="pve-executor"),
            records=IdempotencyRecords(kv),
            locks=VmLocks(kv, stale_after=settings.lock_stale_seconds, lease=settings.verb_lease_seconds),
            publish=_publisher(nc),
            grants=Grants(kv),
            bindings=SessionVms(kv),
            max_payload=nc.max_payload or 1024 * 1024,
        )
        problem = settings.problem()
        if problem:
            logger.error("%s: every verb will be answered with this error", problem)
        else:
            logger.info("consuming verb commands for VMs %s on %s@%s:%d (key %s, host key pinned by %s)",
                     " ".join(f"{vm.name}={vm.vmid}" for vm in settings.vms.vms), settings.pve_user, settings.pve_host, settings.pve_port,
                     settings.pve_key_file or "from the ssh-agent", settings.pve_known_hosts)
            if not settings.pve_key_file:
                logger.warning("offering every key of the ssh-agent: if one the host accepts is not bound to the "
                            "forced command there, a verb would run as a plain command; prefer "
                            "BREAKGLASS_PVE_KEY_FILE with the one restricted key")
        sweeper = asyncio.create_task(sweep_forever(handler, stop))
        try:
            await consume(
                js, EXECUTOR_CONSUMER, (RunVerb,), handler.handle,
                stop=stop, logger=logger, topology=topology,
                concurrency=settings.concurrency, poll_seconds=settings.poll_seconds, authority=from_transport,
            )
        finally:
            sweeper.cancel()
    finally:
        await nc.close()


async def sweep_forever(handler: VerbHandler, stop: asyncio.Event) -> None:
    """End the verb of an executor that died mid-verb as `lost` and free
    the VM, from start-up on (a restarted executor ends its predecessor's)."""
    while not stop.is_set():
        try:
            await handler.sweep()
        except Exception as exc:
            logger.warning("looking for a lost verb failed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), handler.settings.sweep_seconds)
        except asyncio.TimeoutError:
            pass


def _publisher(nc: Client):  # type: ignore[no-untyped-def]
    async def publish(subject: str, data: bytes) -> None:
        await nc.publish(subject, data)
        await nc.flush()

    return publish
