"""The attach stream's HTTP response: SSE bytes already framed go straight
to `send`, a keepalive event on a timer, the end on disconnect or shutdown.

Why not sse-starlette's EventSourceResponse: it runs every write under an
anyio cancel scope (a per-send timeout) and re-encodes each item; with
thousands of streams in one process that machinery was a large share of the
gateway's CPU per frame (BENCHMARKS.md). The frames here come from the hub
already encoded (`hub.record_frame`), so a write is one `send`.

What it keeps from the SSE contract (SPEC §4): `text/event-stream`, no
caching, no proxy buffering, and a named `keepalive` event carrying its
interval (a browser's EventSource never shows a comment to the page; the
PWA needs the keepalive to prove the stream live).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.responses import Response

Scope = Mapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

SEP = b"\r\n"


def keepalive_frame(interval: float) -> bytes:
    return b"event: keepalive" + SEP + b"data: " + f"{interval:g}".encode() + SEP + SEP


class Streams:
    """The app's open attach streams, so that a shutdown ends them at once:
    uvicorn waits for every open response before it stops, and an attach
    stream never ends by itself."""

    def __init__(self) -> None:
        self._open: set[Callable[[], None]] = set()
        self.closing = False

    def close(self) -> None:
        self.closing = True
        for stop in list(self._open):
            stop()


class EventStream(Response):
    """An ASGI response writing `chunks` (each one or more whole frames).
    A Starlette `Response` only so that FastAPI passes it through as is."""

    def __init__(self, chunks: AsyncIterator[bytes], *, keepalive: float, streams: Streams,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status_code = 200
        self.background = None
        self.chunks = chunks
        self.keepalive = keepalive
        self.streams = streams
        raw = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store",
               "x-accel-buffering": "no", "connection": "keep-alive"}
        raw.update({k.lower(): v for k, v in (headers or {}).items()})
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in raw.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        task = asyncio.current_task()
        assert task is not None
        stopped = False

        def stop() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                task.cancel()

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stop()

        async def keepalives() -> None:
            ping = {"type": "http.response.body", "body": keepalive_frame(self.keepalive), "more_body": True}
            while True:
                await asyncio.sleep(self.keepalive)
                await send(ping)  # whole frames: never splits a frame of the stream's own writes

        chunks = self.chunks
        if self.streams.closing:  # stopping: the browser retries, on another gateway or after the restart
            await getattr(chunks, "aclose")()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": b"the gateway is stopping; try again\n"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self.streams._open.add(stop)
        helpers = [asyncio.create_task(until_disconnect()), asyncio.create_task(keepalives())]
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except asyncio.CancelledError:
            if not stopped:
                raise
            task.uncancel()  # our own stop: the client went or the server stops
        finally:
            self.streams._open.discard(stop)
            for helper in helpers:
                helper.cancel()
            await getattr(chunks, "aclose")()
        if not stopped or self.streams.closing:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
