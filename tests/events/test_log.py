"""The event log against a real JetStream server: exact replay and resume."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

from events.kinds import TextSaid, TurnEnded, UserPrompted
from eventbus.log import CAUGHT_UP, EventLog, Record
from events.types import new_id


def text(session_id: str, n: int) -> TextSaid:
    return TextSaid(session_id=session_id, by="agent", text=f"line {n}")


async def test_append_returns_increasing_stream_sequences(js, topology):
    log = EventLog(js, topology)
    sid = new_id()
    seqs = [await log.append(text(sid, n)) for n in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert await log.last_seq(sid) == seqs[-1]


async def test_replay_after_n_returns_exactly_the_later_events_in_order(js, topology):
    log = EventLog(js, topology)
    sid, other = new_id(), new_id()
    seqs = []
    for n in range(20):
        seqs.append(await log.append(text(sid, n)))
        await log.append(text(other, n))  # interleaved: must be filtered out
    for cut in (0, seqs[0], seqs[7], seqs[-2], seqs[-1]):
        records = await log.read(sid, after=cut)
        assert [r.seq for r in records] == [s for s in seqs if s > cut]
        assert all(r.event().session_id == sid for r in records)
    assert [r.event().text for r in await log.read(sid, after=seqs[9])] == [f"line {n}" for n in range(10, 20)]


async def test_empty_session_is_caught_up_at_once(js, topology):
    log = EventLog(js, topology)
    async with aclosing(log.attach(new_id(), follow=False)) as items:
        assert [item async for item in items] == [CAUGHT_UP]


async def test_attach_replays_then_marks_caught_up_then_tails_live(js, topology):
    log = EventLog(js, topology)
    sid = new_id()
    stored = [await log.append(text(sid, n)) for n in range(3)]
    seen: list[object] = []
    got_live = asyncio.Event()

    async def reader() -> None:
        async with aclosing(log.attach(sid, after=stored[0])) as items:
            async for item in items:
                seen.append(item.seq if isinstance(item, Record) else item)
                if len(seen) == 5:
                    got_live.set()
                    return

    task = asyncio.create_task(reader())
    while CAUGHT_UP not in seen:
        await asyncio.sleep(0.01)
    live = [await log.append(text(sid, 3)), await log.append(TurnEnded(session_id=sid, by="agent-runner"))]
    await asyncio.wait_for(got_live.wait(), 5)
    await task
    assert seen == [stored[1], stored[2], CAUGHT_UP, *live]


async def test_resume_strictly_after_a_live_sequence_has_no_gap_and_no_duplicate(js, topology):
    log = EventLog(js, topology)
    sid = new_id()
    first = [await log.append(UserPrompted(session_id=sid, by="ops", text="hi"))]
    first += [await log.append(text(sid, n)) for n in range(50)]
    resumed_at = first[24]
    later = [await log.append(text(sid, n)) for n in range(50, 60)]
    records = await log.read(sid, after=resumed_at)
    assert [r.seq for r in records] == first[25:] + later


async def test_msg_id_makes_a_retried_append_idempotent(js, topology):
    log = EventLog(js, topology)
    sid = new_id()
    a = await log.append(text(sid, 1), msg_id="turn-1-end")
    b = await log.append(text(sid, 1), msg_id="turn-1-end")
    assert a == b
    assert len(await log.read(sid)) == 1


async def test_read_honours_limit(js, topology):
    log = EventLog(js, topology)
    sid = new_id()
    seqs = [await log.append(text(sid, n)) for n in range(10)]
    assert [r.seq for r in await log.read(sid, limit=4)] == seqs[:4]
