"""No consumer exhaustion (issue 14, part 7): nats-server cannot bound how
many consumers a user creates, so every consumer of the events stream,
durable or not, is removed after `events_consumer_idle` without a reader
(the stream's consumer limits), and none may ask to live longer. What the
`reader` user leaves behind goes away on its own; the gateway's own reads
find room again."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import ConsumerConfig
from nats.js.errors import BadRequestError, NotFoundError

from events import access
from events.topology import Topology, ensure

from tests.security.nats_rig import Secured, secured  # noqa: F401 - fixture

T = Topology()


async def test_a_reader_s_durable_consumer_cannot_outlive_the_limit(secured: Secured) -> None:  # noqa: F811
    nc = await nats.connect(secured.url(access.READER), inbox_prefix=access.inbox_prefix(access.READER))
    try:
        js = nc.jetstream()
        kept = await js.add_consumer(T.events_stream, ConsumerConfig(durable_name="hog"))
        assert kept.config.inactive_threshold == T.events_consumer_idle  # expires when left alone
        with pytest.raises(BadRequestError, match="inactive threshold exceeds"):
            await js.add_consumer(T.events_stream, ConsumerConfig(durable_name="forever",
                                                                  inactive_threshold=T.events_consumer_idle * 10))
    finally:
        await nc.close()


async def test_left_consumers_are_reaped_and_room_comes_back(nats_url) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        quick = Topology(events_consumer_idle=1.0)
        await ensure(js, quick)
        hogs = [f"hog{i}" for i in range(20)]
        for name in hogs:
            await js.add_consumer(quick.events_stream, ConsumerConfig(durable_name=name))
        assert (await js.stream_info(quick.events_stream)).state.consumer_count >= len(hogs)
        await asyncio.sleep(3.5)
        for name in hogs:
            with pytest.raises(NotFoundError):
                await js.consumer_info(quick.events_stream, name)
        assert (await js.stream_info(quick.events_stream)).state.consumer_count == 0
    finally:
        await nc.close()
