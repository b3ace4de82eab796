"""A restarted agent-runner ends the turn its killed predecessor was
running at start-up (issue 17 item 4): the same runner id (its data
directory) proves the old owner dead, so the turn does not wait out its
lease. The lease here is 600 s, far past the hang guard: only the start-up
path can end the turn in time."""

from __future__ import annotations

import asyncio
import time

from tests.fakeapi import hang, text
from tests.processes import Service
from tests.sse import collect

from .test_chat_spine import ended, kinds, open_session, prompt, turn_ended

LONG_LEASE = {"BREAKGLASS_LEASE_SECONDS": "600", "BREAKGLASS_LEASE_RENEW_SECONDS": "5"}


async def test_a_restarted_runner_interrupts_its_predecessors_turn_at_start_up(stack, client):
    stack.restart_runner(**LONG_LEASE)
    stack.api.script(hang(interval=0.1, seconds=120))
    sid = await open_session(client)
    await prompt(client, sid, "this will be cut")
    await collect(client, f"/api/session/{sid}/stream", until=lambda f: any(x.kind == "delta" for x in f), timeout=30)
    stack.runner.kill()
    stack.restart_runner()
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    seen = kinds(frames)
    assert seen[-2:] == ["interrupted", "turn_end"]
    interrupted = next(f.json for f in frames if f.kind == "interrupted")
    assert "restarted" in interrupted["reason"], interrupted
    assert next(f.json for f in frames if f.kind == "turn_end")["outcome"] == "interrupted"
    deadline = time.monotonic() + 10  # the line is written right after the events it reports
    while "ended a turn this runner's previous process left running" not in stack.runner.log():
        assert time.monotonic() < deadline, stack.runner.log()
        await asyncio.sleep(0.1)
    # the lock is free and the session goes on, on the new runner
    stack.api.clear()
    stack.api.script(text("back"))
    await prompt(client, sid, "are you back?")
    frames = await collect(client, f"/api/session/{sid}/stream", until=ended(2), timeout=60)
    assert [f.json.get("outcome") for f in frames if f.kind == "turn_end"] == ["interrupted", "ok"], [
        f.json for f in frames if f.kind in ("error", "turn_end")]


async def test_a_second_runner_on_the_same_data_dir_never_ends_the_first_ones_turn(stack, client):
    """Two live runners sharing a data directory: the second cannot hold the
    id file, takes an id of its own, and leaves the first one's turn alone."""
    stack.restart_runner(**LONG_LEASE)
    stack.api.script(hang(interval=0.1, seconds=15))
    sid = await open_session(client)
    await prompt(client, sid, "long one")
    await collect(client, f"/api/session/{sid}/stream", until=lambda f: any(x.kind == "delta" for x in f), timeout=30)
    second = Service("agent_runner", dict(stack.runner_env), stack.runner.log_path.with_name("runner2.log")).start()
    stack.extras.append(second)
    deadline = time.monotonic() + 30
    while "consuming prompts" not in second.log() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert "another agent-runner uses" in second.log(), second.log()
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert "interrupted" not in kinds(frames)
    assert next(f.json for f in frames if f.kind == "turn_end")["outcome"] == "ok"
