"""Many SSE clients in one process (not the gateway's): `python -m bench.fanout`.

Reads a JSON job on stdin: {"host", "port" (or "ports", streams spread over them), "token", "sessions": [...],
"per_session": n, "expect": k}. Opens n streams per session, waits until
every one has said `caught-up`, prints `READY <seconds>` and then counts `k`
live `text` frames per stream. Each frame's text is `t=<monotonic ns at
append>`; the latency is the time it was parsed here minus that.

Like a browser's EventSource, a stream the server ends is opened again with
`Last-Event-ID` (counted as a reconnect). A frame's arrival is the time
its bytes were read from the socket, and its stamp is found in the bytes
without a JSON decode, so the client's own parsing adds as little as it
can; several of these processes split a large run (`procs`). Prints one JSON line: latency
percentiles (ms), duplicates and reconnects, and the ids each stream saw
(the caller checks them against what it appended: no gap, no duplicate,
same order).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

from .sse import SSE, HttpError

_STAMP = b'"text":"t='


def _stamp(data: bytes) -> int | None:
    """The append time in a live frame's text (`t=<ns>`), found without
    decoding the JSON (this process parses thousands of streams)."""
    at = data.find(_STAMP)
    if at < 0:
        return None
    start = at + len(_STAMP)
    end = data.find(b'"', start)
    try:
        return int(data[start:end])
    except ValueError:
        return None
RECONNECT_DELAY = 0.2


class Stream:
    __slots__ = ("session", "sse", "last", "got", "seen", "dups", "reconnects", "caught_up", "opened_at", "port")

    def __init__(self, session: str, port: int) -> None:
        self.session = session
        #: The gateway this stream attaches to (job "ports": spread over several).
        self.port = port
        self.sse: SSE | None = None
        self.last = 0
        self.got = 0
        self.seen: list[int] = []  # live ids, to check against what was appended
        self.dups = 0
        self.reconnects = 0
        self.caught_up = asyncio.get_running_loop().create_future()
        self.opened_at = 0.0


async def follow(job: dict, stream: Stream, latencies: list[int], done: asyncio.Future,
                 trace: list[tuple[int, int]] | None) -> None:
    headers = {"Authorization": f"Bearer {job['token']}"}
    path = f"/api/session/{stream.session}/stream"
    expect = job["expect"]
    while True:
        try:
            if stream.last:
                headers["Last-Event-ID"] = str(stream.last)
            stream.sse = await SSE.open(job["host"], stream.port, path, headers)
            if not stream.opened_at:
                stream.opened_at = time.monotonic()
            async for batch in stream.sse.chunks():
                for frame in batch:
                    if frame.event == b"caught-up":
                        if not stream.caught_up.done():
                            stream.caught_up.set_result(None)
                        continue
                    if frame.id is None:
                        continue
                    seq = int(frame.id)
                    if seq <= stream.last:
                        stream.dups += 1
                        continue
                    stream.last = seq
                    if not stream.caught_up.done():
                        continue
                    stamp = _stamp(frame.data)
                    if stamp is None:
                        continue
                    arrived = stream.sse.read_at  # when its bytes were read, not when parsed
                    latencies.append(arrived - stamp)
                    if trace is not None:
                        trace.append((stamp, arrived))
                    stream.seen.append(seq)
                    stream.got += 1
                    if stream.got >= expect and not done.done():
                        done.set_result(None)  # keep reading (and the socket open) until all are done
        except (OSError, asyncio.IncompleteReadError, ValueError, HttpError):
            pass
        stream.sse = None
        stream.reconnects += 1
        await asyncio.sleep(RECONNECT_DELAY)


async def run(job: dict) -> dict:
    latencies: list[int] = []
    trace: list[tuple[int, int]] | None = [] if job.get("trace") else None
    ports = job.get("ports") or [job["port"]]
    streams = [Stream(sid, ports[n % len(ports)]) for sid in job["sessions"] for n in range(job["per_session"])]
    dones = [asyncio.get_running_loop().create_future() for _ in streams]
    started = time.monotonic()
    tasks = []
    wave = 100  # connections opened at once (a burst, not one by one)
    for i in range(0, len(streams), wave):
        for stream, done in zip(streams[i:i + wave], dones[i:i + wave]):
            tasks.append(asyncio.create_task(follow(job, stream, latencies, done, trace)))
        await asyncio.sleep(0)
    timeout = job.get("timeout", 120)
    _, waiting = await asyncio.wait([s.caught_up for s in streams], timeout=10)
    if waiting:  # slow: say which (to stderr), then give them the rest of the time
        slow = [s for s in streams if not s.caught_up.done()]
        print(f"slow attach: {len(slow)} streams not caught up after 10 s; e.g. "
              + ", ".join(f"{s.session[:8]} opened={bool(s.opened_at)} last={s.last}" for s in slow[:5]),
              file=sys.stderr, flush=True)
        _, waiting = await asyncio.wait(waiting, timeout=timeout)
    if waiting:
        print(f"NOT READY: {len(waiting)} of {len(streams)} streams not caught up", flush=True)
        return {}
    slowest_open = max(s.opened_at for s in streams) - started
    print(f"READY {time.monotonic() - started:.3f} {slowest_open:.3f}", flush=True)
    reconnects_at_ready = sum(s.reconnects for s in streams)
    gc.collect()
    gc.disable()  # this process's collector pauses are not the gateway's latency
    await asyncio.wait_for(asyncio.gather(*dones), timeout)
    for task in tasks:
        task.cancel()
    for stream in streams:
        if stream.sse is not None:
            stream.sse.close()
    if trace is not None:  # (appended at, parsed at) per frame, for looking at where a tail comes from
        with open(job["trace"], "w") as out:
            json.dump(trace, out)
    raw = latencies if job.get("raw") else None
    latencies = sorted(latencies)
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, max(0, -(-int(p * 1000) * n // 1000) - 1))] / 1e6 if n else float("nan")

    return {
        "clients": len(streams), "frames": n, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "dups": sum(s.dups for s in streams), "reconnects_attaching": reconnects_at_ready,
        "reconnects_live": sum(s.reconnects for s in streams) - reconnects_at_ready,
        "seen": [[s.session, s.seen] for s in streams],
        **({"latencies": raw} if raw is not None else {}),
    }


def main() -> None:
    job = json.loads(sys.stdin.readline())
    result = asyncio.run(run(job))
    if result:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
