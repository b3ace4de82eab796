"""Replay → live hand-over stays exact while events are being stored, on
every path an attach can take: cold (read from the store by direct gets),
hot (served from the hub's window in memory), and a window too small to
reach back (trimmed: the store again, and the window must not claim what
it lacks). Each client must receive exactly the stored sequences after its
resume point: no gap, no duplicate, in order."""

from __future__ import annotations

import asyncio
import random

import httpx
import nats
import pytest

from events.kinds import TextSaid
from eventbus import log as log_module
from eventbus.log import EventLog
from eventbus.topology import Topology
from events.types import new_id
from gateway import hub
from tests.sse import frames


async def _read_until(client: httpx.AsyncClient, sid: str, after: int, done: asyncio.Future[int]) -> list[int]:
    got: list[int] = []
    headers = {"Last-Event-ID": str(after)} if after else {}
    async with client.stream("GET", f"/api/session/{sid}/stream", headers=headers) as response:
        assert response.status_code == 200
        async for frame in frames(response):
            if frame.id is not None:
                got.append(int(frame.id))
            if done.done() and got and got[-1] >= done.result():
                return got
            if done.done() and not got and after >= done.result():
                return got
    raise AssertionError("the stream ended early")


@pytest.mark.parametrize(("window", "long_replay"), [(hub.WINDOW_RECORDS, log_module.LONG_REPLAY), (50, 10_000), (50, 10)])
async def test_attaches_during_appends_get_every_event_once(gateway, monkeypatch, window, long_replay):
    """(50, 10): cold replays past their first batch go through the
    short-lived consumer (EventLog.replay's long path)."""
    monkeypatch.setattr(hub, "WINDOW_RECORDS", window)
    monkeypatch.setattr(log_module, "LONG_REPLAY", long_replay)
    nc = await nats.connect(gateway.nats_url)
    log = EventLog(nc.jetstream(), Topology())
    sid, other = new_id(), new_id()
    turn = new_id()
    async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=30) as client:
        # A real session record, so the stream route accepts it.
        sid = (await client.post("/api/session")).json()["session_id"]
        seqs = [await log.append(TextSaid(session_id=sid, turn_id=turn, by="agent-runner", text=f"old {n}"))
                for n in range(1300)]  # more than one direct-get batch
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        rng = random.Random(16)

        async def write() -> None:
            for n in range(400):
                seqs.append(await log.append(TextSaid(session_id=sid, turn_id=turn, by="agent-runner", text=f"new {n}")))
                if n % 3 == 0:  # other sessions' events interleave in the stream
                    await log.append(TextSaid(session_id=other, turn_id=turn, by="agent-runner", text="noise"))
                if n % 20 == 0:
                    await asyncio.sleep(0.01)
            done.set_result(seqs[-1])

        async def attach(delay: float) -> tuple[int, list[int]]:
            await asyncio.sleep(delay)
            known = list(seqs)
            after = rng.choice([0, 0, known[len(known) // 2], known[-1], known[max(0, len(known) - 30)]])
            return after, await _read_until(client, sid, after, done)

        writer = asyncio.create_task(write())
        results = await asyncio.gather(*(attach(0.02 * n) for n in range(30)))
        await writer
    await nc.close()
    for after, got in results:
        assert got == [s for s in seqs if s > after], after
