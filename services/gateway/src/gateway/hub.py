"""One live subscription per session per gateway process, fanned out in-process.

However many browsers attach to a session, this process holds one ordered
JetStream consumer on the session's events and one core subscription on its
live subject (a `SessionHub`). Each record is framed once (bytes, `id:` =
stream sequence) and the same bytes object is handed to every `Listener`.
A hub exists while it has listeners; the last one out stops it.

Exactness of the hand-over from replay to live, without buffering history in
the hub:

1. the listener is registered with the hub first (records the hub delivers
   meanwhile are stashed, not sent);
2. then `until` = the session's last sequence is read from the server;
3. the records in (after, until] are replayed from the store straight to the
   listener (its own short-lived consumer), then `caught-up` is sent;
4. then the stash is flushed, keeping only records past what was sent, and
   the listener is live.

Every record stored after step 2's read has a sequence > `until` and was
stored after the hub's consumer existed (the hub is started before step 1),
so the hub delivers it after the registration: it is either in the stash or
arrives live. Each listener drops a sequence it has already sent, so the
overlap between replay and hub is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from events import subjects
from events.codec import ContractError, decode_event_lenient
from events.kinds import EPHEMERAL_KINDS, kind_of

if TYPE_CHECKING:
    from events.log import Tail

    from .bus import Bus

log = logging.getLogger("gateway.hub")

SEP = b"\r\n"
CAUGHT_UP_FRAME = b"event: caught-up\r\ndata: {}\r\n\r\n"
#: A replay waits for the client to take this much before it reads on.
REPLAY_HIGH_WATER = 256 * 1024
#: A live client this far behind is dropped; its browser resumes by
#: Last-Event-ID, exactly, when it can keep up again.
MAX_BEHIND = 4 * 1024 * 1024
#: Replays running at once in this process (each holds a JetStream consumer
#: while it runs; nats-server 2.15 allows 1,000 per stream by default). The
#: others wait their turn: an attach storm is served in waves, not refused.
MAX_REPLAYS = 64


def _data_lines(body: bytes) -> bytes:
    if b"\n" in body or b"\r" in body:  # never for stored JSON; kept correct for any bytes
        lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return b"".join(b"data: " + line + SEP for line in lines)
    return b"data: " + body + SEP


def with_id(seq: int, data: bytes) -> bytes:
    """The stored JSON with `"id":<seq>` spliced in front of its first key:
    no decode, no re-encode (the SSE frames and the JSON event pages)."""
    return b'{"id":%d' % seq + (b"," + data[1:] if len(data) > 2 else b"}")


def record_frame(seq: int, data: bytes) -> bytes:
    """`id: <seq>` and the event with its id."""
    return b"id: %d" % seq + SEP + _data_lines(with_id(seq, data)) + SEP


def live_frame(data: bytes) -> bytes:
    """A live-only payload: no `id:`, so it never moves the resume point."""
    return _data_lines(data) + SEP


def is_live_frame(msg, session_id: str) -> bool:  # type: ignore[no-untyped-def]
    """Only what a runner publishes for this session goes to browsers: a
    live-only kind, not something a JetStream consumer was pointed at this
    subject to re-deliver (those carry an ack reply subject)."""
    if msg.reply:
        return False
    try:
        event = decode_event_lenient(msg.data)
    except ContractError:
        return False
    return event is not None and event.session_id == session_id and kind_of(type(event)) in EPHEMERAL_KINDS


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

    # -- from the replay (this listener's own consumer)

    def replayed(self, seq: int, data: bytes) -> asyncio.Future[None] | None:
        if seq <= self.position or self.closed:
            return None
        self.position = seq
        self._emit(record_frame(seq, data))
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

    def record(self, seq: int, frame: bytes) -> None:
        if not self.live:
            self._stash.append((seq, frame))
        elif seq > self.position:
            self.position = seq
            self._emit(frame)
            if self._size > MAX_BEHIND:
                log.warning("dropping a client %d bytes behind; it resumes by Last-Event-ID", self._size)
                self._out.clear()
                self._size = 0
                self.close()

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


class SessionHub:
    """The one consumer of a session's records (and its live subject) in this process."""

    def __init__(self, bus: "Bus", session_id: str) -> None:
        self.session_id = session_id
        self.listeners: set[Listener] = set()
        #: Joiners, counted from before the hub is started, so none is left
        #: behind by a hub stopping under it.
        self.members = 0
        self._bus = bus
        self._tail: Tail | None = None
        self._live = None
        self._starting = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        events = self._bus.log
        base = await events.last_seq(self.session_id)
        self._tail = await events.follow(self.session_id, base, self._on_record)
        self._live = await self._bus.nc.subscribe(subjects.live(self.session_id), cb=self._on_live)  # type: ignore[union-attr]

    async def started(self) -> None:
        await asyncio.shield(self._starting)

    def _on_record(self, seq: int, data: bytes) -> None:
        frame = record_frame(seq, data)
        for listener in tuple(self.listeners):
            listener.record(seq, frame)

    async def _on_live(self, msg) -> None:  # type: ignore[no-untyped-def]
        if not is_live_frame(msg, self.session_id):
            return
        frame = live_frame(msg.data)
        for listener in self.listeners:
            listener.live_only(frame)

    async def stop(self) -> None:
        if not self._starting.done():
            self._starting.cancel()
        try:
            await self._starting
        except BaseException:
            pass
        if self._tail is not None:
            await self._tail.stop()
        if self._live is not None:
            try:
                await self._live.unsubscribe()
            except Exception:
                pass


class Hubs:
    """The hubs of one gateway process (one `Bus`), by session."""

    def __init__(self, bus: "Bus") -> None:
        self._bus = bus
        self._hubs: dict[str, SessionHub] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        #: Admission for replays (see MAX_REPLAYS).
        self.replays = asyncio.Semaphore(MAX_REPLAYS)

    def __len__(self) -> int:
        return len(self._hubs)

    async def join(self, session_id: str, listener: Listener) -> SessionHub:
        """The session's hub, started, with `listener` registered (not yet live)."""
        hub = self._hubs.get(session_id)
        if hub is None:
            hub = self._hubs[session_id] = SessionHub(self._bus, session_id)
        hub.members += 1
        try:
            await hub.started()
        except BaseException:
            self._release(hub)
            raise
        hub.listeners.add(listener)
        return hub

    def leave(self, hub: SessionHub, listener: Listener) -> None:
        hub.listeners.discard(listener)
        self._release(hub)

    def _release(self, hub: SessionHub) -> None:
        hub.members -= 1
        if hub.members > 0:
            return
        if self._hubs.get(hub.session_id) is hub:
            del self._hubs[hub.session_id]
        task = asyncio.ensure_future(hub.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)


_registry: "weakref.WeakKeyDictionary[Bus, Hubs]" = weakref.WeakKeyDictionary()


def hubs_of(bus: "Bus") -> Hubs:
    hubs = _registry.get(bus)
    if hubs is None:
        hubs = _registry[bus] = Hubs(bus)
    return hubs
