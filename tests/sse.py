"""A small SSE client for tests: parses frames exactly as a browser would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Frame:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> dict:
        return json.loads(self.data)

    @property
    def kind(self) -> str | None:
        return self.json.get("kind") if self.event == "message" else None


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    frame, data_lines = Frame(), []
    async for line in response.aiter_lines():
        if line == "":
            if data_lines or frame.event != "message" or frame.id is not None:
                frame.data = "\n".join(data_lines)
                yield frame
            elif frame.comments:
                yield frame
            frame, data_lines = Frame(), []
            continue
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            frame.event = value
        elif name == "id":
            frame.id = value


async def collect(client: httpx.AsyncClient, url: str, *, until, headers=None, timeout: float = 15.0) -> list[Frame]:
    """Frames (comments excluded) until `until(frames)` is true."""
    import asyncio

    got: list[Frame] = []

    async def read() -> None:
        async with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout, read=timeout)) as response:
            assert response.status_code == 200, response.status_code
            async for frame in frames(response):
                if frame.data or frame.event != "message":
                    got.append(frame)
                    if until(got):
                        return

    await asyncio.wait_for(read(), timeout)
    return got
