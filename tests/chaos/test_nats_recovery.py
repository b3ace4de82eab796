"""kill -9 of nats-server under an open SSE stream (issue 17, item 1): the
stream catches up once the server answers again, with no gap and no
duplicate, without the client reconnecting.

Each iteration: SIGKILL nats-server, start it again on the same port and
data directory, note when it answers a JetStream request again, store one
event and note when the still-open stream delivers it. The recovery time
(server answering -> that event at the client) is printed per iteration
with p50/p95 for RELIABILITY.md; the deadline below is a hang guard, not a
timing assertion. At the end the ids the stream delivered are exactly the
session's stored sequences.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import nats
import pytest
from breakglass import natsd

from events.kinds import TextSaid
from eventbus.log import EventLog
from eventbus.topology import Topology, ensure
from events.types import new_id
from gateway.app import create_app
from gateway.settings import Settings
from tests.servers import serve_app, wait_ready
from tests.sse import frames

from .knobs import iterations

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

TOKEN = "chaos-token"
HANG_GUARD_SECONDS = 60.0


async def _answering(url: str) -> float:
    """When a fresh connection gets a JetStream answer again (monotonic)."""
    while True:
        try:
            nc = await nats.connect(url, connect_timeout=0.5, allow_reconnect=False, max_reconnect_attempts=0)
            try:
                await nc.jetstream().account_info()
                return time.monotonic()
            finally:
                await nc.close()
        except Exception:
            await asyncio.sleep(0.02)


async def test_an_open_stream_catches_up_after_nats_server_restarts(tmp_path):
    port = natsd.free_port()
    url = f"nats://127.0.0.1:{port}"
    server = natsd.start(tmp_path / "nats", port=port, log_file=tmp_path / "nats.log")
    settings = Settings(nats_url=url, api_token=TOKEN, keepalive_seconds=1.0, models=("sonnet",), model="sonnet")
    try:
        nc = await nats.connect(url)
        await ensure(nc.jetstream())
        await nc.close()
        with serve_app(create_app(settings)) as base:
            wait_ready(base)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
                sid = (await client.post("/api/session")).json()["session_id"]
                await client.post(f"/api/session/{sid}/prompt", json={"prompt": "before the kills"})
                received: list[int] = []
                arrived: dict[int, float] = {}
                caught_up = asyncio.Event()

                async def read() -> None:
                    timeout = httpx.Timeout(30, read=None)
                    async with client.stream("GET", f"/api/session/{sid}/stream", timeout=timeout) as response:
                        async for frame in frames(response):
                            if frame.event == "caught-up":
                                caught_up.set()
                            elif frame.id is not None:
                                received.append(int(frame.id))
                                arrived[int(frame.id)] = time.monotonic()
                    raise AssertionError("the stream ended; it should have stayed open through the restarts")

                reader = asyncio.create_task(read())
                await asyncio.wait_for(caught_up.wait(), 10)
                recoveries = []
                for n in range(iterations()):
                    server.kill()
                    deadline = time.monotonic() + 15
                    while True:
                        try:
                            server = natsd.start(tmp_path / "nats", port=port, log_file=tmp_path / "nats.log")
                            break
                        except natsd.NatsdError:
                            if time.monotonic() > deadline:
                                raise
                            await asyncio.sleep(0.05)
                    answered = await _answering(url)
                    writer = await nats.connect(url)
                    try:
                        seq = await EventLog(writer.jetstream(), Topology()).append(
                            TextSaid(session_id=sid, turn_id=new_id(), by="agent-runner", text=f"after kill {n}"))
                    finally:
                        await writer.close()
                    give_up = time.monotonic() + HANG_GUARD_SECONDS
                    while seq not in arrived:
                        assert not reader.done(), reader.exception()
                        assert time.monotonic() < give_up, f"iteration {n}: event {seq} never reached the open stream"
                        await asyncio.sleep(0.005)
                    recoveries.append(arrived[seq] - answered)
                    print(f"nats-server kill {n + 1}: caught up {recoveries[-1]:.2f} s after the server answered")
                reader.cancel()
                checker = await nats.connect(url)
                try:
                    stored = [r.seq for r in await EventLog(checker.jetstream(), Topology()).read(sid)]
                finally:
                    await checker.close()
        assert received == stored  # no gap, no duplicate, across every restart
        ordered = sorted(recoveries)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)] if ordered else 0.0
        print(f"nats-server kill -> open stream caught up, {len(ordered)} iterations: "
              f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s")
    finally:
        server.stop()
