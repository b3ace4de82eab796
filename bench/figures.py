"""The figures of the performance issue, each with its baseline measured
in the same run, back to back (these machines are noisy: only ratios taken
within one run are comparable).

Every gateway figure goes over real sockets to a gateway *process*
(`python -m gateway`); clients parse frames with `bench.sse` and decode each
event's JSON, as a browser would. Baselines use nats-py directly, in this
process, and decode each message's JSON too.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from breakglass import natsd
from events import chain, subjects
from events.kinds import TextSaid
from eventbus.log import EventLog, _stream_seq
from events.types import new_id

from .rig import AUTH, REPO, STREAM, TOKEN, Gateway, Rig, _http, cpu_seconds, event_bytes, open_session, rss_kib, wait_ready
from .sse import SSE

_decode = msgspec.json.Decoder(dict).decode
now_ns = time.monotonic_ns


def pct(values: list[int] | list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-int(p * 1000) * len(ordered) // 1000))  # ceil(p * n)
    return ordered[min(rank, len(ordered)) - 1]


def ms(ns: float) -> float:
    return ns / 1e6


@dataclass
class Ctx:
    """What the figures share within one bench invocation."""

    rig: Rig
    gw: Gateway
    nc: Client
    js: JetStreamContext
    quick: bool
    #: session id -> its seeded stream sequences (replay figures)
    seeded: dict[str, list[int]] = field(default_factory=dict)
    runner: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> EventLog:
        return EventLog(self.js)


# ---------------------------------------------------------------- live


class RawLive:
    """Baseline: JetStream publish (acked) → ordered push consumer callback."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.subject = subjects.session_events(new_id())
        self.data = event_bytes(new_id())
        self.arrivals: dict[int, int] = {}
        self.arrived = asyncio.Event()
        self.sub = None

    async def start(self) -> None:
        async def cb(msg) -> None:  # type: ignore[no-untyped-def]
            _decode(msg.data)
            self.arrivals[_stream_seq(msg)] = now_ns()
            self.arrived.set()

        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW, inactive_threshold=2.0)
        self.sub = await self.js.subscribe(self.subject, stream=STREAM, cb=cb, ordered_consumer=True, config=config)

    async def sample(self) -> int:
        t0 = now_ns()
        seq = (await self.js.publish(self.subject, self.data)).seq
        while seq not in self.arrivals:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return self.arrivals.pop(seq) - t0

    async def stop(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()


class GatewayLive:
    """EventLog.append (what a runner calls) → SSE frame parsed by a client."""

    def __init__(self, ctx: "Ctx") -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.arrivals: dict[int, int] = {}
        self.arrived = asyncio.Event()
        self.n = 0

    async def start(self) -> None:
        self.sid = sid = await asyncio.to_thread(open_session, self.ctx.gw.base)
        self.sse = sse = await SSE.open(self.ctx.gw.host, self.ctx.gw.port, f"/api/session/{sid}/stream", AUTH)
        caught_up = asyncio.get_running_loop().create_future()

        async def read() -> None:
            async for batch in sse.chunks():
                for frame in batch:
                    if frame.id is not None:
                        _decode(frame.data)
                        self.arrivals[int(frame.id)] = now_ns()
                        self.arrived.set()
                    elif frame.event == b"caught-up" and not caught_up.done():
                        caught_up.set_result(None)

        self.reader = asyncio.create_task(read())
        await asyncio.wait_for(caught_up, 10)

    async def sample(self) -> int:
        self.n += 1
        event = TextSaid(session_id=self.sid, by="agent", text=f"live {self.n} " + "x" * 100)
        t0 = now_ns()
        seq = await self.log.append(event)
        while seq not in self.arrivals:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return self.arrivals.pop(seq) - t0

    async def stop(self) -> None:
        self.reader.cancel()
        self.sse.close()


async def fig_live(ctx: Ctx) -> dict:
    """Samples alternate between the baseline and the gateway, so both see
    the same machine (noise from other processes hits both alike)."""
    samples = 300 if ctx.quick else 1000
    raw, gw = RawLive(ctx.js), GatewayLive(ctx)
    await raw.start()
    await gw.start()
    base: list[int] = []
    got: list[int] = []
    gc.collect()
    gc.disable()  # the harness's own collector pauses are not the gateway's latency
    try:
        for _ in range(samples):
            base.append(await raw.sample())
            await asyncio.sleep(0.0005)
            got.append(await gw.sample())
            await asyncio.sleep(0.0005)
    finally:
        gc.enable()
        await gw.stop()
        await raw.stop()
    return {
        "p50_ms": ms(pct(got, 0.5)), "p99_ms": ms(pct(got, 0.99)),
        "base_p50_ms": ms(pct(base, 0.5)), "base_p99_ms": ms(pct(base, 0.99)),
        "ratio_p50": pct(got, 0.5) / pct(base, 0.5), "ratio_p99": pct(got, 0.99) / pct(base, 0.99),
    }


# ---------------------------------------------------------------- replay


async def replay_raw(js: JetStreamContext, session_id: str, after: int, last: int) -> tuple[float, list[int]]:
    """Filtered ordered push consumer from `after + 1` until `last` arrived."""
    seqs: list[int] = []
    done = asyncio.get_running_loop().create_future()

    async def cb(msg) -> None:  # type: ignore[no-untyped-def]
        seq = _stream_seq(msg)
        _decode(msg.data)
        seqs.append(seq)
        if seq >= last and not done.done():
            done.set_result(None)

    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1, inactive_threshold=2.0)
    t0 = now_ns()
    # The session's writers' subjects (where its events are), one filter.
    sub = await js.subscribe(subjects.session_filters(session_id)[1], stream=STREAM, cb=cb, ordered_consumer=True, config=config)
    await asyncio.wait_for(done, 60)
    elapsed = now_ns() - t0
    await sub.unsubscribe()
    return elapsed, seqs


async def replay_gateway(gw: Gateway, session_id: str, after: int, *, header: bool = False) -> tuple[float, list[int]]:
    """GET the stream → `caught-up` parsed; the ids of the frames before it."""
    headers = dict(AUTH)
    path = f"/api/session/{session_id}/stream"
    if header:
        headers["Last-Event-ID"] = str(after)
    elif after:
        path += f"?after={after}"
    ids: list[int] = []
    t0 = now_ns()
    sse = await SSE.open(gw.host, gw.port, path, headers)
    try:
        async for batch in sse.chunks():
            for frame in batch:
                if frame.event == b"caught-up":
                    return now_ns() - t0, ids
                if frame.id is not None:
                    _decode(frame.data)
                    ids.append(int(frame.id))
    finally:
        sse.close()
    raise RuntimeError("the stream ended before caught-up")


def _exact(got: list[int], want: list[int], what: str) -> None:
    if got != want:
        dup = len(got) - len(set(got))
        missing = len(set(want) - set(got))
        raise AssertionError(f"{what}: not exact ({len(got)} ids, want {len(want)}; {dup} duplicates, {missing} missing)")


async def replay_pair(ctx: Ctx, session_id: str, after_index: int, *, header: bool = False) -> dict:
    seqs = ctx.seeded[session_id]
    after = seqs[after_index - 1] if after_index else 0
    want = seqs[after_index:]
    base_ns, base_ids = await replay_raw(ctx.js, session_id, after, seqs[-1])
    _exact(base_ids, want, "raw replay")
    gw_ns, gw_ids = await replay_gateway(ctx.gw, session_id, after, header=header)
    _exact(gw_ids, want, "gateway replay")
    return {"ms": ms(gw_ns), "base_ms": ms(base_ns), "ratio": gw_ns / base_ns, "events": len(want), "exact": True}


async def fig_replay(ctx: Ctx) -> dict:
    """The gateway's attach, the raw replay, and the in-process list baseline
    (bench.listapp: the same frames from a Python list, same HTTP stack)."""
    sid = ctx.seeded_10k  # type: ignore[attr-defined]
    result = await replay_pair(ctx, sid, 0)
    listapp = await _listapp(ctx, sid)
    list_ns, list_ids = await replay_gateway(listapp, sid, 0)
    _exact(list_ids, ctx.seeded[sid], "list replay")
    result["list_ms"] = ms(list_ns)
    result["ratio_list"] = result["ms"] / result["list_ms"]
    return result


async def fig_replay_cold(ctx: Ctx, session_id: str | None = None, *, with_list: bool = True) -> dict:
    """The same as `fig_replay`, cold: a fresh gateway process with nothing
    of the session in memory (warmed up by attaching to another, empty,
    session: its firehose runs and its code is loaded), so the replay reads
    the store. Then the same attach again, hot (the session's hub now in
    memory), the gateway's RSS and the stream's consumers. The replays
    alternate within the run."""
    sid = session_id or ctx.seeded_10k  # type: ignore[attr-defined]
    gw = await asyncio.to_thread(ctx.rig.start_gateway)
    try:
        empty = await asyncio.to_thread(open_session, gw.base)
        await replay_gateway(gw, empty, 0)
        rss_idle = rss_kib(gw.pid)[0]
        seqs = ctx.seeded[sid]
        server = ctx.rig.server.process.pid  # type: ignore[union-attr]
        bench0, server0 = time.process_time(), cpu_seconds(server)
        base_ns, base_ids = await replay_raw(ctx.js, sid, 0, seqs[-1])
        base_cpu, base_server_cpu = time.process_time() - bench0, cpu_seconds(server) - server0
        _exact(base_ids, seqs, "raw replay")
        gw0, server0 = cpu_seconds(gw.pid), cpu_seconds(server)
        gw_ns, gw_ids = await replay_gateway(gw, sid, 0)
        gw_cpu, gw_server_cpu = cpu_seconds(gw.pid) - gw0, cpu_seconds(server) - server0
        _exact(gw_ids, seqs, "cold gateway replay")
        consumers = (await ctx.js.stream_info(STREAM)).state.consumer_count
        hot_ns, hot_ids = await replay_gateway(gw, sid, 0)
        _exact(hot_ids, seqs, "hot gateway replay")
        rss = rss_kib(gw.pid)[0]
        list_ns = 0
        if with_list:
            listapp = await _listapp(ctx, sid)
            list_ns, list_ids = await replay_gateway(listapp, sid, 0)
            _exact(list_ids, seqs, "list replay")
    finally:
        gw.stop()
        ctx.rig.gateways.remove(gw)
    out = {"ms": ms(gw_ns), "base_ms": ms(base_ns), "ratio": gw_ns / base_ns, "hot_ms": ms(hot_ns),
           "hot_ratio": hot_ns / base_ns, "events": len(seqs), "exact": True, "rss_mb": rss / 1024,
           "rss_idle_mb": rss_idle / 1024, "consumers": consumers,
           # CPU (ms; load-independent): the raw reader's (bench process, incl. its JSON decode)
           # against the cold gateway's, and nats-server's for each.
           "base_cpu_ms": base_cpu * 1e3, "gw_cpu_ms": gw_cpu * 1e3,
           "base_server_cpu_ms": base_server_cpu * 1e3, "gw_server_cpu_ms": gw_server_cpu * 1e3,
           "load": os.getloadavg()[0]}
    if with_list:
        out.update(list_ms=ms(list_ns), ratio_list=gw_ns / list_ns, hot_ratio_list=hot_ns / list_ns)
    return out


async def _listapp(ctx: Ctx, session_id: str):  # type: ignore[no-untyped-def]
    """The list baseline's process, started once per bench run."""
    from types import SimpleNamespace

    running = getattr(ctx, "listapp", None)
    if running is not None:
        return running
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.listapp", cwd=str(REPO), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, start_new_session=True,
    )
    assert process.stdin and process.stdout
    process.stdin.write((json.dumps({"nats_url": ctx.rig.url, "session_id": session_id}) + "\n").encode())
    await process.stdin.drain()
    ready = await asyncio.wait_for(process.stdout.readline(), 60)
    if not ready.startswith(b"READY"):
        process.kill()
        raise RuntimeError(f"list baseline did not start: {ready!r}")
    port = int(ready.split()[1])
    for _ in range(100):  # READY comes just before uvicorn listens
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    ctx.listapp = SimpleNamespace(host="127.0.0.1", port=port, process=process)  # type: ignore[attr-defined]
    return ctx.listapp  # type: ignore[attr-defined]


async def fig_resume(ctx: Ctx) -> dict:
    sid = ctx.seeded_10k  # type: ignore[attr-defined]
    return await replay_pair(ctx, sid, len(ctx.seeded[sid]) // 2, header=True)


# ---------------------------------------------------------------- throughput


async def pipelined_rate(js: JetStreamContext, count: int, in_flight: int = 500) -> float:
    subject = subjects.session_events(new_id())
    data = event_bytes(new_id())
    pending = []
    t0 = now_ns()
    for _ in range(count):
        pending.append(await js.publish_async(subject, data))
        if len(pending) >= in_flight:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count / ((now_ns() - t0) / 1e9)


async def through_gateway(ctx: Ctx, count: int, *, pipelined: bool) -> tuple[float, float]:
    """`count` events into one fresh session while a client follows it
    through the gateway: (events/s stored, events/s parsed by the client,
    first append → last frame). Sequential = `EventLog.append` awaiting each
    ack (what the agent-runner does today); pipelined = `EventLog.appender`
    (atomic batches, group commit)."""
    sid = await asyncio.to_thread(open_session, ctx.gw.base)
    log = ctx.log
    sse = await SSE.open(ctx.gw.host, ctx.gw.port, f"/api/session/{sid}/stream", AUTH)
    caught_up = asyncio.get_running_loop().create_future()
    done = asyncio.get_running_loop().create_future()
    seen: list[int] = []

    async def read() -> None:
        async for batch in sse.chunks():
            for frame in batch:
                if frame.id is not None:
                    _decode(frame.data)
                    seen.append(int(frame.id))
                    if len(seen) == count:
                        done.set_result(now_ns())
                elif frame.event == b"caught-up" and not caught_up.done():
                    caught_up.set_result(None)

    reader = asyncio.create_task(read())
    text = "x" * 100
    try:
        await asyncio.wait_for(caught_up, 10)
        t0 = now_ns()
        if pipelined:
            writer = log.appender(sid)
            futures = [writer.append(TextSaid(session_id=sid, by="agent", text=f"flood {i} {text}")) for i in range(count)]
            await writer.flush()
            appended = [future.result() for future in futures]
        else:
            appended = [await log.append(TextSaid(session_id=sid, by="agent", text=f"flood {i} {text}")) for i in range(count)]
        t_appended = now_ns()
        t_last = await asyncio.wait_for(done, 60)
        _exact(seen, appended, "throughput stream")
        records = await log.read(sid)
        broken = chain.verify((r.seq, r.link, r.data, r.writer) for r in records)
        if broken is not None or [r.seq for r in records] != appended:
            raise AssertionError(f"throughput: the stored chain does not hold: {broken}")
    finally:
        reader.cancel()
        sse.close()
    return count / ((t_appended - t0) / 1e9), count / ((t_last - t0) / 1e9)


async def allow_atomic(js: JetStreamContext) -> None:
    """Let the (bench's own) events stream take atomic batches, which
    `EventLog.appender` needs for batches of more than one event."""
    config = (await js.stream_info(STREAM)).config
    if not config.allow_atomic:
        config.allow_atomic = True
        await js.update_stream(config)


async def fig_throughput(ctx: Ctx) -> dict:
    count = 2000 if ctx.quick else 5000
    await allow_atomic(ctx.js)
    base = await pipelined_rate(ctx.js, count)
    stored, end_to_end = await through_gateway(ctx, count, pipelined=True)
    seq_stored, seq_end_to_end = await through_gateway(ctx, count, pipelined=False)
    return {"per_s": end_to_end, "append_per_s": stored, "seq_per_s": seq_end_to_end, "seq_append_per_s": seq_stored,
            "base_per_s": base, "ratio": end_to_end / base}


# ---------------------------------------------------------------- CLI line → frame


def start_runner(rig: Rig) -> subprocess.Popen[bytes]:
    # Beside its script: the agent's sandbox shows the CLI's own directory, not the checkout.
    (rig.tmp / "fake-cli").mkdir(exist_ok=True)
    script = shutil.copy(REPO / "bench" / "fake_cli.py", rig.tmp / "fake-cli" / "fake_cli.py")
    wrapper = rig.tmp / "fake-cli" / "fake-claude"
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{script}' \"$@\"\n")
    wrapper.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BREAKGLASS_NATS_URL": rig.url,
        "BREAKGLASS_DATA_DIR": str(rig.tmp / "runner"),
        "BREAKGLASS_CLAUDE_BIN": str(wrapper),
        "BREAKGLASS_AGENT_FILE": str(REPO / "agents" / "breakglass.md"),
        "PYTHONUNBUFFERED": "1",
    }
    log = open(rig.tmp / "runner.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "agent_runner"], env=env, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    finally:
        log.close()


async def cli_turn(ctx: Ctx, prompt: str) -> tuple[list[int], list[int], list[int], float]:
    """One turn of the fake CLI, followed by a client: (stored `text` latencies,
    live-only `delta` latencies, stored ids, first line → turn_end seconds)."""
    sid = await asyncio.to_thread(open_session, ctx.gw.base)
    sse = await SSE.open(ctx.gw.host, ctx.gw.port, f"/api/session/{sid}/stream", AUTH)
    caught_up = asyncio.get_running_loop().create_future()
    texts: list[int] = []
    deltas: list[int] = []
    ids: list[int] = []
    first: list[int] = []
    ended = asyncio.get_running_loop().create_future()

    async def read() -> None:
        async for batch in sse.chunks():
            for frame in batch:
                if frame.event == b"caught-up":
                    caught_up.set_result(None)
                    continue
                event = _decode(frame.data)
                at = now_ns()
                kind = event.get("kind")
                if kind in ("text", "delta") and event["text"].startswith("t="):
                    stamp = int(event["text"][2:])
                    if not first:
                        first.append(stamp)
                    (texts if kind == "text" else deltas).append(at - stamp)
                if frame.id is not None:
                    ids.append(int(frame.id))
                if kind == "turn_end" and not ended.done():
                    ended.set_result(at)

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(caught_up, 10)
        body = json.dumps({"prompt": prompt}).encode()
        status, answer = await asyncio.to_thread(_http, "POST", f"{ctx.gw.base}/api/session/{sid}/prompt", 10.0, body)
        if status != 202:
            raise RuntimeError(f"prompt: HTTP {status} {answer[:200]!r}")
        t_end = await asyncio.wait_for(ended, 120)
    finally:
        reader.cancel()
        sse.close()
    if len(ids) != len(set(ids)) or ids != sorted(ids):
        raise AssertionError("CLI turn stream: ids out of order or duplicated")
    return texts, deltas, ids, (t_end - first[0]) / 1e9 if first else float("nan")


async def fig_cli(ctx: Ctx) -> dict:
    lines = 200 if ctx.quick else 500
    texts, deltas, _, _ = await cli_turn(ctx, f"lines={lines} gap_ms=2")
    if len(texts) != lines:
        raise AssertionError(f"CLI turn: {len(texts)} text frames, want {lines}")
    return {
        "p50_ms": ms(pct(texts, 0.5)), "p99_ms": ms(pct(texts, 0.99)),
        "delta_p50_ms": ms(pct(deltas, 0.5)), "delta_p99_ms": ms(pct(deltas, 0.99)),
    }


async def fig_cli_flood(ctx: Ctx) -> dict:
    """The fake CLI prints as fast as it can; events/s from its first line
    to the client's `turn_end`."""
    lines = 2000 if ctx.quick else 5000
    texts, _, _, seconds = await cli_turn(ctx, f"lines={lines} gap_ms=0 deltas=0")
    if len(texts) != lines:
        raise AssertionError(f"CLI flood: {len(texts)} text frames, want {lines}")
    return {"per_s": lines / seconds}


# ---------------------------------------------------------------- fan-out


async def fig_fanout(ctx: Ctx, *, sessions: int = 100, per_session: int = 10, rate: float = 200.0,
                     expect: int | None = None, fresh_gateway: bool = True, trace: str = "", gateways: int = 1,
                     procs: int = 0) -> dict:
    """`sessions` × `per_session` SSE clients in another process, on a fresh
    gateway process (or `gateways` of them, each session's clients spread
    over all); `rate` appends/s spread round-robin over the sessions."""
    expect = expect or (5 if ctx.quick else 10)
    gw = await asyncio.to_thread(ctx.rig.start_gateway) if fresh_gateway else ctx.gw
    more = [await asyncio.to_thread(ctx.rig.start_gateway) for _ in range(gateways - 1)]
    consumers_before = (await ctx.js.stream_info(STREAM)).state.consumer_count
    consumers_max = consumers_before
    try:
        ids = [await asyncio.to_thread(open_session, gw.base) for _ in range(sessions)]
        log = ctx.log
        for sid in ids:  # a little history each, so every attach replays something
            for i in range(3):
                await log.append(TextSaid(session_id=sid, by="agent", text=f"history {i}"))
        rss_idle = rss_kib(gw.pid)[0]
        # Client processes: one per 1,000 streams (at most 4), each with whole
        # sessions, so one process's parsing is not what is measured.
        procs = procs or max(1, min(4, sessions * per_session // 1000))
        clients = []
        for part in range(procs):
            job = {"host": gw.host, "port": gw.port, "ports": [gw.port] + [g.port for g in more], "token": TOKEN,
                   "sessions": ids[part::procs], "per_session": per_session, "expect": expect, "timeout": 120,
                   "trace": trace, "raw": True}
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.fanout", cwd=str(REPO),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
            )
            assert client.stdin and client.stdout
            client.stdin.write((json.dumps(job) + "\n").encode())
            await client.stdin.drain()
            clients.append(client)
        readies = [await asyncio.wait_for(c.stdout.readline(), 150) for c in clients]  # type: ignore[union-attr]
        for ready in readies:
            if not ready.startswith(b"READY"):
                for c in clients:
                    c.kill()
                raise RuntimeError(f"fan-out clients did not get ready: {ready.decode().strip()!r}")
        ready = max(readies, key=lambda r: float(r.split()[1]))
        attach_s, open_s = (float(x) for x in ready.split()[1:3])
        consumers_max = max(consumers_max, (await ctx.js.stream_info(STREAM)).state.consumer_count)
        rss_attached = rss_kib(gw.pid)[0]
        # CPU of every process of the run over the live phase: which one is the bottleneck.
        pids = {"gateway": gw.pid, **{f"gateway{n + 2}": g.pid for n, g in enumerate(more)},
                **{f"clients{n + 1}": c.pid for n, c in enumerate(clients)},
                "nats-server": ctx.rig.server.process.pid}  # type: ignore[union-attr]
        cpu_at = {name: cpu_seconds(pid) for name, pid in pids.items()}
        bench_cpu0 = time.process_time()
        cpu0, t_live = cpu_seconds(gw.pid), time.monotonic()
        appended: dict[str, list[int]] = {sid: [] for sid in ids}
        interval = 1.0 / rate
        next_at = time.monotonic()
        for _ in range(expect):
            for sid in ids:
                stamp = now_ns()
                appended[sid].append(await log.append(TextSaid(session_id=sid, by="agent", text=f"t={stamp}")))
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        rss_live = rss_kib(gw.pid)[0]
        live_s = time.monotonic() - t_live
        cpu_live = (cpu_seconds(gw.pid) - cpu0) / live_s
        cpu_all = {name: (cpu_seconds(pid) - cpu_at[name]) / live_s for name, pid in pids.items()}
        cpu_all["appender (this process)"] = (time.process_time() - bench_cpu0) / live_s
        load_live = os.getloadavg()[0]
        consumers_max = max(consumers_max, (await ctx.js.stream_info(STREAM)).state.consumer_count)
        parts = []
        for c in clients:
            parts.append(json.loads(await asyncio.wait_for(c.stdout.readline(), 120)))  # type: ignore[union-attr]
            await c.wait()
        result = _merge(parts)
        for sid, seen in result.pop("seen"):
            _exact(seen, appended[sid], "fan-out stream")
        if result["dups"]:
            raise AssertionError(f"fan-out: {result['dups']} duplicate frames")
        rss_after, hwm = rss_kib(gw.pid)
    finally:
        for other in more:
            other.stop()
            ctx.rig.gateways.remove(other)
        if fresh_gateway:
            gw.stop()
            ctx.rig.gateways.remove(gw)
    return {
        "gateways": gateways, "sessions": sessions,
        "consumers": consumers_max, "consumers_before": consumers_before,
        "clients": result["clients"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "max_ms": result["max_ms"],
        "rss_mb": max(rss_attached, rss_live, rss_after) / 1024, "rss_idle_mb": rss_idle / 1024, "hwm_mb": hwm / 1024,
        "attach_s": attach_s, "frames": result["frames"], "gateway_cpu": cpu_live, "open_s": open_s,
        "reconnects_attaching": result["reconnects_attaching"], "reconnects_live": result["reconnects_live"],
        "client_procs": procs, "cpu_live": cpu_all, "live_s": live_s, "load_live": load_live,
    }


def _merge(parts: list[dict]) -> dict:
    """The client processes' results as one."""
    latencies = sorted(x for p in parts for x in p["latencies"])
    n = len(latencies)

    def at(p: float) -> float:
        return latencies[min(n - 1, max(0, -(-int(p * 1000) * n // 1000) - 1))] / 1e6 if n else float("nan")

    return {
        "clients": sum(p["clients"] for p in parts), "frames": n, "p50_ms": at(0.50), "p99_ms": at(0.99),
        "max_ms": at(1.0), "dups": sum(p["dups"] for p in parts),
        "reconnects_attaching": sum(p["reconnects_attaching"] for p in parts),
        "reconnects_live": sum(p["reconnects_live"] for p in parts),
        "seen": [s for p in parts for s in p["seen"]],
    }


# ---------------------------------------------------------------- breakglass up


def fig_up(tmp: Path) -> dict:
    """`breakglass up` in a fresh data dir → GET /ready answers 200."""
    http, nats_port = natsd.free_port(), natsd.free_port()
    while nats_port == http:
        nats_port = natsd.free_port()
    script = Path(sys.executable).parent / "breakglass"
    argv = [str(script), "up"] if script.is_file() else [sys.executable, "-m", "breakglass", "up"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    data = tmp / f"up-{http}"
    env.update(BREAKGLASS_DATA_DIR=str(data), BREAKGLASS_PORT=str(http), BREAKGLASS_NATS_PORT=str(nats_port),
               BREAKGLASS_API_TOKEN=TOKEN)
    t0 = time.monotonic()
    up = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{http}", timeout=30)
        seconds = time.monotonic() - t0
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(5)
    return {"s": seconds}


__all__ = ["Ctx", "fig_cli", "fig_cli_flood", "fig_fanout", "fig_live", "fig_replay", "fig_replay_cold", "fig_resume",
           "fig_throughput", "fig_up", "replay_pair", "start_runner"]


# ---------------------------------------------------------------- the sessions listing


async def store_sessions(ctx: Ctx, count: int) -> None:
    """`count` more sessions, each a record, a prompt and an ended turn."""
    from events.codec import encode
    from events.commands import SessionRecord
    from events.kinds import Outcome, TurnEnded, UserPrompted
    from eventbus.topology import session_key
    from events.types import utcnow

    kv = await ctx.js.key_value("breakglass")
    log = ctx.log

    async def one(n: int) -> None:
        sid, turn = new_id(), new_id()
        await kv.create(session_key(sid), encode(SessionRecord(session_id=sid, created_by="bench", created_at=utcnow())))
        await log.append(UserPrompted(session_id=sid, turn_id=turn, by="bench", text=f"disk full {n}", model="sonnet"))
        await log.append(TurnEnded(session_id=sid, turn_id=turn, by="agent-runner", outcome=Outcome.OK))

    for start in range(0, count, 200):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + 200))))


async def listing_latency(ctx: Ctx, requests: int, path: str = "/api/sessions?limit=50") -> dict:
    """GET `path` `requests` times, one at a time (a keep-alive client, as a browser)."""
    out = []
    async with httpx.AsyncClient(base_url=ctx.gw.base, headers=AUTH, timeout=30) as client:
        for _ in range(3):  # warm up
            (await client.get(path)).raise_for_status()
        gw_cpu0, server_cpu0 = cpu_seconds(ctx.gw.pid), cpu_seconds(ctx.rig.server.process.pid)  # type: ignore[union-attr]
        for _ in range(requests):
            t0 = time.perf_counter_ns()
            answer = await client.get(path)
            out.append(time.perf_counter_ns() - t0)
            answer.raise_for_status()
    # CPU per request (load-independent): the gateway's and nats-server's.
    gw_cpu = (cpu_seconds(ctx.gw.pid) - gw_cpu0) / requests * 1e3
    server_cpu = (cpu_seconds(ctx.rig.server.process.pid) - server_cpu0) / requests * 1e3  # type: ignore[union-attr]
    consumers = (await ctx.js.stream_info(STREAM)).state.consumer_count
    return {"p50_ms": ms(pct(out, 0.50)), "p99_ms": ms(pct(out, 0.99)), "consumers": consumers,
            "gateway_cpu_ms": gw_cpu, "server_cpu_ms": server_cpu}


async def fig_listing(ctx: Ctx, sizes: tuple[int, ...] = (1_000, 10_000), requests: int = 200) -> dict:
    """GET /api/sessions (first page of 50) p50/p99 with each number of
    sessions stored, and a text search that matches nothing (the worst case:
    every session looked at)."""
    stored = 0
    out: dict = {}
    for size in sizes:
        t0 = time.monotonic()
        await store_sessions(ctx, size - stored)
        stored = size
        out[size] = await listing_latency(ctx, requests)
        # Baseline, same moment, same client and HTTP stack: a request that does nothing.
        noop = await listing_latency(ctx, requests, "/health")
        out[size]["noop_p50_ms"], out[size]["noop_p99_ms"] = noop["p50_ms"], noop["p99_ms"]
        out[size]["noop_gateway_cpu_ms"] = noop["gateway_cpu_ms"]
        out[size]["load"] = os.getloadavg()[0]
        out[size]["seeded_s"] = time.monotonic() - t0
        async with httpx.AsyncClient(base_url=ctx.gw.base, headers=AUTH, timeout=60) as client:
            t1 = time.perf_counter_ns()  # the first search: no title of the older sessions read yet in this process
            first = await client.get(f"/api/sessions?limit=50&q=no-such-title-{size}")
            first_ms = ms(time.perf_counter_ns() - t1)
            first.raise_for_status()
        out[size]["search"] = await listing_latency(ctx, 3, "/api/sessions?limit=50&q=no-such-title")
        out[size]["search"].update(first_ms=first_ms, searched=first.json()["searched"], stored=first.json()["stored"])
    return out
