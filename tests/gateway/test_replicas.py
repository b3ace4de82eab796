"""Two gateway replicas share one bus: the KV compare-and-set lock lets
exactly one of many simultaneous prompts start a turn; detached clients
leave no consumer behind."""

from __future__ import annotations

import asyncio

import httpx
import nats

from eventbus.topology import Topology
from gateway.app import create_app
from tests.servers import serve_app, wait_ready
from tests.sse import frames


async def test_simultaneous_prompts_through_two_replicas_start_one_turn(gateway, gateway_settings):
    with serve_app(create_app(gateway_settings)) as second:
        wait_ready(second)
        async with httpx.AsyncClient(headers=gateway.headers, timeout=10) as client:
            sid = (await client.post(f"{gateway.base}/api/session")).json()["session_id"]
            bases = [gateway.base, second] * 10
            answers = await asyncio.gather(
                *(client.post(f"{base}/api/session/{sid}/prompt", json={"prompt": f"p{i}"}) for i, base in enumerate(bases))
            )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(202) == 1 and codes.count(409) == 19


async def test_clients_coming_and_going_leave_one_consumer_per_gateway(gateway):
    """Attaches read the store by direct gets and the live path is the
    process's one firehose: the server's consumer count never moves with
    clients (before, it grew by one per attach until the server reaped it)."""
    nc = await nats.connect(gateway.nats_url)
    js = nc.jetstream()
    stream = Topology().events_stream

    async def consumers() -> int:
        return (await js.stream_info(stream)).state.consumer_count

    try:
        async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=10) as client:
            counts = []
            for _ in range(5):
                sid = (await client.post("/api/session")).json()["session_id"]
                await client.post(f"/api/session/{sid}/prompt", json={"prompt": "x"})
                async with client.stream("GET", f"/api/session/{sid}/stream") as response:
                    async for frame in frames(response):
                        if frame.event == "caught-up":
                            break
                    counts.append(await consumers())
            counts.append(await consumers())
        assert counts == [1] * 6
    finally:
        await nc.close()
