"""A client attached to a session the way the PWA is: SSE, and on every drop
(the gateway killed, the stream ended, or a planned "phone went to sleep")
it reconnects with `Last-Event-ID` set to the last id it saw, like a
browser's EventSource. It records every frame with an id, exactly as
received, so the test can compare it with the stored stream."""

from __future__ import annotations

import asyncio

import httpx

from tests.sse import frames


class Observer:
    def __init__(self, base: str, headers: dict[str, str], session_id: str, drops: list[int]) -> None:
        self.base = base
        self.headers = headers
        self.session_id = session_id
        #: (id, data bytes) of every frame that carried an id, in arrival order.
        self.records: list[tuple[int, bytes]] = []
        #: Every frame with data (records, live deltas and heartbeats).
        self.frames = 0
        self.last_id = 0
        self.connects = 0
        #: Last-Event-ID values it resumed with.
        self.resumed_from: list[int] = []
        #: Frame counts at which it hangs up on purpose and resumes.
        self.drops = sorted(drops)
        self.kinds: list[str] = []
        self.caught_up = asyncio.Event()
        self._changed = asyncio.Event()

    async def run(self) -> None:
        url = f"/api/session/{self.session_id}/stream"
        timeout = httpx.Timeout(5.0, read=None)
        async with httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=timeout) as client:
            while True:
                headers = {"Last-Event-ID": str(self.last_id)} if self.last_id else {}
                try:
                    async with client.stream("GET", url, headers=headers) as response:
                        if response.status_code == 200:
                            self.connects += 1
                            if self.last_id:
                                self.resumed_from.append(self.last_id)
                            await self._read(response)
                except (httpx.HTTPError, OSError):
                    pass  # the gateway went away: resume once it is back
                await asyncio.sleep(0.1)

    async def _read(self, response: httpx.Response) -> None:
        async for frame in frames(response):
            if frame.event == "caught-up":
                self.caught_up.set()
                continue
            if not frame.data or frame.event != "message":
                continue  # a keepalive (a comment, or the gateway's `keepalive` event)
            self.frames += 1
            if frame.id is not None:
                seq = int(frame.id)
                self.records.append((seq, frame.data.encode()))
                self.last_id = max(self.last_id, seq)
                self.kinds.append(frame.kind or "")
            self._notify()
            if self.drops and self.frames >= self.drops[0]:
                self.drops.pop(0)
                return  # hang up; `run` resumes by Last-Event-ID

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        """Wait until `predicate(self)`; False after `timeout` (a hang guard)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass
        return True
