"""Follow the event log without a consumer: replay, then live, exactly once.

How a read-only subscriber (the CLI, an integrator, an auditor) reads the
events stream. A JetStream consumer would be server state per reader, and
the read-only `reader` user may not create one (eventbus.access): a stream's
consumer room is shared with the gateway, and no permission can bound how
many consumers one user makes. Instead:

- the stored part is read by batched direct gets (eventbus.direct): one
  request per up to 1,000 events, nothing kept on the server;
- the live part comes from the stream's republish: once stored, every event
  of `breakglass.events.<rest>` is sent again on `breakglass.stored.<rest>`
  (core NATS, topology) with its `Nats-Sequence`. Only the server publishes
  there; a core subscription is the reader's connection's state and goes
  with it.

The hand-over is exact. The subscription is made (and confirmed by a flush)
before the replay starts, so nothing stored after the replay's end can be
missed; `position` is the last sequence delivered, and a live event is
delivered only when it is the next one: its sequence is `position + 1`
(nothing can lie between), or a direct get from `position + 1` shows the
gap it would leave, which is read and delivered first. Anything at or below
`position` is a duplicate and dropped. A live event that never arrives (a
slow reader whose client dropped it, a reconnect, a cluster whose interest
had not spread yet) is found by the same direct get on the next live event,
or by the check every `check_seconds` when the log goes quiet.

    following = await follow(nc, subjects.session_filters(sid), after, deliver)
    ...                      # deliver(got) has had every event up to now
    await following.stop()

Cost: one direct get per live event that is not the stream's next sequence
(a filtered follower on a busy stream), none for a follower of everything.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg

from . import direct
from events import subjects
from .topology import Topology

#: Called with each stored event (sequence, subject, bytes, headers), in
#: stream order, once; what it returns, if awaitable, is awaited first.
Deliver = Callable[[direct.Got], "Awaitable[None] | None"]

#: How often a quiet follower asks whether it missed anything.
CHECK_SECONDS = 5.0
#: Times a live event is looked for by direct get before the check takes
#: over (a cluster replica answering the get may not hold it yet).
LAGGING_TRIES = 20


class Following:
    """A running `follow`; `position` is the last sequence delivered."""

    def __init__(
        self, nc: Client, stream: str, filters: tuple[str, ...], after: int, deliver: Deliver, check_seconds: float,
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._filters = filters
        self.position = after
        self._deliver = deliver
        self._check_seconds = check_seconds
        self._lock = asyncio.Lock()
        self._subs: list = []  # type: ignore[type-arg]
        self._checker: asyncio.Task[None] | None = None
        #: The first error a delivery or a read raised, if any: following stops there.
        self.error: BaseException | None = None
        self._stopped = asyncio.Event()

    async def _start(self) -> None:
        for f in self._filters:
            self._subs.append(await self._nc.subscribe(subjects.stored(f), cb=self._on_live))
        await self._nc.flush()
        async with self._lock:
            await self._catch_up()
        self._checker = asyncio.create_task(self._check())

    async def _give(self, got: direct.Got) -> None:
        self.position = got.seq
        pending = self._deliver(got)
        if pending is not None and inspect.isawaitable(pending):
            await pending

    async def _catch_up(self, until: int = 0) -> None:
        """Deliver every stored event after `position` (at least up to
        `until`, waiting briefly for a replica that lags)."""
        tries = 0
        while True:
            got, more = await direct.get_batch_any(self._nc, self._stream, seq=self.position + 1, filters=self._filters)
            for g in got:
                if g.seq > self.position:
                    await self._give(g)
            if got and more:
                continue
            if self.position >= until or tries >= LAGGING_TRIES:
                return
            tries += 1
            await asyncio.sleep(0.05)

    async def _on_live(self, msg: Msg) -> None:
        if self._stopped.is_set():
            return
        headers = msg.headers or {}
        try:
            seq = int(headers["Nats-Sequence"])
        except (KeyError, ValueError):
            return  # not a republished event (nobody else may publish here)
        try:
            async with self._lock:
                if seq <= self.position:
                    return
                if seq == self.position + 1:
                    await self._give(direct.Got(seq, headers.get("Nats-Subject", subjects.unstored(msg.subject)),
                                                msg.data, headers, 0))
                    return
                await self._catch_up(until=seq)
        except Exception as exc:
            self._fail(exc)

    async def _check(self) -> None:
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), self._check_seconds)
                return
            except asyncio.TimeoutError:
                pass
            if self._nc.is_closed:
                self._fail(ConnectionError("the NATS connection is closed"))
                return
            if not self._nc.is_connected:
                continue  # reconnecting: the next check catches up
            try:
                async with self._lock:
                    await self._catch_up()
            except Exception as exc:
                if self._nc.is_connected:
                    self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._stopped.set()

    async def wait(self) -> None:
        """Until `stop()` or a failure (then raises it)."""
        await self._stopped.wait()
        if self.error is not None:
            raise self.error

    async def stop(self) -> None:
        self._stopped.set()
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may already be gone
                pass


async def follow(
    nc: Client, filters: Sequence[str], after: int, deliver: Deliver, *,
    stream: str = Topology().events_stream, check_seconds: float = CHECK_SECONDS,
) -> Following:
    """Deliver every stored event on `filters` (subjects under
    `breakglass.events.`, wildcards allowed) with a sequence > `after`, in
    stream order, exactly once: the stored ones before this returns, then
    each new one as it is stored, until `stop()`."""
    if not filters:
        raise ValueError("follow needs at least one subject filter")
    following = Following(nc, stream, tuple(filters), after, deliver, check_seconds)
    try:
        await following._start()
    except BaseException:
        await following.stop()
        raise
    return following
