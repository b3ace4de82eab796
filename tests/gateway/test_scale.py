"""Many sessions, many clients: nothing creates a JetStream consumer per
session, per client or per listing (issue 16).

Before: GET /api/sessions opened a consumer per stored session and answered
503 "maximum consumers limit reached" past ~1,000 sessions; each attach
held a consumer of its own and each watched session one more.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import nats

from events.codec import encode
from events.commands import SessionRecord
from events.kinds import Outcome, TextSaid, TurnEnded, UserPrompted
from eventbus.log import EventLog
from eventbus.topology import EVENTS_MAX_CONSUMERS, Topology, session_key
from events.types import new_id, utcnow
from gateway.app import create_app
from tests.servers import serve_app, wait_ready
from tests.sse import frames

T = Topology()


async def _store_sessions(js, n: int, *, events_each: int = 2) -> list[str]:  # type: ignore[no-untyped-def]
    """`n` sessions, oldest first: a record, a prompt titled by its index,
    then text, and an ended turn (outcome `error` for every tenth)."""
    kv = await js.key_value(T.kv_bucket)
    log = EventLog(js, T)
    created = utcnow() - timedelta(days=1)
    ids = [new_id() for _ in range(n)]

    for i, sid in enumerate(ids):  # one by one: creation order is the listing's order
        record = SessionRecord(session_id=sid, created_by=f"op{i % 7}", created_at=created + timedelta(seconds=i))
        await kv.create(session_key(sid), encode(record))

    async def one(i: int, sid: str) -> None:
        turn = new_id()
        await log.append(UserPrompted(session_id=sid, turn_id=turn, by="op", text=f"disk full number {i}\nmore",
                                      model="sonnet"))
        for k in range(events_each - 2):
            await log.append(TextSaid(session_id=sid, turn_id=turn, by="agent-runner", text=f"t{k}"))
        if events_each >= 2:
            await log.append(TurnEnded(session_id=sid, turn_id=turn, by="agent-runner",
                                       outcome=Outcome.ERROR if i % 10 == 0 else Outcome.OK))

    for start in range(0, n, 100):
        await asyncio.gather(*(one(i, ids[i]) for i in range(start, min(n, start + 100))))
    return ids


async def _consumers(js) -> int:  # type: ignore[no-untyped-def]
    return (await js.stream_info(T.events_stream)).state.consumer_count


async def _caught_up(client: httpx.AsyncClient, url: str, **kw) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    async with client.stream("GET", url, **kw) as response:
        assert response.status_code == 200
        async for frame in frames(response):
            if frame.event == "caught-up":
                return ids
            if frame.id is not None:
                ids.append(int(frame.id))
    raise AssertionError("the stream ended before caught-up")


async def test_1100_sessions_list_search_page_and_attach(gateway):
    nc = await nats.connect(gateway.nats_url)
    js = nc.jetstream()
    try:
        ids = await _store_sessions(js, 1100)
        async with httpx.AsyncClient(base_url=gateway.base, headers=gateway.headers, timeout=30) as client:
            first = (await client.get("/api/sessions", params={"limit": 50})).json()
            assert [s["session_id"] for s in first["sessions"]] == ids[::-1][:50]
            top = first["sessions"][0]
            assert top["title"] == "disk full number 1099" and top["event_count"] == 2 and top["outcome"] == "ok"
            assert top["state"] == "idle" and top["created_by"] == "op0"

            seen, before = [], None  # every session exactly once, newest first, by pages
            while True:
                params = {"limit": 500} | ({"before": before} if before else {})
                page = (await client.get("/api/sessions", params=params)).json()
                seen += [s["session_id"] for s in page["sessions"]]
                before = page["next_before"]
                if before is None:
                    break
            assert seen == ids[::-1]

            hit = (await client.get("/api/sessions", params={"q": "NUMBER 17", "limit": 500})).json()["sessions"]
            assert [s["session_id"] for s in hit] == [ids[i] for i in range(1099, -1, -1) if "number 17" in f"number {i}"]
            exact = (await client.get("/api/sessions", params={"q": "number 1042", "limit": 5})).json()["sessions"]
            assert [s["session_id"] for s in exact] == [ids[1042]]
            errors = (await client.get("/api/sessions", params={"outcome": "error", "limit": 500})).json()["sessions"]
            assert [s["session_id"] for s in errors] == [ids[i] for i in range(1090, -1, -10)][:500]
            record_at = (await client.get("/api/sessions", params={"limit": 1})).json()["sessions"][0]["created_at"]
            since = (await client.get("/api/sessions", params={"since": record_at, "limit": 500})).json()["sessions"]
            assert [s["session_id"] for s in since] == [ids[-1]]
            by = (await client.get("/api/sessions", params={"q": "op3", "limit": 500})).json()["sessions"]
            assert {s["session_id"] for s in by} == {ids[i] for i in range(1100) if i % 7 == 3}
            bad = await client.get("/api/sessions", params={"outcome": "bogus"})
            assert bad.status_code == 422

            async def attach(sid: str) -> None:
                got = await _caught_up(client, f"/api/session/{sid}/stream")
                assert len(got) == 2 and got == sorted(got)

            for start in range(0, 1100, 100):
                await asyncio.gather(*(attach(sid) for sid in ids[start:start + 100]))
            assert await _consumers(js) == 1  # the gateway's firehose, nothing per session or per listing
    finally:
        await nc.close()


async def test_2000_streams_on_1500_sessions_keep_consumers_bounded(gateway, gateway_settings):
    nc = await nats.connect(gateway.nats_url)
    js = nc.jetstream()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    try:
        ids = await _store_sessions(js, 1500, events_each=2)
        with serve_app(create_app(gateway_settings)) as second:
            wait_ready(second)
            bases = [gateway.base, second]
            async with httpx.AsyncClient(headers=gateway.headers, timeout=60, limits=limits) as client:
                ready = 0
                opened = asyncio.Event()
                release = asyncio.Event()
                live: dict[int, list[int]] = {}
                open_at_release: list[int] = []
                opening = asyncio.Semaphore(200)

                async def stream(n: int) -> None:
                    nonlocal ready
                    sid = ids[n % 1500]
                    got: list[int] = []
                    await opening.acquire()  # in waves: a listen backlog is not what this is about
                    async with client.stream("GET", f"{bases[n % 2]}/api/session/{sid}/stream") as response:
                        assert response.status_code == 200
                        caught = False
                        async for frame in frames(response):
                            if frame.event == "caught-up":
                                caught = True
                                opening.release()
                                ready += 1
                                if ready == 2000:
                                    opened.set()
                                if n >= 10:
                                    break
                            elif frame.id is not None and caught:
                                got.append(int(frame.id))
                                live[n] = got
                                break
                        await release.wait()  # the stream stays open until every count is taken
                        open_at_release.append(n)

                tasks = [asyncio.create_task(stream(n)) for n in range(2000)]
                await asyncio.wait_for(opened.wait(), 120)
                during = await _consumers(js)
                log = EventLog(js, T)
                stored = {n: await log.append(TextSaid(session_id=ids[n], turn_id=new_id(), by="agent-runner",
                                                        text="late")) for n in range(10)}
                for _ in range(200):
                    if len(live) == 10:
                        break
                    await asyncio.sleep(0.05)
                release.set()
                await asyncio.gather(*tasks)
                assert {n: got[0] for n, got in live.items()} == stored
                assert len(open_at_release) == 2000
        # Two gateways: one firehose each, whatever the sessions and clients.
        assert during <= 2 + 2, during
        assert during <= EVENTS_MAX_CONSUMERS
        info = await js.stream_info(T.events_stream)
        assert info.config.max_consumers == EVENTS_MAX_CONSUMERS
    finally:
        await nc.close()
