"""The attach stream (SPEC §4): replay, `caught-up`, then live, as SSE.

- Stored events come from the event log with `id: <stream sequence>`, so a
  browser's `Last-Event-ID` (or `?after=`) resumes strictly after it: no gap,
  no duplicate. Their bytes go out as stored, with `"id"` spliced in: no
  decode/encode on the hot path, and each live record is framed once per
  process whatever the number of clients (see `hub`).
- The replay comes from the session hub's window in memory when it reaches
  back far enough, else from the store by direct gets (a long replay
  through one short-lived consumer, at most `hub.MAX_REPLAYS` at once; what
  it read fills the window for the next attach). Either way it is written
  in as few chunks as the socket takes (everything queued since the last
  write goes in one write).
- Live records (from the process's one firehose consumer) and live-only
  frames (token deltas, from the session's core NATS subject, no `id:`,
  only once caught up) come through the session's hub (`hub.SessionHub`).
- When the client goes, the generator is closed and it leaves the hub; the
  hub lingers a while for a reconnect, then drops its subscription.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

from . import metrics
from .bus import Bus
from .hub import WINDOW_RECORDS, Listener, SessionHub, hubs_of, record_frame, record_frames

log = logging.getLogger("gateway.attach")

SLOW_CATCH_UP_SECONDS = 5.0


async def _catch_up(bus: Bus, hub: SessionHub, listener: Listener, replays: asyncio.Semaphore) -> None:
    session_id = hub.session_id
    try:
        started = time.monotonic()
        if hub.serve(listener):
            metrics.Replay(listener.replayed).caught_up(started)
            return
        events = bus.log
        after = listener.position
        until = await events.last_seq(session_id)
        #: What the replay read, for the hub's window (its newest part only).
        kept: deque[tuple[int, bytes]] = deque(maxlen=WINDOW_RECORDS)
        complete_from = after

        def replayed(seq: int, data: bytes) -> asyncio.Future[None] | None:
            nonlocal complete_from
            if len(kept) == kept.maxlen:
                complete_from = kept[0][0]
            frame = record_frame(seq, data)
            kept.append((seq, frame))
            return listener.replayed_frame(seq, frame)

        def replayed_many(records: list[tuple[int, bytes]]) -> asyncio.Future[None] | None:
            nonlocal complete_from
            frames = record_frames(records)
            dropped = len(kept) + len(frames) - (kept.maxlen or 0)
            if dropped > 0:  # the newest record pushed out of `kept`
                complete_from = kept[dropped - 1][0] if dropped <= len(kept) else frames[dropped - len(kept) - 1][0]
            kept.extend(frames)
            return listener.replayed_frames(frames)

        counted = metrics.Replay(replayed, replayed_many)
        if listener.position < until:
            async with replays:
                await events.replay(session_id, listener.position, until, counted, counted.many)
        listener.caught_up()
        hub.absorb(complete_from, until, kept)
        counted.caught_up(started)
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
    replay = asyncio.create_task(_catch_up(bus, hub, listener, hubs.replays))
    metrics.SSE_CLIENTS.inc()
    try:
        async for chunk in listener.chunks():
            yield chunk
    finally:
        metrics.SSE_CLIENTS.dec()
        replay.cancel()
        hubs.leave(hub, listener)
