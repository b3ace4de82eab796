"""A running turn is visibly alive: `status` heartbeats on the attach stream
while it runs, none after `turn_end`; a frozen runner goes silent, and its
turn is then ended with `interrupted`."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.fakeapi import hang, text
from tests.sse import frames


async def watch(client, sid, until, timeout=60.0, on_frame=None):
    """(frame, arrival time) pairs until `until(frames)`; `on_frame(got)` may
    act (and append markers) as each frame arrives."""
    got = []

    async def read():
        async with client.stream("GET", f"/api/session/{sid}/stream") as response:
            async for frame in frames(response):
                if frame.data or frame.event != "message":
                    got.append((frame, time.monotonic()))
                    if on_frame:
                        on_frame(got)
                    if until([f for f, _ in got if f != "frozen"]):
                        return

    await asyncio.wait_for(read(), timeout)
    return got


def ended(fs):
    return any(f.kind == "turn_end" for f in fs)


async def test_status_heartbeats_while_a_slow_turn_runs_and_stop_after_it_ends(stack, client):
    stack.api.script(text("slow", "ly", " then", " done", delay=0.8))
    sid = (await client.post("/api/session")).json()["session_id"]
    await client.post(f"/api/session/{sid}/prompt", json={"prompt": "take your time"})
    got = await watch(client, sid, ended)
    statuses = [f for f, _ in got if f.kind == "status"]
    assert len(statuses) >= 2
    first = statuses[0].json
    assert all(f.id is None for f in statuses)  # live-only: never moves the resume point
    assert {"elapsed_seconds", "since_output_seconds", "lease_seconds", "runner"} <= first.keys()
    assert statuses[-1].json["elapsed_seconds"] > statuses[0].json["elapsed_seconds"]
    # nothing stored: a replay after the turn has no status frames
    replay = await watch(client, sid, lambda fs: any(f.event == "caught-up" for f in fs))
    assert not [f for f, _ in replay if f.kind == "status"]


async def test_a_frozen_runner_goes_silent_then_its_turn_is_interrupted(stack, client):
    stack.api.script(hang(interval=0.1, seconds=120))
    sid = (await client.post("/api/session")).json()["session_id"]
    await client.post(f"/api/session/{sid}/prompt", json={"prompt": "hang"})

    def freeze_after_two_heartbeats(got) -> None:
        statuses = [f for f, _ in got if f != "frozen" and f.kind == "status"]
        if len(statuses) == 2 and got[-1][0] is statuses[-1]:
            stack.runner.signal(signal.SIGSTOP)
            got.append(("frozen", time.monotonic()))

    helper = asyncio.create_task(restart_reaper_after(stack, 6.0))
    try:
        got = await watch(client, sid, ended, timeout=90, on_frame=freeze_after_two_heartbeats)
    finally:
        helper.cancel()
        stack.runner.signal(signal.SIGCONT)
    frozen_at = next(t for f, t in got if f == "frozen")
    after = [f for f, t in got if f != "frozen" and t > frozen_at + 0.5]
    assert not [f for f in after if f.kind == "status"]  # silence: the client can say "runner lost"
    assert [f.kind for f in after if f.kind in ("interrupted", "turn_end")] == ["interrupted", "turn_end"]


async def restart_reaper_after(stack, seconds: float) -> None:
    """The frozen runner cannot reap its own turn: start a second runner (a
    replica) after a while; its reaper ends the lapsed turn."""
    await asyncio.sleep(seconds)
    from tests.processes import Service

    stack.extras.append(Service("agent_runner", stack.runner_env, stack.runner.log_path.with_name("runner2.log")).start())


async def test_stop_on_a_turn_whose_runner_is_lost_ends_it_at_once(stack, client):
    stack.api.script(hang(interval=0.1, seconds=120))
    sid = (await client.post("/api/session")).json()["session_id"]
    await client.post(f"/api/session/{sid}/prompt", json={"prompt": "hang"})
    await watch(client, sid, lambda fs: any(f.kind == "status" for f in fs))
    stack.runner.signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(5.0)  # the lease (4 s in this stack) lapses; no reaper runs
        assert (await client.post(f"/api/session/{sid}/cancel")).json() == {"cancelled": True}
        got = await watch(client, sid, ended, timeout=10)
    finally:
        stack.runner.signal(signal.SIGCONT)
    assert [f.kind for f, _ in got if f.kind in ("interrupted", "turn_end")] == ["interrupted", "turn_end"]
