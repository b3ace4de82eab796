"""The attach stream (SPEC §4): one client's replay, `caught-up`, then live,
as SSE bytes, handed over from replay to live exactly: no gap, no duplicate.

Every stored record goes out with `id: <stream sequence>`, so a browser's
`Last-Event-ID` (or `?after=`) resumes strictly after the last one it got.
The bytes go out as stored, with `"id"` spliced in (`hub.record_frame`): no
decode/encode on the hot path. Live records reach the client through the
session's hub (`hub.SessionHub`, fed by the process's one firehose consumer,
each record framed once per process whatever the number of clients), and so
do live-only frames (token deltas, no `id:`, sent only once caught up).

The hand-over, in the order the code below runs it:

1. join (`frames`): the client's `Listener` is registered with the session's
   hub first; records the hub delivers meanwhile are stashed, not sent;
2. from the window (`_from_window`): if the hub's window of newest records
   reaches back to the listener's position, the window is sent: no store
   read;
3. from the store (`_from_store`): otherwise `until` = the session's last
   sequence is read from the server, and the records in (after, until] are
   read by direct gets straight to the listener (a long replay through one
   short-lived consumer; at most `hub.MAX_REPLAYS` at once); what it read
   fills the hub's window for the next attach;
4. caught up (`Listener.caught_up`): `caught-up` is sent, then the stash,
   keeping only records past what was sent; from then on the listener is
   live.

Why it is exact: every record stored after step 3's read has a sequence >
`until` and reaches the hub after step 1 (the firehose runs before any hub
exists), so it is either in the stash or arrives live; the window holds
every record of the session past its low mark, so step 2 leaves no gap
either. A listener sends a sequence only when it is past the last one it
sent, so the overlap between replay and hub is never sent twice.

Writes: everything queued since the last write goes in one write, so a
replay takes as few chunks as the socket takes. When the client goes, the
generator is closed and it leaves the hub; the hub lingers a while for a
reconnect, then drops its subscription.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

from eventbus.log import EventLog

from . import metrics
from .bus import Bus
from .hub import CAUGHT_UP_FRAME, WINDOW_RECORDS, SessionHub, hubs_of, record_frame, record_frames

logger = logging.getLogger(__name__)

SLOW_CATCH_UP_SECONDS = 5.0
#: A replay waits for the client to take this much before it reads on.
REPLAY_HIGH_WATER = 256 * 1024
#: A live client this far behind is dropped; its browser resumes by
#: Last-Event-ID, exactly, when it can keep up again.
MAX_BEHIND = 4 * 1024 * 1024


async def frames(bus: Bus, session_id: str, after: int) -> AsyncIterator[bytes]:
    """SSE bytes for one client: replay after `after`, `caught-up`, live."""
    hubs = hubs_of(bus)
    listener = Listener(after)
    try:
        hub = await hubs.join(session_id, listener)  # 1
    except Exception as exc:  # the bus went away: end the stream, the browser resumes
        logger.info("attach to %s failed: %s", session_id, exc)
        return
    catching_up = asyncio.create_task(_catch_up(bus, hub, listener, hubs.replays))
    metrics.SSE_CLIENTS.inc()
    try:
        async for chunk in listener.chunks():
            yield chunk
    finally:
        metrics.SSE_CLIENTS.dec()
        catching_up.cancel()
        hubs.leave(hub, listener)


async def _catch_up(bus: Bus, hub: SessionHub, listener: Listener, replays: asyncio.Semaphore) -> None:
    """Steps 2 to 4, while `frames` writes what is queued."""
    started = time.monotonic()
    try:
        if _from_window(hub, listener):  # 2
            counted = metrics.Replay(listener.replayed)  # nothing read from the store
        else:  # 3
            counted = await _from_store(bus.log, hub, listener, replays)
        listener.caught_up()  # 4
        counted.caught_up(started)
    except Exception as exc:  # the bus went away: end the stream, the browser resumes
        logger.info("attach to %s ended during replay: %s", hub.session_id, exc)
        listener.close()


def _from_window(hub: SessionHub, listener: Listener) -> bool:
    """Send the hub's records past the listener's position, if its window
    reaches back to it. False: it needs the store first."""
    if listener.position < hub.low:
        return False
    for seq, frame in hub.window:
        if seq > listener.position:
            listener.position = seq
            listener._emit(frame)
    return True


async def _from_store(
    events: EventLog, hub: SessionHub, listener: Listener, replays: asyncio.Semaphore,
) -> metrics.Replay:
    """Read `until`, then the records in (position, until] straight to the
    listener, each framed once for it and for the hub's window."""
    started = time.monotonic()
    session_id = hub.session_id
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
    if after < until:
        async with replays:
            await events.replay(session_id, after, until, counted, counted.many)
    hub.absorb(complete_from, until, kept)
    if time.monotonic() - started > SLOW_CATCH_UP_SECONDS:
        logger.warning("attach to %s took %.1f s to catch up (to %d)", session_id, time.monotonic() - started, until)
    return counted


class Listener:
    """One attached client: frames waiting to be written, and where it is."""

    __slots__ = ("position", "live", "_stash", "_out", "_size", "_wake", "_drained", "closed", "_loop")

    def __init__(self, after: int) -> None:
        #: The highest sequence sent (or skipped as already seen by the client).
        self.position = after
        #: False while replaying: the hub's records are stashed meanwhile.
        self.live = False
        self._stash: list[tuple[int, bytes]] = []
        self._out: list[bytes] = []
        self._size = 0
        self._wake: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self.closed = False
        self._loop = asyncio.get_running_loop()

    def _emit(self, frame: bytes) -> None:
        self._out.append(frame)
        self._size += len(frame)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- from the replay (steps 2 to 4)

    def replayed(self, seq: int, data: bytes) -> asyncio.Future[None] | None:
        return self.replayed_frame(seq, record_frame(seq, data))

    def replayed_frame(self, seq: int, frame: bytes) -> asyncio.Future[None] | None:
        if seq <= self.position or self.closed:
            return None
        self.position = seq
        self._emit(frame)
        return self._backpressure()

    def replayed_frames(self, frames: list[tuple[int, bytes]]) -> asyncio.Future[None] | None:
        """`replayed_frame` of many, in order."""
        if self.closed or not frames:
            return None
        if frames[0][0] <= self.position:
            frames = [item for item in frames if item[0] > self.position]
            if not frames:
                return None
        self.position = frames[-1][0]
        self._out.extend(frame for _, frame in frames)
        self._size += sum(len(frame) for _, frame in frames)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        return self._backpressure()

    def _backpressure(self) -> asyncio.Future[None] | None:
        """Past the high-water mark, a future the replay awaits until the
        writer has drained: a slow client slows its replay, nothing piles up."""
        if self._size > REPLAY_HIGH_WATER:
            if self._drained is None or self._drained.done():
                self._drained = self._loop.create_future()
            return self._drained
        return None

    def caught_up(self) -> None:
        """Replay done: `caught-up`, then what the hub delivered meanwhile."""
        self._emit(CAUGHT_UP_FRAME)
        for seq, frame in self._stash:
            if seq > self.position:
                self.position = seq
                self._emit(frame)
        self._stash.clear()
        self.live = True

    # -- from the hub

    def record(self, seq: int, frame: bytes) -> int:
        """A stored record: stashed while replaying, else sent if new. Returns
        how many bytes behind this client was when it had to be dropped (0:
        it keeps up)."""
        if not self.live:
            self._stash.append((seq, frame))
        elif seq > self.position:
            self.position = seq
            self._emit(frame)
            if self._size > MAX_BEHIND:
                behind = self._size
                self._out.clear()
                self._size = 0
                self.close()
                return behind
        return 0

    def live_only(self, frame: bytes) -> None:
        if self.live:
            self._emit(frame)

    def close(self) -> None:
        """End the stream once what is queued has been written."""
        self.closed = True
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Everything queued since the last write, as one chunk per write."""
        while True:
            if self._out:
                out = self._out
                chunk = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                self._size = 0
                drained = self._drained
                if drained is not None and not drained.done():
                    drained.set_result(None)
                yield chunk
            elif self.closed:
                return
            else:
                self._wake = self._loop.create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
