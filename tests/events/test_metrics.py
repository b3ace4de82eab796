"""The shared metrics against real NATS: the consumer's redeliveries and
poison counts, the connection gauge, lapsed leases, the workers' endpoint."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request

import pytest

from eventbus import bus, metrics
from events import subjects
from events.codec import encode
from events.commands import RunVerb, TurnLock
from eventbus.consumer import consume
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import EXECUTOR_CONSUMER, lock_key
from events.types import new_id
from events.verbs import Verb
from prometheus_client import REGISTRY

log = logging.getLogger("test")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_redelivered_command_and_a_poison_one_are_counted(js, topology):
    redelivered = value("breakglass_commands_redelivered_total", consumer=EXECUTOR_CONSUMER)
    terminated = value("breakglass_commands_terminated_total", consumer=EXECUTOR_CONSUMER)
    command = RunVerb(by="ops", request_id=new_id(), verb=Verb.STATUS)
    await js.publish(subjects.VERB, encode(command))
    # A first delivery that is never acked (a worker that died before acking).
    sub = await js.pull_subscribe_bind(EXECUTOR_CONSUMER, stream=topology.commands_stream)
    [first] = await sub.fetch(1, timeout=5)
    await first.nak()
    await sub.unsubscribe()
    await js.publish(subjects.VERB, b"{not a command")

    handled: list[RunVerb] = []

    async def handle(cmd):  # type: ignore[no-untyped-def]
        handled.append(cmd)

    stop = asyncio.Event()
    task = asyncio.create_task(consume(js, EXECUTOR_CONSUMER, (RunVerb,), handle, stop=stop, log=log,
                                       topology=topology, poll_seconds=0.2))
    try:
        async with asyncio.timeout(10):
            while not handled or value("breakglass_commands_terminated_total", consumer=EXECUTOR_CONSUMER) == terminated:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert handled == [command]
    assert value("breakglass_commands_redelivered_total", consumer=EXECUTOR_CONSUMER) == redelivered + 1
    assert value("breakglass_commands_terminated_total", consumer=EXECUTOR_CONSUMER) == terminated + 1


async def test_the_connection_gauge_follows_the_connection(nats_url):
    nc = await bus.connect(nats_url, "test")
    assert value("breakglass_nats_connected") == 1
    await nc.close()
    assert value("breakglass_nats_connected") == 0


async def test_a_reaped_lease_is_counted_once(js, topology):
    kv = await js.key_value(topology.kv_bucket)
    events = EventLog(js, topology)
    session_id, turn_id = new_id(), new_id()
    await kv.create(lock_key(session_id), encode(TurnLock(turn_id=turn_id, by="ops", started_at=0, lease_until=1)))
    before = value("breakglass_turn_leases_lapsed_total")
    locks = TurnLocks(kv, events)
    assert await locks.reap_lapsed() == [session_id]
    assert await locks.reap_lapsed() == []
    assert value("breakglass_turn_leases_lapsed_total") == before + 1


def test_the_workers_endpoint_serves_the_registry_and_port_0_is_off():
    with metrics.serving("127.0.0.1", 0) as port:
        assert port is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with metrics.serving("127.0.0.1", free) as port:
        assert port == free
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"breakglass_nats_connected" in answer.read()
        with pytest.raises(OSError):  # busy: the service stops with one line
            with metrics.serving("127.0.0.1", free):
                pass
    with socket.socket() as s:  # and the port is given back (to a restart, which reuses the address)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", free))


async def test_a_second_reaper_with_a_stale_snapshot_loses_quietly(js, topology):
    """Two reapers that read the same lapsed lock: the CAS lets one free it;
    the other gets False, not an exception, and counts nothing."""
    kv = await js.key_value(topology.kv_bucket)
    session_id, turn_id = new_id(), new_id()
    await kv.create(lock_key(session_id), encode(TurnLock(turn_id=turn_id, by="ops", started_at=0, lease_until=1)))
    first, second = TurnLocks(kv, EventLog(js, topology)), TurnLocks(kv, EventLog(js, topology))
    held = await first.current(session_id)
    assert held is not None
    before = value("breakglass_turn_leases_lapsed_total")
    assert await first.reap(session_id, held, reason="lapsed") is True
    assert await second.reap(session_id, held, reason="lapsed") is False
    assert await second.release(session_id, turn_id) is False
    assert value("breakglass_turn_leases_lapsed_total") == before + 1
