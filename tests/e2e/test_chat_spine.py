"""Open -> attach -> prompt -> the real CLI's events over SSE, exactly once."""

from __future__ import annotations

import asyncio
import time

from tests.fakeapi import bash, error, hang, text
from tests.sse import collect


def kinds(frames) -> list[str]:
    return [f.kind for f in frames if f.kind and f.kind != "delta"]


def turn_ended(frames) -> bool:
    return any(f.kind == "turn_end" for f in frames)


def ended(n: int):
    return lambda frames: sum(f.kind == "turn_end" for f in frames) >= n


async def open_session(client) -> str:
    return (await client.post("/api/session")).json()["session_id"]


async def prompt(client, sid, text_, expect=202):
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": text_})
    assert answer.status_code == expect, answer.text
    return answer.json()


async def test_a_turn_with_a_bash_round_trip_then_a_resumed_turn(stack, client):
    stack.api.script(bash("echo hello-from-tool"), text("The VM answers: ", "hello."), text("Still fine."))
    sid = await open_session(client)
    started = time.monotonic()
    await prompt(client, sid, "check the vm")
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    elapsed = time.monotonic() - started
    print(f"one real-CLI turn with a Bash round trip, prompt -> turn_end: {elapsed * 1000:.0f} ms")
    assert kinds(frames)[:1] == ["user"]
    seen = kinds(frames)
    for expected in ("session", "tool", "tool_result", "text", "result", "usage", "turn_end"):
        assert expected in seen, (expected, seen)
    assert seen.index("tool") < seen.index("tool_result") < seen.index("result") < seen.index("turn_end")
    tool = next(f.json for f in frames if f.kind == "tool")
    result = next(f.json for f in frames if f.kind == "tool_result")
    assert tool["name"] == "Bash" and "echo hello-from-tool" in tool["input"]["command"]
    assert "hello-from-tool" in result["output"] and result["tool_use_id"] == tool["tool_use_id"]
    assert next(f.json for f in frames if f.kind == "turn_end")["outcome"] == "ok"
    ids = [int(f.id) for f in frames if f.id]
    assert ids == sorted(set(ids))

    await prompt(client, sid, "and now?")
    frames = await collect(client, f"/api/session/{sid}/stream", until=ended(2), timeout=60)
    assert sum(f.kind == "user" for f in frames) == 2
    last_request = stack.api.model_requests[-1]
    assert "check the vm" in last_request.text_of() and "hello-from-tool" in last_request.text_of()


async def test_stop_mid_stream_ends_with_cancelled_and_turn_end(stack, client):
    from tests.e2e.test_liveness import watch

    stack.api.script(hang(interval=0.1, seconds=60))
    sid = await open_session(client)
    await prompt(client, sid, "slow please")
    pressed: list[float] = []

    def stop_once_streaming(got) -> None:
        if not pressed and got[-1][0].kind == "delta":
            pressed.append(time.monotonic())
            stop_task.append(asyncio.ensure_future(client.post(f"/api/session/{sid}/cancel")))

    stop_task: list = []
    got = await watch(client, sid, turn_ended, timeout=30, on_frame=stop_once_streaming)
    assert (await stop_task[0]).json() == {"cancelled": True}
    ended_at = next(t for f, t in got if f.kind == "turn_end")
    print(f"Stop pressed -> turn_end on the open stream: {(ended_at - pressed[0]) * 1000:.0f} ms")
    assert ended_at - pressed[0] < 2.0
    frames = [f for f, _ in got]
    seen = kinds(frames)
    assert seen[-2:] == ["cancelled", "turn_end"]
    assert "error" not in seen
    assert next(f.json for f in frames if f.kind == "cancelled")["by"] == "operator"
    await prompt(client, sid, "again")  # the lock is free


async def test_a_concurrent_prompt_is_409(stack, client):
    stack.api.script(hang(interval=0.1, seconds=60))
    sid = await open_session(client)
    await prompt(client, sid, "first")
    await prompt(client, sid, "second", expect=409)
    await client.post(f"/api/session/{sid}/cancel")


async def test_an_api_500_ends_the_turn_with_an_error(stack, client):
    stack.api.script(error(500, "upstream exploded"))
    sid = await open_session(client)
    await prompt(client, sid, "hello")
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    seen = kinds(frames)
    assert "error" in seen and seen[-1] == "turn_end"
    assert next(f.json for f in frames if f.kind == "turn_end")["outcome"] == "error"
    assert next(f.json for f in frames if f.kind == "result")["is_error"] is True


async def test_a_runner_killed_mid_turn_is_interrupted_and_the_session_goes_on(stack, client):
    stack.api.script(hang(interval=0.1, seconds=120))
    sid = await open_session(client)
    await prompt(client, sid, "this will be cut")
    await collect(client, f"/api/session/{sid}/stream", until=lambda f: any(x.kind == "delta" for x in f), timeout=30)
    stack.runner.kill()
    killed = time.monotonic()
    stack.restart_runner()
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    assert time.monotonic() - killed < 60
    seen = kinds(frames)
    assert seen[-2:] == ["interrupted", "turn_end"]
    assert sum(k == "turn_end" for k in seen) == 1
    stack.api.clear()
    stack.api.script(text("back"))
    await prompt(client, sid, "are you back?")
    frames = await collect(client, f"/api/session/{sid}/stream", until=ended(2), timeout=60)
    assert kinds(frames)[-1] == "turn_end"


async def test_reconnect_mid_turn_by_last_event_id_has_no_gap_and_no_duplicate(stack, client):
    stack.api.script(bash("echo one"), bash("echo two"), text("done"))
    sid = await open_session(client)
    await prompt(client, sid, "several steps")
    first = await collect(client, f"/api/session/{sid}/stream", until=lambda f: any(x.kind == "tool" for x in f), timeout=60)
    last_id = [f.id for f in first if f.id][-1]
    rest = await collect(client, f"/api/session/{sid}/stream", headers={"Last-Event-ID": last_id}, until=turn_ended, timeout=60)
    full = await collect(client, f"/api/session/{sid}/stream", until=lambda f: any(x.event == "caught-up" for x in f), timeout=30)
    joined = [f.id for f in first if f.id] + [f.id for f in rest if f.id]
    assert joined == [f.id for f in full if f.id]
    assert kinds(full)[-1] == "turn_end"


async def test_a_turn_over_its_time_limit_ends_with_an_error(stack, client):
    stack.restart_runner(BREAKGLASS_TURN_TIMEOUT_SECONDS="2")
    stack.api.script(hang(interval=0.1, seconds=60))
    sid = await open_session(client)
    await prompt(client, sid, "never ends")
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    seen = kinds(frames)
    assert seen[-2:] == ["error", "turn_end"]
    assert "timed out" in next(f.json for f in frames if f.kind == "error")["error"]
    assert frames[-1].json["outcome"] == "timeout"


async def test_the_cli_and_its_tools_see_a_scrubbed_environment(stack, client):
    stack.restart_runner(BREAKGLASS_PVE_KEY_FILE="/secret/pve_key", SOME_RUNNER_SECRET="hunter2")
    stack.api.script(bash("env; echo END-OF-ENV"), text("ok"))
    sid = await open_session(client)
    await prompt(client, sid, "show env")
    frames = await collect(client, f"/api/session/{sid}/stream", until=turn_ended, timeout=60)
    output = next(f.json for f in frames if f.kind == "tool_result")["output"]
    assert "END-OF-ENV" in output and "ANTHROPIC_BASE_URL=" in output
    for leaked in ("BREAKGLASS_", "NATS", "hunter2", "/secret/pve_key"):
        assert leaked not in output
