"""Live records for every attached client of this gateway process, fanned
out in-process, from ONE JetStream consumer (the firehose, see `Hubs`).

A watched session has a `SessionHub`: its listeners, one core subscription
on its live-only subject, and a bounded window of its newest records in
memory. Each record is framed once (bytes, `id:` = stream sequence) and the
same bytes object is handed to every `Listener`. A hub lingers a while after
its last listener leaves, so a reconnecting browser is served from memory.

Exactness of the hand-over from replay to live:

1. the listener is registered with the hub first (records the hub delivers
   meanwhile are stashed, not sent);
2. if the hub's window reaches back to the listener's position, the window
   is sent, then `caught-up`, and the listener is live: no store read;
3. otherwise `until` = the session's last sequence is read from the server,
   the records in (after, until] are read from the store by direct gets
   straight to the listener, then `caught-up` is sent, then the stash is
   flushed, keeping only records past what was sent.

Every record stored after step 3's read has a sequence > `until` and reaches
the hub after the registration (the firehose runs before any hub exists):
it is either in the stash or arrives live. Each listener drops a sequence it
has already sent, so the overlap between replay and hub is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from events import subjects
from events.codec import ContractError, decode_event_lenient
from events.kinds import EPHEMERAL_KINDS, kind_of
from eventbus.retry import Backoff, retrying

if TYPE_CHECKING:
    from eventbus.log import Tail

    from .bus import Bus

log = logging.getLogger("gateway.hub")

SEP = b"\r\n"
CAUGHT_UP_FRAME = b"event: caught-up\r\ndata: {}\r\n\r\n"
#: A replay waits for the client to take this much before it reads on.
REPLAY_HIGH_WATER = 256 * 1024
#: A live client this far behind is dropped; its browser resumes by
#: Last-Event-ID, exactly, when it can keep up again.
MAX_BEHIND = 4 * 1024 * 1024
#: Cold replays from the store running at once in this process (direct-get
#: requests; a long one takes one short-lived consumer, see
#: EventLog.replay, so this also bounds those). The others wait their turn:
#: an attach storm is served in waves, not refused.
MAX_REPLAYS = 64
#: A session's window of newest records in memory (see SessionHub).
WINDOW_RECORDS = 20_000
WINDOW_BYTES = 16 * 1024 * 1024
#: How long a hub outlives its last listener.
LINGER_SECONDS = 30.0
RECONNECT_POLL_SECONDS = 0.1
#: A firehose that delivered nothing this long while events were stored is re-made.
STALL_SECONDS = 0.5


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


def record_frames(records: "Iterable[tuple[int, bytes]]") -> list[tuple[int, bytes]]:
    """`record_frame` of many records at once, as (seq, frame): one format
    per record for the common case (stored JSON: more than `{}`, no line
    break), `record_frame` for the others."""
    return [
        (seq, b'id: %d\r\ndata: {"id":%d,%s\r\n\r\n' % (seq, seq, data[1:]))
        if len(data) > 2 and b"\n" not in data and b"\r" not in data else (seq, record_frame(seq, data))
        for seq, data in records
    ]


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
        return self.replayed_frame(seq, record_frame(seq, data))

    def replayed_frame(self, seq: int, frame: bytes) -> asyncio.Future[None] | None:
        if seq <= self.position or self.closed:
            return None
        self.position = seq
        self._emit(frame)
        if self._size > REPLAY_HIGH_WATER:
            if self._drained is None or self._drained.done():
                self._drained = self._loop.create_future()
            return self._drained
        return None

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
    """A watched session in this process: its listeners, its live-only
    subscription, and a bounded window of its newest records in memory.

    The window holds every record of the session with a sequence > `low`
    (nothing missing): the firehose delivers each record stored after the
    hub was made, and a cold replay from the store fills in what came
    before (`absorb`). An attach from at or past `low` is served from
    memory alone; only an attach from further back reads the store."""

    def __init__(self, bus: "Bus", session_id: str, low: int) -> None:
        self.session_id = session_id
        self.listeners: set[Listener] = set()
        #: Joiners, counted from before the hub is started, so none is left
        #: behind by a hub stopping under it.
        self.members = 0
        #: The window is complete after this sequence.
        self.low = low
        self.window: deque[tuple[int, bytes]] = deque()
        self._window_bytes = 0
        #: Whether `low` moved up because the window was full. Until then,
        #: the session has no record between its last one when the hub was
        #: made and `low`, so any replay read after that joins up with it.
        self._trimmed = False
        self._bus = bus
        self._live = None
        self._linger: asyncio.TimerHandle | None = None
        self._starting = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        self._live = await self._bus.nc.subscribe(subjects.live(self.session_id), cb=self._on_live)  # type: ignore[union-attr]

    async def started(self) -> None:
        await asyncio.shield(self._starting)

    def on_record(self, seq: int, data: bytes) -> None:
        if seq <= self.low or (self.window and seq <= self.window[-1][0]):
            return  # the firehose restarted from an earlier point: already here
        frame = record_frame(seq, data)
        self._keep(seq, frame)
        for listener in tuple(self.listeners):
            listener.record(seq, frame)

    def _keep(self, seq: int, frame: bytes) -> None:
        self.window.append((seq, frame))
        self._window_bytes += len(frame)
        while self._window_bytes > WINDOW_BYTES or len(self.window) > WINDOW_RECORDS:
            old_seq, old = self.window.popleft()
            self._window_bytes -= len(old)
            self.low = old_seq
            self._trimmed = True

    def absorb(self, after: int, until: int, replayed: "Iterable[tuple[int, bytes]]") -> None:
        """A cold replay read the store's records in (after, until], read
        `until` after this hub existed: with them, the window is complete
        from `after` (see the class docstring), if nothing was trimmed off
        it past `until` meanwhile."""
        if after >= self.low or (self._trimmed and until < self.low):
            return
        newer = list(self.window)
        first_new = newer[0][0] if newer else None
        self.window = deque(item for item in replayed if first_new is None or item[0] < first_new)
        self._window_bytes = sum(len(frame) for _, frame in self.window)
        self.low = after
        for seq, frame in newer:
            self._keep(seq, frame)
        while self._window_bytes > WINDOW_BYTES or len(self.window) > WINDOW_RECORDS:
            old_seq, old = self.window.popleft()
            self._window_bytes -= len(old)
            self.low = old_seq
            self._trimmed = True

    def serve(self, listener: Listener) -> bool:
        """Catch `listener` up from memory, if the window reaches back to it:
        its records, `caught-up`, live. False: it needs the store first."""
        if listener.position < self.low:
            return False
        for seq, frame in self.window:
            if seq > listener.position:
                listener.position = seq
                listener._emit(frame)
        listener.caught_up()
        return True

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
        if self._live is not None:
            try:
                await self._live.unsubscribe()
            except Exception:
                pass


class Hubs:
    """The hubs of one gateway process (one `Bus`), by session, and the one
    JetStream consumer that feeds them all (the firehose: every session's
    events from the moment it started, dispatched by session).

    One consumer per process, not per session or per client, so a stream's
    consumer limit is never in reach. If the server restarts, the firehose
    is made again from the last sequence it delivered as soon as the
    connection is back (nats-py's own recovery of an ordered consumer waits
    for missed heartbeats, 15-20 s): no gap, and a record seen twice is
    dropped by sequence."""

    def __init__(self, bus: "Bus") -> None:
        self._bus = bus
        self._hubs: dict[str, SessionHub] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._firehose: Tail | None = None
        self._firehose_starting: asyncio.Future[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        #: The newest session-event sequence the firehose delivered (or
        #: the stream's last when it started).
        self.position = 0
        #: Admission for cold replays from the store (see MAX_REPLAYS).
        self.replays = asyncio.Semaphore(MAX_REPLAYS)
        #: Whole-stream readers riding the same consumer (gateway.push).
        self._observers: list[Callable[[str, int, bytes], None]] = []

    def __len__(self) -> int:
        return len(self._hubs)

    async def _start_firehose(self) -> None:
        events = self._bus.log
        self.position = await events.stream_last_seq()
        self._firehose = await events.follow_sessions(self.position, self._on_record)
        self._watch = asyncio.ensure_future(self._watch_reconnects(self._bus.nc))

    async def follow(self, observer: Callable[[str, int, bytes], None]) -> None:
        """Call `observer(session_id, seq, data)` for every session event
        stored from now on (the firehose is started if it was not)."""
        if observer not in self._observers:
            self._observers.append(observer)
        await self._firehose_started()

    def _on_record(self, session_id: str, seq: int, data: bytes) -> None:
        self.position = seq
        for observer in self._observers:
            try:
                observer(session_id, seq, data)
            except Exception:  # an observer's bug must not stop the live path
                log.exception("a firehose observer failed on event %d", seq)
        hub = self._hubs.get(session_id)
        if hub is not None:
            hub.on_record(seq, data)

    async def _watch_reconnects(self, nc) -> None:  # type: ignore[no-untyped-def]
        """Re-make the firehose when the connection came back, or when it
        stalled: events were stored since it last moved, and for a whole
        STALL_SECONDS it delivered none (a consumer lost or stuck some
        other way; nats-py would notice only after missed heartbeats)."""
        seen = nc.stats["reconnects"]
        loop = asyncio.get_running_loop()
        checked_at, moved = loop.time(), self.position
        baseline = await self._bus.log.stream_last_seq()
        while not nc.is_closed:
            await asyncio.sleep(RECONNECT_POLL_SECONDS)
            if not nc.is_connected:
                continue
            if nc.stats["reconnects"] != seen:
                seen = nc.stats["reconnects"]
                await self._restart_firehose(nc)
                continue
            if loop.time() - checked_at < STALL_SECONDS:
                continue
            checked_at = loop.time()
            try:
                last = await self._bus.log.stream_last_seq()
            except Exception:  # the server is away: the reconnect path handles it
                continue
            if self.position != moved:
                moved, baseline = self.position, last
            elif last > baseline and last > self.position:
                log.warning("firehose delivered nothing for %.0f s while events were stored; re-made from %d",
                            STALL_SECONDS, self.position)
                baseline = last
                await self._restart_firehose(nc)

    async def _restart_firehose(self, nc) -> None:  # type: ignore[no-untyped-def]
        old, self._firehose = self._firehose, None
        if old is not None:
            await old.stop()

        async def resume() -> None:
            if not nc.is_closed:  # closed for good: nothing to resume
                self._firehose = await self._bus.log.follow_sessions(self.position, self._on_record)
                log.info("firehose resumed after %d following a reconnect", self.position)

        await retrying(resume, Backoff(None, 0.1, most=1.0),  # every error: JetStream not back yet
                       on_retry=lambda exc: log.info("firehose not resumed yet: %s", exc))

    async def _firehose_started(self) -> None:
        if self._firehose_starting is None or (
            self._firehose_starting.done() and self._firehose_starting.exception() is not None
        ):
            self._firehose_starting = asyncio.ensure_future(self._start_firehose())
        await asyncio.shield(self._firehose_starting)

    async def join(self, session_id: str, listener: Listener) -> SessionHub:
        """The session's hub, started, with `listener` registered (not yet live)."""
        await self._firehose_started()
        hub = self._hubs.get(session_id)
        if hub is None:
            hub = self._hubs[session_id] = SessionHub(self._bus, session_id, self.position)
        hub.members += 1
        if hub._linger is not None:
            hub._linger.cancel()
            hub._linger = None
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
        # Kept a while for the client's reconnect or the next attach (served
        # from memory); it holds no consumer, only its window and a core
        # subscription.
        hub._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._drop, hub)

    def _drop(self, hub: SessionHub) -> None:
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
