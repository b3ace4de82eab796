"""A low-overhead SSE client on a raw asyncio socket.

HTTP/1.1 with chunked transfer decoding, then SSE frames parsed as a browser
does (fields `id`, `event`, `data`; a blank line ends a frame; comment lines
are skipped). Used by every figure, so the client's own cost is the same for
the gateway and for nothing else: the baselines do not use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class Frame:
    event: bytes
    data: bytes
    id: bytes | None


class HttpError(RuntimeError):
    pass


class SSE:
    """One open event stream. `async for frame in sse.frames()`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._raw = bytearray()  # bytes read, not yet de-chunked
        self._body = bytearray()  # de-chunked body, not yet split into frames
        self._need = -1  # data bytes left in the current chunk; -1 = at a size line
        self._crlf = 0
        self.closed = False
        #: CLOCK_MONOTONIC (ns) of the socket read the latest frames came
        #: from: a frame's time of arrival, before this client parsed anything.
        self.read_at = 0

    @classmethod
    async def open(cls, host: str, port: int, path: str, headers: dict[str, str] | None = None) -> "SSE":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            writer.close()
            raise HttpError(f"GET {path}: HTTP {status}")
        if b"chunked" not in head.lower():
            raise HttpError("expected a chunked response")
        return cls(reader, writer)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._writer.close()

    def _dechunk(self) -> None:
        raw = self._raw
        pos, n = 0, len(raw)
        while pos < n:
            if self._need < 0:  # at a chunk-size line
                end = raw.find(b"\r\n", pos)
                if end < 0:
                    break
                size = int(raw[pos:end].split(b";", 1)[0], 16)
                pos = end + 2
                if size == 0:
                    self.closed = True
                    break
                self._need, self._crlf = size, 2
            if self._need > 0:
                take = min(self._need, n - pos)
                self._body += raw[pos:pos + take]
                pos += take
                self._need -= take
                continue
            take = min(self._crlf, n - pos)  # the chunk's trailing CRLF
            pos += take
            self._crlf -= take
            if self._crlf == 0:
                self._need = -1
        del raw[:pos]

    async def chunks(self) -> AsyncIterator[list[Frame]]:
        """Lists of whole frames, as they arrive (one socket read at a time)."""
        while True:
            data = await self._reader.read(1 << 18)
            self.read_at = time.monotonic_ns()
            if not data:
                return
            self._raw += data
            self._dechunk()
            frames = self._split()
            if frames:
                yield frames
            if self.closed:
                return

    async def frames(self) -> AsyncIterator[Frame]:
        async for batch in self.chunks():
            for frame in batch:
                yield frame

    def _split(self) -> list[Frame]:
        body = self._body
        end = body.rfind(b"\r\n\r\n")
        if end < 0:
            return []
        complete = bytes(body[:end])
        del body[:end + 4]
        out: list[Frame] = []
        for block in complete.split(b"\r\n\r\n"):
            event, id_ = b"message", None
            data: list[bytes] = []
            for line in block.split(b"\r\n"):
                if not line or line[0] == 58:  # ':' comment (keepalive)
                    continue
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name == b"id":
                    id_ = value
                elif name == b"event":
                    event = value
            if data or id_ is not None or event != b"message":
                out.append(Frame(event, b"\n".join(data), id_))
        return out
