"""Warm CLIs (agent_runner.warm) on the whole stack: the real CLI in its
sandbox, the real gateway's warm hint, killed between and in the middle of
turns, idle expiry, the cap, and a prompt that races the warm-up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

from tests.e2e.test_chat_spine import ended, kinds, open_session, prompt, turn_ended
from tests.fakeapi import hang, text
from tests.sse import collect


def _log(stack, **match: str) -> list[dict]:
    out = []
    for line in stack.runner.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if all(record.get(k) == v for k, v in match.items()):
            out.append(record)
    return out


def _said(stack, start: str, **match: str) -> list[dict]:
    return [r for r in _log(stack, **match) if r.get("msg", "").startswith(start)]


def _pids(stack, sid: str) -> list[int]:
    """The warm CLIs the runner made ready for the session, oldest first."""
    return [int(r["msg"].split("pid ", 1)[1].split(" ", 1)[0]) for r in _said(stack, "warm CLI ready", session_id=sid)]


async def _until(what: str, check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def _restart(stack, **env: str) -> None:
    """The runner again with `env`, listening (a hint sent earlier is lost)."""
    before = len(_said(stack, "runner "))
    stack.restart_runner(**env)
    await _until("the runner to listen", lambda: len(_said(stack, "runner ")) > before)


def _per_turn_starts(stack, sid: str) -> list[dict]:
    return _said(stack, "CLI started, pid", session_id=sid)


async def test_the_first_prompt_after_opening_finds_the_cli_warm_and_it_serves_the_next_turn(stack, client):
    stack.api.script(text("first answer"), text("second answer"))
    sid = await open_session(client)
    pid = (await _until("a warm CLI", lambda: _pids(stack, sid)))[0]
    await prompt(client, sid, "hello")
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert next(f.json for f in frames if f.kind == "turn_end")["outcome"] == "ok"
    await prompt(client, sid, "and again")
    frames = await collect(client, f"/api/session/{sid}/stream", until=ended(2), timeout=60)
    assert [f.json["outcome"] for f in frames if f.kind == "turn_end"] == ["ok", "ok"]
    assert _pids(stack, sid) == [pid] and _alive(pid), "one warm CLI served both turns"
    assert not _per_turn_starts(stack, sid)
    second = stack.api.model_requests[-1].text_of()
    assert "hello" in second and "first answer" in second  # the conversation, held by the same process


async def test_a_warm_cli_killed_between_turns_costs_nothing_of_the_conversation(stack, client):
    stack.api.script(text("remember: blue"), text("it was blue"))
    sid = await open_session(client)
    pid = (await _until("a warm CLI", lambda: _pids(stack, sid)))[0]
    await prompt(client, sid, "pick a colour")
    await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    os.killpg(pid, signal.SIGKILL)
    await _until("the runner to see it die", lambda: _said(stack, "a warm CLI ended between turns", session_id=sid))
    await prompt(client, sid, "which colour?")
    frames = await collect(client, f"/api/session/{sid}/stream", until=ended(2), timeout=60)
    assert [f.json["outcome"] for f in frames if f.kind == "turn_end"] == ["ok", "ok"]
    resumed = stack.api.model_requests[-1].text_of()
    assert "pick a colour" in resumed and "remember: blue" in resumed


async def test_a_warm_cli_killed_mid_turn_ends_it_interrupted_and_the_next_turn_resumes(stack, client):
    stack.api.script(text("remember: green"), hang(interval=0.1, seconds=120))
    sid = await open_session(client)
    pid = (await _until("a warm CLI", lambda: _pids(stack, sid)))[0]
    await prompt(client, sid, "pick a colour")
    await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    await prompt(client, sid, "this will be cut")
    await collect(client, f"/api/session/{sid}/stream",
                  until=lambda f: sum(x.kind == "user" for x in f) == 2 and f[-1].kind == "delta", timeout=30)
    os.killpg(pid, signal.SIGKILL)
    frames = await collect(client, f"/api/session/{sid}/stream", until=ended(2), timeout=30)
    seen = kinds(frames)
    assert seen[-2:] == ["interrupted", "turn_end"], seen
    assert frames[-1].json["outcome"] == "interrupted"
    assert "ended mid-turn" in next(f.json for f in frames if f.kind == "interrupted")["reason"]
    stack.api.clear()
    stack.api.script(text("green, still"))
    await prompt(client, sid, "which colour?")
    frames = await collect(client, f"/api/session/{sid}/stream", until=ended(3), timeout=60)
    assert frames[-1].json["outcome"] == "ok"
    # The turns before the cut one are all there (what the CLI had written
    # of the cut turn when it was killed is the CLI's, as with a per-turn CLI).
    assert "remember: green" in stack.api.model_requests[-1].text_of()


async def test_an_idle_warm_cli_ends_and_the_next_turn_starts_its_own(stack, client):
    await _restart(stack, BREAKGLASS_WARM_IDLE_SECONDS="2")
    stack.api.script(text("late but fine"))
    sid = await open_session(client)
    pid = (await _until("a warm CLI", lambda: _pids(stack, sid)))[0]
    await _until("idle expiry", lambda: _said(stack, "ending a warm CLI idle"), timeout=20)
    await _until("the CLI to be gone", lambda: not _alive(pid))
    await prompt(client, sid, "still there?")
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert frames[-1].json["outcome"] == "ok"
    assert _per_turn_starts(stack, sid), "with no warm CLI the turn starts its own"


async def test_the_cap_ends_the_least_recently_used_idle_cli(stack, client):
    await _restart(stack, BREAKGLASS_MAX_WARM_CLIS="1")
    first = await open_session(client)
    one = (await _until("a warm CLI", lambda: _pids(stack, first)))[0]
    second = await open_session(client)
    two = (await _until("a second warm CLI", lambda: _pids(stack, second)))[0]
    assert _said(stack, "ending the least recently used warm CLI")
    await _until("the first CLI to be gone", lambda: not _alive(one))
    assert _alive(two)
    stack.api.script(text("cold start"))
    await prompt(client, first, "evicted?")
    frames = await collect(client, f"/api/session/{first}/stream", until=turn_ended, timeout=60)
    assert frames[-1].json["outcome"] == "ok"
    assert _per_turn_starts(stack, first)


async def test_a_prompt_racing_the_warm_up_waits_for_it_instead_of_starting_a_second_cli(stack, client):
    stack.api.script(text("raced"))
    sid = await open_session(client)
    await prompt(client, sid, "right away")  # the warm-up started by the open is still under way
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert frames[-1].json["outcome"] == "ok"
    assert len(_pids(stack, sid)) == 1 and not _per_turn_starts(stack, sid)
    assert len(stack.api.model_requests) == 1
