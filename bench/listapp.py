"""The in-process list baseline of the attach figure: `python -m bench.listapp`.

A process with the gateway's HTTP stack (FastAPI, `gateway.eventstream`,
uvicorn on httptools)
that serves one session's events from a Python list, as the original
single-process console did: the same frames (`gateway.hub.record_frame`),
written in the same 256 KB chunks as the gateway's replay, then
`caught-up`. Reads a JSON job on stdin: {"nats_url", "session_id"}; loads
the session once, prints `READY <port>`, serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn
from fastapi import FastAPI

from breakglass import natsd
from eventbus.log import EventLog
from gateway.eventstream import EventStream, Streams
from gateway.hub import CAUGHT_UP_FRAME, REPLAY_HIGH_WATER, record_frame

from .rig import connect


async def load(url: str, session_id: str) -> list[bytes]:
    nc, js = await connect(url)
    try:
        return [record_frame(r.seq, r.data) for r in await EventLog(js).read(session_id)]
    finally:
        await nc.close()


def app(frames: list[bytes]) -> FastAPI:
    api = FastAPI()
    streams = Streams()

    async def chunks():  # type: ignore[no-untyped-def]
        out, size = [], 0
        for frame in frames:
            out.append(frame)
            size += len(frame)
            if size > REPLAY_HIGH_WATER:
                yield b"".join(out)
                out, size = [], 0
        out.append(CAUGHT_UP_FRAME)
        yield b"".join(out)
        await asyncio.Event().wait()  # stay open, like a live stream

    @api.get("/api/session/{session_id}/stream")
    async def stream(session_id: str) -> EventStream:
        return EventStream(chunks(), keepalive=15.0, streams=streams)

    return api


def main() -> None:
    job = json.loads(sys.stdin.readline())
    frames = asyncio.run(load(job["nats_url"], job["session_id"]))
    port = natsd.free_port()
    server = uvicorn.Server(uvicorn.Config(app(frames), host="127.0.0.1", port=port, log_level="warning",
                                            http="httptools"))
    print(f"READY {port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
