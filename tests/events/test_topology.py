"""`ensure` against a real JetStream server: idempotent, and the audit log
refuses deletes and purges."""

from __future__ import annotations

import pytest
from nats.js.api import RetentionPolicy, StorageType
from nats.js.errors import APIError

from events.kinds import TextSaid
from eventbus.log import EventLog
from eventbus.topology import CONSUMERS, Topology, check, ensure
from events.types import new_id


async def test_ensure_creates_everything(js):
    t = Topology(retention_days=7)
    assert await check(js, t) is not None
    await ensure(js, t)
    assert await check(js, t) is None
    events = await js.stream_info(t.events_stream)
    assert events.config.storage == StorageType.FILE
    assert events.config.deny_delete and events.config.deny_purge
    assert events.config.max_age == pytest.approx(7 * 86400)
    commands = await js.stream_info(t.commands_stream)
    assert commands.config.retention == RetentionPolicy.WORK_QUEUE
    for durable, filter_subject in CONSUMERS.items():
        info = await js.consumer_info(t.commands_stream, durable)
        assert info.config.filter_subject == filter_subject


async def test_ensure_is_idempotent_and_keeps_data(js):
    t = Topology()
    await ensure(js, t)
    log = EventLog(js, t)
    sid = new_id()
    seq = await log.append(TextSaid(session_id=sid, by="agent", text="kept"))
    await ensure(js, t)
    await ensure(js, t)
    assert [r.seq for r in await log.read(sid)] == [seq]


async def test_ensure_applies_a_changed_retention(js):
    await ensure(js, Topology(retention_days=400))
    await ensure(js, Topology(retention_days=30))
    info = await js.stream_info(Topology().events_stream)
    assert info.config.max_age == pytest.approx(30 * 86400)


async def test_the_events_stream_refuses_purge_and_message_delete(js, topology):
    log = EventLog(js, topology)
    seq = await log.append(TextSaid(session_id=new_id(), by="agent", text="evidence"))
    with pytest.raises(APIError):
        await js.purge_stream(topology.events_stream)
    with pytest.raises(APIError):
        await js.delete_msg(topology.events_stream, seq)
    assert (await js.stream_info(topology.events_stream)).state.messages == 1
