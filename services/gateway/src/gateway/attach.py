"""The attach stream (SPEC §4): replay, `caught-up`, then live, as SSE.

- Stored events come from the event log with `id: <stream sequence>`, so a
  browser's `Last-Event-ID` (or `?after=`) resumes strictly after it: no gap,
  no duplicate. Their bytes go out as stored, with `"id"` spliced in: no
  decode/encode on the hot path, and each live record is framed once per
  process whatever the number of clients (see `hub`).
- The replay is read by this client's own short-lived consumer and written
  in as few chunks as the socket takes (everything queued since the last
  write goes in one write).
- Live records and live-only frames (token deltas, from the session's core
  NATS subject, no `id:`, only once caught up) come from the session's one
  shared subscription in this process (`hub.SessionHub`).
- When the client goes, the generator is closed: its replay consumer is
  removed and it leaves the hub; the last one out removes the hub's
  consumer and subscription.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from . import metrics
from .bus import Bus
from .hub import Listener, hubs_of

log = logging.getLogger("gateway.attach")

SLOW_CATCH_UP_SECONDS = 5.0


async def _catch_up(bus: Bus, session_id: str, listener: Listener, replays: asyncio.Semaphore) -> None:
    try:
        events = bus.log
        started = time.monotonic()
        until = await events.last_seq(session_id)
        replayed = metrics.Replay(listener.replayed)
        if listener.position < until:
            async with replays:
                await events.replay(session_id, listener.position, until, replayed)
        listener.caught_up()
        replayed.caught_up(started)
        if time.monotonic() - started > SLOW_CATCH_UP_SECONDS:
            log.warning("attach to %s took %.1f s to catch up (to %d)", session_id, time.monotonic() - started, until)
    except Exception as exc:  # the bus went away: end the stream, the browser resumes
        log.info("attach to %s ended during replay: %s", session_id, exc)
        listener.close()


async def frames(bus: Bus, session_id: str, after: int) -> AsyncIterator[bytes]:
    """SSE bytes for one client: replay after `after`, `caught-up`, live."""
    hubs = hubs_of(bus)
    listener = Listener(after)
    try:
        hub = await hubs.join(session_id, listener)
    except Exception as exc:  # the bus went away: end the stream, the browser resumes
        log.info("attach to %s failed: %s", session_id, exc)
        return
    replay = asyncio.create_task(_catch_up(bus, session_id, listener, hubs.replays))
    metrics.SSE_CLIENTS.inc()
    try:
        async for chunk in listener.chunks():
            yield chunk
    finally:
        metrics.SSE_CLIENTS.dec()
        replay.cancel()
        hubs.leave(hub, listener)
