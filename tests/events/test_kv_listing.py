"""Listing the KV bucket's keys (GET /api/sessions, the runner's reaper)
leaves no consumer behind for long.

Found by the 10,000-case HTTP fuzz run: nats-py's `kv.keys()` leaves its
watcher's consumer on the server for 5 minutes, a stream holds at most
1,000 consumers, so the 1,001st GET /api/sessions within 5 minutes got 503
(`maximum consumers limit reached`), and so would every listing after it,
the reaper's included. `topology.kv_keys` has the server drop it 2 s after.
"""

from __future__ import annotations

import asyncio
import time

from eventbus.index import list_sessions
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import KV_LISTING_INACTIVE_SECONDS, ensure, kv_keys


async def test_listings_leave_no_lasting_consumer(js, topology):
    kv = await ensure(js, topology)
    assert await kv_keys(kv) == []
    await kv.put("locks.gone", b"{}")
    await kv.delete("locks.gone")
    assert await kv_keys(kv) == []  # deleted keys are not listed

    locks = TurnLocks(kv, EventLog(js, topology))
    for _ in range(30):
        assert await list_sessions(js, kv, topology) == []
        assert await locks.reap_lapsed() == []

    left = await js.consumers_info(topology.kv_stream)
    assert all(c.config.inactive_threshold <= KV_LISTING_INACTIVE_SECONDS for c in left), [
        c.config.inactive_threshold for c in left]
    deadline = time.monotonic() + 30
    while (await js.stream_info(topology.kv_stream)).state.consumer_count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert (await js.stream_info(topology.kv_stream)).state.consumer_count == 0
