"""The attach stream (SPEC §4): replay, `caught-up`, then live, as SSE.

- Stored events come from the event log with `id: <stream sequence>`, so a
  browser's `Last-Event-ID` (or `?after=`) resumes strictly after it: no gap,
  no duplicate. Their bytes go out as stored, with `"id"` spliced in: no
  decode/encode on the hot path.
- Live-only frames (token deltas) come from the session's core NATS subject,
  only once caught up, and carry no `id:`, so they never move the resume point.
- When the client goes, the generator is closed: the ordered consumer and the
  live subscription are removed with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

from sse_starlette import ServerSentEvent

from events import subjects
from events.log import CaughtUp, Record

from .bus import Bus

CAUGHT_UP_FRAME = ServerSentEvent(data="{}", event="caught-up")


class _Live(bytes):
    """A live-only payload (not stored, no id)."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def with_id(seq: int, data: bytes) -> str:
    """`{"kind":...}` -> `{"id":seq,"kind":...}` without re-encoding."""
    return f'{{"id":{seq},{data[1:].decode()}' if len(data) > 2 else f'{{"id":{seq}}}'


async def frames(bus: Bus, session_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    queue: asyncio.Queue[Record | CaughtUp | _Live | _Failed] = asyncio.Queue()
    caught_up = False

    async def pump() -> None:
        nonlocal caught_up
        try:
            async with aclosing(bus.log.attach(session_id, after)) as items:
                async for item in items:
                    if isinstance(item, CaughtUp):
                        caught_up = True
                    queue.put_nowait(item)
        except Exception as exc:  # the bus went away: end the stream, the browser resumes
            queue.put_nowait(_Failed(exc))

    async def on_live(msg) -> None:  # type: ignore[no-untyped-def]
        if caught_up:
            queue.put_nowait(_Live(msg.data))

    live = await bus.nc.subscribe(subjects.live(session_id), cb=on_live)  # type: ignore[union-attr]
    task = asyncio.create_task(pump())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Record):
                yield ServerSentEvent(data=with_id(item.seq, item.data), id=str(item.seq))
            elif isinstance(item, CaughtUp):
                yield CAUGHT_UP_FRAME
            elif isinstance(item, _Live):
                yield ServerSentEvent(data=item.decode(errors="replace"))
            else:
                return
    finally:
        task.cancel()
        try:
            await live.unsubscribe()
        except Exception:
            pass
