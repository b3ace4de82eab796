"""The soak's SSE client fleet, in its own process: `python -m tests.soak.clients`.

Reads one JSON job line on stdin: {"host", "port", "token", "sessions":
[...], "clients": n}. Opens n streams spread round-robin over the sessions
(raw asyncio sockets, bench/sse.py: HTTP/1.1, chunked, SSE parsed as a
browser does) and keeps them open. Prints, one JSON line each:

- `{"ready": seconds}` once every stream has said `caught-up`;
- `{"t": ..., "frames": ..., "errors": ..., "open": ...}` every few seconds;
- on a `{"finish": {session: last_seq}}` line on stdin: waits until every
  stream has seen its session's last sequence, then the summary
  `{"summary": [[session, count, last, digest, errors], ...], "errors": [...]}`.

An error is anything a browser would notice: a stream that could not be
opened (refused, not 200), that ended or broke while open, an id not greater
than the one before (a duplicate or out of order). A stream that ends is
opened again with `Last-Event-ID`, as EventSource does (and counted). The
digest (blake2b of the ids in order) lets the caller check each stream saw
exactly the stored events of its session: nothing missing, nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time

from bench.sse import SSE, HttpError

REPORT_EVERY = 5.0
RECONNECT_DELAY = 0.5
#: Streams opened at once (a burst, as a fleet of phones coming back).
WAVE = 100


class Stream:
    __slots__ = ("session", "last", "count", "digest", "errors", "caught_up", "open")

    def __init__(self, session: str) -> None:
        self.session = session
        self.last = 0
        self.count = 0
        self.digest = hashlib.blake2b(digest_size=16)
        self.errors: list[str] = []
        self.caught_up = asyncio.get_running_loop().create_future()
        self.open = False


async def follow(job: dict, stream: Stream, stopping: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {job['token']}"}
    path = f"/api/session/{stream.session}/stream"
    while not stopping.is_set():
        sse = None
        try:
            if stream.last:
                headers["Last-Event-ID"] = str(stream.last)
            sse = await SSE.open(job["host"], job["port"], path, headers)
            stream.open = True
            async for batch in sse.chunks():
                for frame in batch:
                    if frame.event == b"caught-up":
                        if not stream.caught_up.done():
                            stream.caught_up.set_result(None)
                        continue
                    if frame.id is None:
                        continue  # live-only frames (deltas, heartbeats) carry no id
                    seq = int(frame.id)
                    if seq <= stream.last:
                        stream.errors.append(f"id {seq} after {stream.last}")
                        continue
                    json.loads(frame.data)  # every event must be whole JSON
                    stream.last = seq
                    stream.count += 1
                    stream.digest.update(seq.to_bytes(8, "big"))
            if not stopping.is_set():
                stream.errors.append("the stream ended")
        except (OSError, asyncio.IncompleteReadError, ValueError, HttpError) as exc:
            if not stopping.is_set():
                stream.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            stream.open = False
            if sse is not None:
                sse.close()
        if not stopping.is_set():
            await asyncio.sleep(RECONNECT_DELAY)


async def read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


async def run(job: dict) -> None:
    sessions = job["sessions"]
    streams = [Stream(sessions[i % len(sessions)]) for i in range(job["clients"])]
    stopping = asyncio.Event()
    started = time.monotonic()
    tasks = []
    for i in range(0, len(streams), WAVE):
        tasks += [asyncio.create_task(follow(job, s, stopping)) for s in streams[i:i + WAVE]]
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*(s.caught_up for s in streams)), job.get("ready_timeout", 120))
    say({"ready": round(time.monotonic() - started, 3)})

    async def report() -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            say({"t": round(time.monotonic() - started, 1), "frames": sum(s.count for s in streams),
                 "errors": sum(len(s.errors) for s in streams), "open": sum(s.open for s in streams)})

    reporter = asyncio.create_task(report())
    line = await read_line()
    finish = json.loads(line)["finish"] if line.strip() else {}
    deadline = time.monotonic() + job.get("finish_timeout", 60)
    while time.monotonic() < deadline and any(s.last < finish.get(s.session, 0) for s in streams):
        await asyncio.sleep(0.2)
    stopping.set()
    reporter.cancel()
    for task in tasks:
        task.cancel()
    behind = [f"{s.session[:8]} at {s.last} < {finish[s.session]}" for s in streams if s.last < finish.get(s.session, 0)]
    say({
        "summary": [[s.session, s.count, s.last, s.digest.hexdigest(), len(s.errors)] for s in streams],
        "errors": [f"{s.session[:8]}: {e}" for s in streams for e in s.errors][:50] + [f"behind: {b}" for b in behind[:50]],
        "error_count": sum(len(s.errors) for s in streams) + len(behind),
    })


def main() -> None:
    asyncio.run(run(json.loads(sys.stdin.readline())))


if __name__ == "__main__":
    main()
