"""The event log: append to a session, replay strictly after a sequence, tail.

The JetStream stream sequence is the event's identity on the wire (`id:` of
the SSE frame): monotonic and never reused, so "resume after n" is exact.

Each service appends under its own subject (`subjects.session_writer`: the
bus lets each NATS user write only its own, so who wrote an event is a fact
of the transport); a session's chain runs across all its writers' subjects,
and readers filter on `subjects.session_filters` (which also covers stores
written before per-writer subjects).

`attach` reads the stored records up to the session's last sequence, read
first, by direct gets, then follows with one ordered consumer from where
that read stopped. An ordered consumer recreates itself on gaps, so
delivery is in order with no holes and no duplicates.

`replay` and `follow` are the same reader for hot paths: a plain callback
per record (sequence, stored bytes), no per-record objects or queues, so a
caller can frame the bytes once and hand them on as they are.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from events import chain, subjects
from . import bulkread, direct, trace
from events.codec import decode_event, decode_event_lenient, encode
from events.kinds import EPHEMERAL_KINDS, Envelope, Event
from .retry import Backoff, retrying
from .topology import Topology


INACTIVE_SECONDS = 2.0
#: Events left after a replay's first event past which it takes a consumer
#: (one direct-get batch's worth: past it, a pushed message's lower cost
#: per event outweighs the consumer's creation).
LONG_REPLAY = 1000
#: Times a replay asks again for records a lagging replica did not have yet.
LAGGING_REPLICA_RETRIES = 40
#: nats-server 2.15 allows 1,000 consumers per stream unless the stream says
#: otherwise; creating one more fails with this code until one is reaped.
MAX_CONSUMERS_REACHED = 10026
CONSUMER_ROOM_WAIT_SECONDS = 10.0
CONSUMER_ROOM_BACKOFF = Backoff(CONSUMER_ROOM_WAIT_SECONDS, 0.05, most=0.5)
#: Sessions seen with events and nothing on the old subject (bounded; see EventLog._filters).
_NO_LEGACY: dict[str, None] = {}
NO_LEGACY_KEPT = 50_000


def _no_legacy(session_id: str) -> None:
    if session_id not in _NO_LEGACY:
        _NO_LEGACY[session_id] = None
        if len(_NO_LEGACY) > NO_LEGACY_KEPT:
            del _NO_LEGACY[next(iter(_NO_LEGACY))]


async def _deliver_upto(got: list[direct.Got], position: int, until: int, deliver: Deliver) -> tuple[int, bool]:
    """Hand `got` to `deliver` in order, none past `until`: the last one
    handed, and whether the replay is over (`until` reached or passed)."""
    for g in got:
        if g.seq > until:
            return position, True
        position = g.seq
        pending = deliver(g.seq, g.data)
        if pending is not None and inspect.isawaitable(pending):
            await pending
    return position, position >= until


def _no_room(exc: Exception) -> bool:
    """The stream is at its consumer limit: worth waiting for one to be reaped."""
    return isinstance(exc, APIError) and exc.err_code == MAX_CONSUMERS_REACHED


async def _answer_flow_control(nc, sub) -> None:  # type: ignore[no-untyped-def]
    """Answer a pending flow-control request as soon as the messages before
    it were delivered.

    An ordered consumer has flow control: the server stops pushing until the
    client answers. nats-py answers at once only if every message before the
    request was already handed to the callback; otherwise (messages still
    queued, i.e. whenever the process is busy) it leaves the answer to a
    task that looks every 0.25 s. So the server paused for up to 250 ms at a
    time under load: a firehose fell behind by seconds with its process
    mostly idle (5,000 clients, BENCHMARKS.md), and a long replay stalled.
    The same condition as nats-py's task, checked after each delivery.
    Private attributes of nats-py 2.16; if they are not there, its own task
    still answers."""
    jsi = getattr(getattr(sub, "_sub", sub), "_jsi", None)
    reply = getattr(jsi, "_fcr", None)
    if not reply:
        return
    try:
        if jsi._fciseq - jsi._psub._pending_queue.qsize() < jsi._fcd:
            return
        jsi._fcr, jsi._fcd = None, 0
    except AttributeError:
        return
    await nc.publish(reply)


@dataclass(frozen=True, slots=True)
class Record:
    """One stored event: its stream sequence and its bytes as stored."""

    seq: int
    data: bytes
    #: The tamper-evidence link of this event (see events.chain).
    link: str = ""
    #: The service that stored it, from its subject ("" before per-writer subjects).
    writer: str = ""

    def event(self) -> Event:
        return decode_event(self.data)


class CaughtUp:
    """Marker yielded once by `attach` when replay has reached the present."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CAUGHT_UP"


CAUGHT_UP = CaughtUp()


def _stream_seq(msg: Msg) -> int:
    # Reply subject: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    # (or the longer form with domain and account hash); sseq is 4th from the end.
    return int(msg.reply.rsplit(".", 4)[-4])


#: Called with (stream sequence, stored bytes) of each record, in order. A
#: replay awaits what it returns (backpressure); a tail ignores it.
Deliver = Callable[[int, bytes], "Awaitable[None] | None"]


class Tail:
    """A running `EventLog.follow`; `stop()` ends it (the server reaps the
    ephemeral consumer INACTIVE_SECONDS later, as for `attach`)."""

    def __init__(self, sub) -> None:  # type: ignore[no-untyped-def]
        self._sub = sub

    async def stop(self) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception:  # the connection may already be gone; the server reaps the consumer
            pass


@dataclass(frozen=True, slots=True)
class _Chain:
    """Where one writer appends to one hash chain (a session, an audit subject)."""

    subject: str
    #: The filter `Nats-Expected-Last-Subject-Sequence` is checked against:
    #: every writer's subject of the chain (a wildcard), so no two writers fork it.
    expect: str
    #: Subjects whose newest event is the chain's head (old and per-writer).
    heads: tuple[str, ...]
    #: Bound into each link (events.chain); "" for unattributed appends.
    writer: str


def _record(seq: int, msg: Msg) -> Record:
    return Record(seq, msg.data, (msg.headers or {}).get(chain.HEADER, ""), subjects.writer_of(msg.subject) or "")


WRONG_LAST_SEQUENCE = 10071
APPEND_ATTEMPTS = 50
#: Events per atomic batch of an `Appender` (the server takes up to 1,000).
MAX_BATCH = 500


#: How many subjects' tails an EventLog remembers (EventLog._remember).
TAIL_CACHE_SUBJECTS = 1024


class EventLog:
    """`writer` names the service appending (one of `subjects.WRITERS`, the
    same as its NATS user); None appends to the subjects of stores before
    per-writer subjects, which no NATS user may write any more (tests of
    readers and migrations only)."""

    def __init__(self, js: JetStreamContext, topology: Topology = Topology(), writer: str | None = None) -> None:
        if writer is not None and writer not in subjects.WRITERS:
            raise ValueError(f"unknown event writer {writer!r}")
        self._js = js
        self._stream = topology.events_stream
        self._writer = writer
        #: subject -> (sequence, link) of the newest event this process knows;
        #: saves a read per append while this process is the only writer.
        #: Oldest first, at most TAIL_CACHE_SUBJECTS (see _remember).
        self._tails: dict[str, tuple[int, str]] = {}

    async def append(self, event: Envelope, *, msg_id: str | None = None) -> int:
        """Store one event in its session's log; returns its stream sequence.

        `msg_id` makes a retried append idempotent within the stream's
        duplicate window.
        """
        if event.session_id is None:
            raise ValueError("an event appended to a session log needs a session_id")
        return await self._publish(self._session_chain(event.session_id), event, msg_id)

    async def append_audit(self, name: str, event: Envelope, *, msg_id: str | None = None) -> int:
        """Store one event on an audit subject (facts that outlive sessions)."""
        base, every = subjects.audit_filters(name)
        if self._writer is None:
            target = _Chain(base, base, (base, every), "")
        else:
            target = _Chain(subjects.audit_writer(name, self._writer), every, (base, every), self._writer)
        return await self._publish(target, event, msg_id)

    def _session_chain(self, session_id: str) -> _Chain:
        base, every = subjects.session_filters(session_id)
        if self._writer is None:  # the old subject (tests, tools on an open server): read it again from now on
            _NO_LEGACY.pop(session_id, None)
            return _Chain(base, base, (base, every), "")
        return _Chain(subjects.session_writer(session_id, self._writer), every, (base, every), self._writer)

    async def _publish(self, target: _Chain, event: Envelope, msg_id: str | None) -> int:
        kind = type(event).__struct_config__.tag
        if kind in EPHEMERAL_KINDS:
            raise ValueError(f"{kind!r} events are live-only and never stored")
        return await self._publish_bytes(target, encode(event), msg_id)

    def appender(self, session_id: str, *, max_batch: int = MAX_BATCH) -> "Appender":
        """A pipelined writer of one session's log (see `Appender`)."""
        return Appender(self, session_id, self._session_chain(session_id), max_batch=max_batch)

    @staticmethod
    def _expecting(target: _Chain, seq: int) -> dict[str, str]:
        headers = {"Nats-Expected-Last-Subject-Sequence": str(seq)}
        if target.expect != target.subject:
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = target.expect
        return headers

    async def _publish_batch(self, target: _Chain, items: list[tuple[bytes, str | None]]) -> list[int]:
        """Store `items` (stored bytes, msg id) as the next events of `subject`,
        in order, as ONE JetStream atomic batch: all or nothing. Its first
        message carries `Nats-Expected-Last-Subject-Sequence` of the tail its
        links extend, so the batch lands right after that tail or not at all
        (then it is re-linked to the new tail and sent again): the chain can
        no more fork than with `append`. Returns the stream sequences, which
        are contiguous (nothing interleaves with an atomic batch)."""
        if len(items) == 1:
            return [await self._publish_bytes(target, items[0][0], items[0][1])]
        nc = self._js._nc  # the JetStream context's connection: a batch is plain publishes + one request
        subject = target.subject
        for _ in range(APPEND_ATTEMPTS):
            tail_seq, tail_link = self._tails.get(target.expect) or await self._tail(target)
            batch = uuid.uuid4().hex
            link = tail_link
            answer = None
            for index, (data, msg_id) in enumerate(items, 1):
                link = chain.link(link, data, target.writer)
                headers = trace.headers(**{chain.HEADER: link, "Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(index)})
                if index == 1:
                    headers.update(self._expecting(target, tail_seq))
                    headers["Nats-Expected-Stream"] = self._stream
                if msg_id:
                    headers["Nats-Msg-Id"] = msg_id
                if index < len(items):
                    await nc.publish(subject, data, headers=headers)
                else:
                    headers["Nats-Batch-Commit"] = "1"
                    answer = await nc.request(subject, data, timeout=self._js._timeout, headers=headers)
            assert answer is not None
            ack = json.loads(answer.data)
            error = ack.get("error")
            if error:
                if error.get("err_code") == WRONG_LAST_SEQUENCE:
                    self._tails.pop(target.expect, None)  # another writer got in first: link to its event
                    continue
                raise APIError.from_error(error)
            last, count = int(ack["seq"]), int(ack.get("count", len(items)))
            if count != len(items):
                raise RuntimeError(f"atomic batch on {subject}: {count} stored of {len(items)}")
            self._remember(target.expect, (last, link))
            return list(range(last - count + 1, last + 1))
        raise RuntimeError(f"could not append to {subject}: too much contention")

    async def _publish_bytes(self, target: _Chain, data: bytes, msg_id: str | None) -> int:
        subject = target.subject
        for _ in range(APPEND_ATTEMPTS):
            tail_seq, tail_link = self._tails.get(target.expect) or await self._tail(target)
            link = chain.link(tail_link, data, target.writer)
            # The correlation ids (eventbus.trace) ride along: the stored event
            # names the request that caused it, for the auditor and for logs.
            headers = trace.headers(**{chain.HEADER: link, **self._expecting(target, tail_seq)})
            if msg_id:
                headers["Nats-Msg-Id"] = msg_id
            try:
                ack = await self._js.publish(subject, data, stream=self._stream, headers=headers)
            except APIError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
                self._tails.pop(target.expect, None)  # another writer got in first: link to its event
                continue
            if ack.duplicate:
                self._tails.pop(target.expect, None)  # stored earlier, with the link computed then
            else:
                self._remember(target.expect, (ack.seq, link))
            return ack.seq
        raise RuntimeError(f"could not append to {subject}: too much contention")

    async def _newest(self, filters: tuple[str, ...]) -> dict[str, Msg]:
        """The newest stored message of each filter that has one."""
        found = {}
        for subject in filters:
            try:
                found[subject] = await self._js.get_last_msg(self._stream, subject, direct=True)
            except NotFoundError:
                pass
        return found

    def _remember(self, subject: str, tail: tuple[int, str]) -> None:
        """Keep `subject`'s tail as the newest entry; forget the least recently
        written subject past the bound. A long-lived process writes to every
        session over its life, and nothing may grow with history: a forgotten
        tail costs one read on that session's next append, nothing more."""
        self._tails.pop(subject, None)
        self._tails[subject] = tail
        if len(self._tails) > TAIL_CACHE_SUBJECTS:
            del self._tails[next(iter(self._tails))]

    async def _tail(self, target: _Chain) -> tuple[int, str]:
        """(the newest sequence on `target.expect`, the chain head's link)."""
        newest = await self._newest(target.heads)
        expect = newest.get(target.expect)
        head = max(newest.values(), key=lambda m: m.seq or 0, default=None)
        link = (head.headers or {}).get(chain.HEADER, chain.GENESIS) if head is not None else chain.GENESIS
        return (expect.seq or 0) if expect is not None else 0, link

    async def _heads(self, session_id: str) -> list[direct.Got]:
        """The newest message of each subject holding the session's events
        (old and each writer's), in one multi-last request. Notes a session
        with nothing on the old subject (see `_filters`)."""
        base, every = subjects.session_filters(session_id)
        got, _ = await direct.get_batch(self._js._nc, self._stream, multi_last=[base, every],
                                        batch=len(subjects.WRITERS) + 1)
        if got and all(g.subject != base for g in got):
            _no_legacy(session_id)
        return got

    def _filters(self, session_id: str) -> tuple[str, ...]:
        """The subject filters a read of the session needs: the old subject
        only when it holds something (nothing writes it any more, so once
        seen empty while the session had events, it stays empty)."""
        base, every = subjects.session_filters(session_id)
        return (every,) if session_id in _NO_LEGACY else (base, every)

    async def last_seq(self, session_id: str) -> int:
        """The sequence of the session's newest event, 0 when it has none."""
        return max((g.seq for g in await self._heads(session_id)), default=0)

    async def head(self, session_id: str) -> tuple[int, str]:
        """The session's chain head: (sequence, link) of its newest event,
        (0, "") when it has none. Kept outside the stream (printed by
        `breakglass sessions`), it is the anchor a cut export fails against."""
        head = max(await self._heads(session_id), key=lambda g: g.seq, default=None)
        if head is None:
            return 0, chain.GENESIS
        return head.seq, head.headers.get(chain.HEADER, chain.GENESIS)

    async def last_event(self, session_id: str) -> Event | None:
        """The session's newest event, None when it has none (or a newer kind)."""
        head = max(await self._heads(session_id), key=lambda g: g.seq, default=None)
        return None if head is None else decode_event_lenient(head.data or b"")

    async def attach(
        self, session_id: str, after: int = 0, *, follow: bool = True
    ) -> AsyncIterator[Record | CaughtUp]:
        """Yield the session's records with seq > `after`, then `CAUGHT_UP`
        once, then (when `follow`) live records until the caller stops.

        The plain reader for tools and tests (the gateway's attach stream
        has its own hand-over, gateway.attach). The stored part, up to the
        last sequence read first, is read by direct gets (no consumer); the
        live part is one ordered consumer from where that read stopped, so
        nothing is missed or repeated. Use with `contextlib.aclosing` so
        that consumer is removed promptly.
        """
        last = await self.last_seq(session_id)
        async for record in self._records(session_id, after, last):
            after = record.seq
            yield record
        yield CAUGHT_UP
        if follow:
            async with aclosing(self._live(session_id, after)) as live:  # closed with this one
                async for record in live:
                    yield record

    async def _live(self, session_id: str, after: int) -> AsyncIterator[Record]:
        """The session's records with seq > `after` as they are stored, each
        once, through one ordered consumer (removed when the caller stops)."""
        queue: asyncio.Queue[Record] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            queue.put_nowait(_record(_stream_seq(msg), msg))

        sub = await self._ordered(session_id, after, on_msg)
        try:
            while True:
                record = await queue.get()
                if record.seq > after:
                    after = record.seq
                    yield record
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may already be gone; the server reaps the consumer
                pass

    async def _records(
        self, session_id: str, after: int, until: int | None = None, *, batch: int = direct.MAX_BATCH,
    ) -> AsyncIterator[Record]:
        """The stored records with `after < seq <= until` (all when None),
        in order, read by batched direct gets: no consumer, whatever the
        number of readers."""
        filters = self._filters(session_id)
        nc = self._js._nc
        lagging = 0
        while until is None or after < until:
            got, more = await direct.get_batch_any(nc, self._stream, seq=after + 1, filters=filters, batch=batch)
            for g in got:
                if until is not None and g.seq > until:
                    return
                after = g.seq
                yield Record(g.seq, g.data, g.headers.get(chain.HEADER, ""), subjects.writer_of(g.subject) or "")
            if got and more:
                continue
            if until is None or after >= until or lagging >= LAGGING_REPLICA_RETRIES:
                return
            # On a cluster any replica answers a direct get, and one may not
            # have `until` yet although another told us it exists: ask again
            # rather than leave a gap before the live records.
            lagging += 1
            await asyncio.sleep(0.05)

    async def _ordered(self, session_id: str, after: int, cb):  # type: ignore[no-untyped-def]
        """An ordered push consumer on the session's events from `after + 1`."""
        return await self._ordered_on(self._filters(session_id), after, cb)

    async def _ordered_on(self, filters: tuple[str, ...], after: int, cb):  # type: ignore[no-untyped-def]
        """An ordered push consumer on the subjects `filters` from `after + 1`.

        When the stream is at its consumer limit (a burst of attaches: the
        server reaps a left consumer INACTIVE_SECONDS after its reader went),
        wait for room rather than fail, for up to CONSUMER_ROOM_WAIT_SECONDS."""
        async def attempt():  # type: ignore[no-untyped-def]
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1,
                inactive_threshold=INACTIVE_SECONDS, filter_subjects=list(filters),
            )
            holder: list = []

            async def delivered(msg: Msg) -> None:
                await cb(msg)
                if holder:
                    await _answer_flow_control(self._js._nc, holder[0])

            sub = await self._js.subscribe(
                filters[0], stream=self._stream, cb=delivered, ordered_consumer=True, config=config,
            )
            holder.append(sub)
            return sub

        return await retrying(attempt, CONSUMER_ROOM_BACKOFF, retry_on=_no_room)

    async def replay(
        self, session_id: str, after: int, until: int, deliver: Deliver,
        deliver_many: bulkread.DeliverMany | None = None,
    ) -> int:
        """Call `deliver(seq, data)` for each stored record with
        `after < seq <= until`, in order, exactly once; return the last
        sequence delivered (`until` is normally `last_seq()` read
        beforehand; a record past it is left to the live path). What
        `deliver` returns, if anything, is awaited before the next record:
        a slow reader slows the replay down instead of buffering it.

        Read by batched direct gets (no consumer). When more than
        LONG_REPLAY events remain after the first event, the rest comes
        through one short-lived ordered consumer instead: per event it costs
        this process about a third of a direct-get reply. Callers bound how
        many replays run at once (gateway.hub.MAX_REPLAYS), which bounds
        these consumers too. Both reads go through eventbus.bulkread when
        they can (a raw connection parsed in bulk), else through nats-py;
        `deliver_many`, when given, takes what the bulk reader parsed
        together (a list of (seq, data)) in one call instead."""
        position = after
        if until <= after:
            return after
        nc, filters = self._js._nc, self._filters(session_id)
        # One event first: the server says how many follow, so a long
        # replay goes to a consumer at once instead of after a batch of
        # direct-get replies (each about three times a pushed message's cost).
        got, more = await direct.get_batch_any(nc, self._stream, seq=after + 1, filters=filters, batch=1)
        position, done = await _deliver_upto(got, position, until, deliver)
        if done:
            return position
        if more > LONG_REPLAY:
            return await self._replay_ordered(session_id, position, until, deliver, deliver_many)
        if more > bulkread.WORTH_IT and len(filters) == 1:  # or on from where it stopped
            position, done = await bulkread.replay(nc, self._stream, filters[0], position, until, deliver, deliver_many)
            if done:
                return position

        if got and more:
            position, done = await self._replay_batches(filters, position, until, deliver)
            if done:
                return position
        return await self._replay_lagging(session_id, position, until, deliver)

    async def _replay_batches(self, filters: tuple[str, ...], position: int, until: int,
                              deliver: Deliver) -> tuple[int, bool]:
        """Direct-get batches from `position`, each asked for while the one
        before is delivered; (last delivered, whether `until` was reached)."""
        nc = self._js._nc

        def read(seq: int) -> asyncio.Future[tuple[list[direct.Got], int]]:
            return asyncio.ensure_future(direct.get_batch_any(nc, self._stream, seq=seq, filters=filters))

        reading: asyncio.Future[tuple[list[direct.Got], int]] | None = read(position + 1)
        try:
            while reading is not None:
                got, more = await reading
                reading = None
                if got and more and got[-1].seq < until:
                    reading = read(got[-1].seq + 1)
                position, done = await _deliver_upto(got, position, until, deliver)
                if done:
                    return position, True
        finally:
            if reading is not None:
                reading.cancel()
        return position, False

    async def _replay_lagging(self, session_id: str, position: int, until: int, deliver: Deliver) -> int:
        """Short of `until` (a lagging replica on a cluster): read on,
        asking again, until it is reached."""
        async for record in self._records(session_id, position, until):
            position = record.seq
            pending = deliver(record.seq, record.data)
            if pending is not None and inspect.isawaitable(pending):
                await pending
        return max(position, until)

    async def _replay_ordered(
        self, session_id: str, after: int, until: int, deliver: Deliver,
        deliver_many: bulkread.DeliverMany | None = None,
    ) -> int:
        """`replay` through a short-lived ordered consumer: for long replays
        only, where the push of a consumer is about three times cheaper per
        event for this process than direct-get replies."""
        if until <= after:
            return after
        nc, filters = self._js._nc, self._filters(session_id)
        after, over = await bulkread.replay_pushed(nc, self._stream, filters, after, until, deliver, deliver_many)
        if over:  # else on from where it stopped, through nats-py
            return after
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        position = after

        async def on_msg(msg: Msg) -> None:
            nonlocal position
            if done.done():
                return
            seq = _stream_seq(msg)
            if seq <= position:
                return
            if seq > until:  # `until` itself is gone (expired): the replay is past it all the same
                done.set_result(position)
                return
            position = seq
            try:
                pending = deliver(seq, msg.data)
                if pending is not None and inspect.isawaitable(pending):
                    await pending
            except Exception as exc:
                done.set_exception(exc)
                return
            if seq >= until:
                done.set_result(seq)

        sub = await self._ordered(session_id, after, on_msg)
        try:
            return await done
        finally:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def follow(self, session_id: str, after: int, deliver: Callable[[int, bytes], None]) -> Tail:
        """Call `deliver(seq, data)` for every record of the session with
        seq > `after`, stored or yet to come, in order, exactly once, until
        the returned `Tail` is stopped (one consumer while it runs)."""
        position = after

        async def on_msg(msg: Msg) -> None:
            nonlocal position
            seq = _stream_seq(msg)
            if seq <= position:  # an ordered consumer that restarted may resend: never twice
                return
            position = seq
            deliver(seq, msg.data)

        return Tail(await self._ordered(session_id, after, on_msg))

    async def follow_sessions(self, after: int, deliver: Callable[[str, int, bytes], None]) -> Tail:
        """Call `deliver(session_id, seq, data)` for every session event with
        seq > `after`, in stream order, until the `Tail` is stopped: ONE
        consumer for a whole gateway process, however many sessions and
        clients it serves (see gateway.hub)."""
        position = after

        async def on_msg(msg: Msg) -> None:
            nonlocal position
            seq = _stream_seq(msg)
            if seq <= position:
                return
            position = seq
            sid = subjects.session_of(msg.subject)
            if sid is not None:
                deliver(sid, seq, msg.data)

        return Tail(await self._ordered_on((subjects.SESSION_EVENTS_EVERY,), after, on_msg))

    async def stream_last_seq(self) -> int:
        """The stream's newest sequence (a starting point for `follow_sessions`), 0 when empty."""
        return await direct.stream_last_seq(self._js._nc, self._stream)

    async def read(self, session_id: str, after: int = 0, limit: int | None = None) -> list[Record]:
        """The stored records after `after` (at most `limit`), without tailing
        and without a consumer."""
        records: list[Record] = []
        batch = min(limit, direct.MAX_BATCH) if limit else direct.MAX_BATCH
        async for record in self._records(session_id, after, batch=batch):
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
        return records


class Appender:
    """Pipelined, chained appends to one session's log (group commit).

    `append(event)` queues the event and returns a future of its stream
    sequence at once. One batch is in flight at a time; whatever was queued
    meanwhile goes out next as one JetStream atomic batch (see
    `EventLog._publish_batch`). So a writer that does not wait for each ack
    gets pipelined throughput, a writer that does gets exactly `append`, and
    either way the events are stored in call order with the same hash chain
    and the same fork-proof check as `append`.

    Batches of more than one event need the events stream to allow atomic
    publishes (`allow_atomic`, nats-server 2.12+). A failed batch fails its
    events' futures and every later one (nothing is stored out of order);
    `flush()` raises the first failure.
    """

    def __init__(self, log: EventLog, session_id: str, target: _Chain, *, max_batch: int = MAX_BATCH) -> None:
        self._log = log
        self._session_id = session_id
        self._target = target
        self._max_batch = max(1, min(max_batch, 1000))
        self._queue: list[tuple[bytes, str | None, asyncio.Future[int]]] = []
        self._running: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    @property
    def failed(self) -> bool:
        """True once a batch failed: this appender stores nothing more."""
        return self._failed is not None

    def append(self, event: Envelope, *, msg_id: str | None = None) -> asyncio.Future[int]:
        kind = type(event).__struct_config__.tag
        if kind in EPHEMERAL_KINDS:
            raise ValueError(f"{kind!r} events are live-only and never stored")
        if event.session_id != self._session_id:
            raise ValueError("an Appender writes the events of its own session only")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self._failed is not None:
            future.set_exception(self._failed)
            return future
        self._queue.append((encode(event), msg_id, future))
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._drain())
        return future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                seqs = await self._log._publish_batch(self._target, [(data, msg_id) for data, msg_id, _ in batch])
            except BaseException as exc:
                self._failed = exc if isinstance(exc, Exception) else RuntimeError("appender cancelled")
                for _, _, future in batch + self._queue:
                    if not future.done():
                        future.set_exception(self._failed)
                self._queue.clear()
                if not isinstance(exc, Exception):
                    raise
                return
            for (_, _, future), seq in zip(batch, seqs):
                if not future.done():
                    future.set_result(seq)

    async def flush(self) -> None:
        """Wait until everything appended so far is stored."""
        while self._running is not None and not self._running.done():
            await asyncio.shield(self._running)
        if self._failed is not None:
            raise self._failed
