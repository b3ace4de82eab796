"""The hash chain: linear under concurrent appenders, and it catches edits."""

from __future__ import annotations

import asyncio

import nats

from events import chain, subjects
from events.kinds import TextSaid
from eventbus.log import EventLog
from events.types import new_id


def triples(records):
    return [(r.seq, r.link, r.data, r.writer) for r in records]


async def test_concurrent_appenders_on_separate_connections_never_fork_the_chain(nats_url, js, topology):
    sid = new_id()
    clients = [await nats.connect(nats_url) for _ in range(3)]
    try:
        logs = [EventLog(c.jetstream(), topology) for c in clients]

        async def writer(n: int, log: EventLog) -> None:
            for i in range(40):
                await log.append(TextSaid(session_id=sid, by=f"writer-{n}", text=f"{n}/{i}"))

        await asyncio.gather(*(writer(n, log) for n, log in enumerate(logs)))
    finally:
        for c in clients:
            await c.close()
    records = await EventLog(js, topology).read(sid)
    assert len(records) == 120
    assert chain.verify(triples(records)) is None
    assert len({r.link for r in records}) == 120


async def test_the_three_services_on_their_own_subjects_never_fork_the_session_chain(nats_url, js, topology):
    """Each writer appends under its own subject; the expected-last check
    runs over all of them at once (a wildcard, nats-server >= 2.11), so the
    session is still one line, and each link binds its writer."""
    sid = new_id()
    writers = subjects.WRITERS
    clients = [await nats.connect(nats_url) for _ in writers]
    try:
        logs = [EventLog(c.jetstream(), topology, writer=w) for c, w in zip(clients, writers)]

        async def write(log: EventLog, name: str) -> None:
            for i in range(40):
                await log.append(TextSaid(session_id=sid, by=name, text=f"{name}/{i}"))

        await asyncio.gather(*(write(log, w) for log, w in zip(logs, writers)))
    finally:
        for c in clients:
            await c.close()
    records = await EventLog(js, topology).read(sid)
    assert len(records) == 120 and {r.writer for r in records} == set(writers)
    assert chain.verify(triples(records)) is None
    relabelled = [(seq, link, data, "gateway") for seq, link, data, _ in triples(records)]
    assert chain.verify(relabelled) is not None  # a writer cannot be changed after the fact


async def test_a_changed_byte_a_removed_event_and_a_reorder_are_each_caught(js, topology):
    log = EventLog(js, topology)
    sid = new_id()
    for i in range(6):
        await log.append(TextSaid(session_id=sid, by="agent", text=f"line {i}"))
    good = triples(await log.read(sid))
    assert chain.verify(good) is None

    flipped = list(good)
    seq, link, data, writer = flipped[3]
    flipped[3] = (seq, link, data.replace(b"line 3", b"line 8"), writer)
    assert chain.verify(flipped).index == 3

    assert chain.verify(good[:2] + good[3:]).index == 2
    assert chain.verify([good[1], good[0], *good[2:]]) is not None


async def test_an_idempotent_retry_keeps_the_chain_intact(js, topology):
    log = EventLog(js, topology)
    sid = new_id()
    await log.append(TextSaid(session_id=sid, by="agent", text="a"), msg_id="m1")
    await log.append(TextSaid(session_id=sid, by="agent", text="a"), msg_id="m1")
    await log.append(TextSaid(session_id=sid, by="agent", text="b"))
    records = await log.read(sid)
    assert len(records) == 2 and chain.verify(triples(records)) is None
