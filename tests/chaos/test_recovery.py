"""How long the operator waits after a kill -9 (issue 17): the three
recoveries the random kills of test_kill9.py only land on now and then,
each forced at its exact point, with the services' default leases. Prints
one `[recovery]` line per round and a summary per target; asserts only
what must hold (no timed assertions: the figures go to RELIABILITY.md).

- gateway killed inside `POST /prompt`, after it took the turn lock and
  before its command was published (with and without its `user` stored,
  alternately). The test writes those first steps itself, exactly as the
  gateway does (eventbus.locks.TurnLocks.take, the `user` append), then
  SIGKILLs the gateway and restarts it. Measured: the new gateway ready ->
  a new prompt accepted (202).
- agent-runner killed mid-turn (the real CLI streaming), default 30 s
  lease, restarted on its data directory. Measured: restart -> the turn's
  `interrupted` stored.
- pve-executor killed while a `reset` runs on the host (default 10 s verb
  lease), restarted. Measured: kill -> `done` with `lost` stored, kill ->
  the VM lock free; then the same idempotency key is pressed again and
  must be answered with that outcome.

Rounds per target: BREAKGLASS_CHAOS_ITERATIONS (default 2).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import pytest

from events.kinds import UserPrompted
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import Topology
from events.types import new_id

from . import store
from .knobs import iterations
from .stack import HEADERS, ChaosStack
from .test_kill9 import RESET_CALL, new_session, open_turns

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

#: Hang guards, not figures.
GUARD = 90.0


async def until(check, what: str, timeout: float = GUARD):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.05)


async def events_of(stack: ChaosStack, sid: str) -> list[store.Stored]:
    async with store.connected(stack.nats_url) as js:
        return await store.session_events(js, sid)


async def accepted(client: httpx.AsyncClient, sid: str) -> str | None:
    try:
        answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": "follow-up: are you back?"})
    except httpx.HTTPError:
        return None
    return answer.json()["turn_id"] if answer.status_code == 202 else None


def check_turns(events: list[store.Stored]) -> list[str]:
    """Every `turn_end` after its own `user`, one per turn, none open."""
    problems = []
    users = {e.event["turn_id"]: e.seq for e in events if e.kind == "user"}
    ends = [e for e in events if e.kind == "turn_end"]
    for end in ends:
        turn = end.event["turn_id"]
        if turn not in users or users[turn] > end.seq:
            problems.append(f"turn_end of {turn} without its user before it")
    if len({e.event["turn_id"] for e in ends}) != len(ends):
        problems.append("a turn has two turn_end events")
    if open_turns(events):
        problems.append(f"turns left open: {open_turns(events)}")
    return problems


def summary(target: str, figures: dict[str, list[float]]) -> str:
    parts = [f"{name} median {statistics.median(v):.2f}s max {max(v):.2f}s (n={len(v)})" for name, v in figures.items()]
    return f"[recovery] {target}: " + "; ".join(parts)


async def gateway_round(stack: ChaosStack, client: httpx.AsyncClient, index: int) -> dict[str, float]:
    sid = await new_session(client)
    dead_turn = new_id()
    with_user = index % 2 == 0
    async with store.connected(stack.nats_url) as js:
        kv = await js.key_value(Topology().kv_bucket)
        log = EventLog(js)
        assert await TurnLocks(kv, log).take(sid, dead_turn, "operator")
        if with_user:
            await log.append(UserPrompted(session_id=sid, turn_id=dead_turn, by="operator", text="cut short",
                                          model="sonnet"), msg_id=f"{dead_turn}:user")
    stack.kill("gateway")  # ... the gateway that held that request dies
    killed = time.monotonic()
    stack.restart("gateway")
    await stack.ready()
    ready = time.monotonic()
    follow_up = await until(lambda: accepted(client, sid), "a new prompt accepted")
    done = time.monotonic()
    events = await until(lambda: _ended(stack, sid, follow_up), "the follow-up turn ended")
    problems = check_turns(events)
    dead = [e.kind for e in events if e.event.get("turn_id") == dead_turn]
    want = ["user", "interrupted", "turn_end"] if with_user else []
    if dead != want:
        problems.append(f"the dead request's turn left {dead}, not {want}")
    outcome = [e.event.get("outcome") for e in events if e.kind == "turn_end" and e.event["turn_id"] == follow_up]
    if outcome != ["ok"]:
        problems.append(f"the follow-up ended {outcome}")
    print(f"[recovery] gateway #{index} ({'user stored' if with_user else 'no user yet'}): kill->ready "
          f"{ready - killed:.2f}s, ready->prompt accepted {done - ready:.2f}s, kill->accepted {done - killed:.2f}s "
          f"{'OK' if not problems else problems}", flush=True)
    assert not problems, problems
    return {"ready->accepted": done - ready, "kill->accepted": done - killed}


async def _ended(stack: ChaosStack, sid: str, turn_id: str) -> list[store.Stored] | None:
    events = await events_of(stack, sid)
    return events if any(e.kind == "turn_end" and e.event["turn_id"] == turn_id for e in events) else None


async def runner_round(stack: ChaosStack, client: httpx.AsyncClient, index: int) -> dict[str, float]:
    sid = await new_session(client)
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": f"recovery turn {index}"})
    assert answer.status_code == 202, answer.text
    turn = answer.json()["turn_id"]
    await until(lambda: _has(stack, sid, "tool_result"), "the turn under way")
    stack.kill("agent-runner")
    killed = time.monotonic()
    stack.restart("agent-runner")
    restarted = time.monotonic()
    await until(lambda: _has(stack, sid, "interrupted"), "the turn interrupted")
    interrupted = time.monotonic()
    events = await until(lambda: _ended(stack, sid, turn), "the turn ended")
    follow_up = await until(lambda: accepted(client, sid), "a new prompt accepted")
    events = await until(lambda: _ended(stack, sid, follow_up), "the follow-up turn ended")
    problems = check_turns(events)
    reason = next(e.event["reason"] for e in events if e.kind == "interrupted")
    print(f"[recovery] agent-runner #{index}: restart->interrupted {interrupted - restarted:.2f}s, "
          f"kill->interrupted {interrupted - killed:.2f}s ({reason}) {'OK' if not problems else problems}", flush=True)
    assert not problems, problems
    return {"restart->interrupted": interrupted - restarted}


async def _has(stack: ChaosStack, sid: str, kind: str) -> bool:
    return any(e.kind == kind for e in await events_of(stack, sid))


async def executor_round(stack: ChaosStack, client: httpx.AsyncClient, index: int) -> dict[str, float]:
    sid = await new_session(client)
    key = f"recovery-{new_id()}"
    body = {"idempotency_key": key, "session_id": sid}
    resets_before = stack.pve.calls().count(RESET_CALL)
    stack.pve.knob("delay_reset", 4)  # the reset is still on the host when its executor dies
    press = asyncio.create_task(client.post("/api/pve/reset", json=body, timeout=GUARD))
    try:
        await until(lambda: _verb_phase(stack, sid, "running"), "the reset running")
        stack.kill("pve-executor")
        killed = time.monotonic()
    finally:
        stack.pve.knob("delay_reset", 0)
    await asyncio.sleep(0.3)
    stack.restart("pve-executor")
    done = await until(lambda: _verb_phase(stack, sid, "done"), "the reset ended")
    lost_at = time.monotonic()
    await until(_vm_free(stack), "the VM lock free")
    free_at = time.monotonic()
    first = await press
    again = await client.post("/api/pve/reset", json=body, timeout=GUARD)  # the same key, pressed again
    problems = []
    if not done.get("lost"):
        problems.append(f"the reset ended without `lost`: {done}")
    if not again.json().get("lost"):
        problems.append(f"the same key was answered {again.status_code} {again.text[:200]}")
    resets = stack.pve.calls().count(RESET_CALL) - resets_before
    if resets > 1:
        problems.append(f"qm reset ran {resets} times")
    print(f"[recovery] pve-executor #{index}: kill->lost recorded {lost_at - killed:.2f}s, kill->VM lock free "
          f"{free_at - killed:.2f}s; first press {first.status_code} exit {first.json().get('exit_code')}, same key "
          f"again {again.status_code} lost={again.json().get('lost')} rejected={again.json().get('rejected')}; "
          f"qm reset x{resets} {'OK' if not problems else problems}", flush=True)
    assert not problems, problems
    return {"kill->lost": lost_at - killed, "kill->VM free": free_at - killed}


async def _verb_phase(stack: ChaosStack, sid: str, phase: str) -> dict | None:
    return next((e.event for e in await events_of(stack, sid) if e.kind == "verb" and e.event["phase"] == phase), None)


def _vm_free(stack: ChaosStack):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        async with store.connected(stack.nats_url) as js:
            return await store.vm_lock(js) is None
    return check


ROUNDS = {"gateway": gateway_round, "agent-runner": runner_round, "pve-executor": executor_round}


@pytest.mark.parametrize("target", list(ROUNDS))
async def test_recovery_time_after_a_kill(target: str, chaos_stack: ChaosStack) -> None:
    stack = chaos_stack
    if target == "agent-runner":  # the service's default lease, not the suite's short one
        stack.overrides["agent-runner"] = {"BREAKGLASS_LEASE_SECONDS": "30", "BREAKGLASS_LEASE_RENEW_SECONDS": "5"}
        stack.services["agent-runner"].stop()
        stack.start_service("agent-runner")
    await stack.ready()
    figures: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=stack.base, headers=HEADERS, timeout=30) as client:
        for index in range(iterations()):
            for name, value in (await ROUNDS[target](stack, client, index)).items():
                figures.setdefault(name, []).append(value)
    print(summary(target, figures), flush=True)
    async with store.connected(stack.nats_url) as js:
        assert await store.held_locks(js) == []
