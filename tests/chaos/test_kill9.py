"""kill -9 of gateway, agent-runner, pve-executor and nats-server at random
points of scripted turns (the real CLI against the fake Messages API), with
a `reset` pressed (with an idempotency key, retried with the same key while
unanswered) during each turn. Each iteration: open a session, attach a
client, prompt, press, SIGKILL the target at the planned point, restart it
on the same port and data directory, wait until the turn ended, prompt
again; then check (SPEC §4, §7, §8):

1. no acknowledged event is lost: every event a client saw with an `id:`
   is still stored under that sequence with the same bytes (checked again
   after all later kills, nats-server's included), and every prompt the
   gateway answered 202 has its `user` event;
2. a client resuming by `Last-Event-ID` (after the gateway died, and after
   planned hang-ups) sees no gap and no duplicate: the ids it received,
   across every reconnect, are exactly the session's stored sequences;
3. every `user` event gets exactly one `turn_end` after it, and nothing of
   that turn is stored after its `turn_end`;
4. locks are freed: a new prompt is accepted (202; 409 only until a lapsed
   lock is reaped), it runs normally (outcome ok: the session goes on),
   and no turn lock is left in the KV bucket;
5. a mutating verb never runs twice: per idempotency key at most one
   request reaches `running`, and the fake `qm` log shows at most one
   `reset` per key and never more than the audited `running` events;
6. the hash chain of every session and of the verb audit subject verifies,
   and so do the JSONL exports (in-process and with `breakglass verify`);
7. every process is running at the end of the iteration (the ones not
   killed did not fall over).

Kill points come from a seeded `random.Random` (`BREAKGLASS_CHAOS_SEED`,
printed); iterations per target from `BREAKGLASS_CHAOS_ITERATIONS`
(default 2, CI-sized). Deadlines below are hang guards, not assertions on
timing.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import pytest

from events import chain, subjects
from eventbus.export import verify_jsonl
from tests.pve_host.host import VMID

from . import store
from .knobs import iterations
from .observer import Observer
from .stack import FOLLOW_UP, HEADERS, TARGETS, VERB_WAIT_SECONDS, ChaosStack

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

#: A turn whose runner died after taking its command but before claiming
#: it is ended when its pick-up lease (60 s, eventbus.locks) lapses: the
#: longest wait here (a gateway that died before publishing costs 3 s).
SETTLE_SECONDS = 120.0
RESET_CALL = f"reset {VMID}"


@dataclass
class Plan:
    """Where this iteration's kill lands."""

    #: delay: seconds after the prompt; frames: after the n-th frame the
    #: client sees; end: as soon as the client sees `turn_end` (the runner
    #: is writing its end and releasing the lock); request: within the
    #: prompt request; press: seconds after the verb press started.
    trigger: str
    value: float
    press_at: float
    downtime: float
    drops: list[int]

    def __str__(self) -> str:
        value = {"frames": f"={int(self.value)}", "end": ""}.get(self.trigger, f"={self.value:.2f}s")
        return (f"kill at {self.trigger}{value}, down {self.downtime:.2f}s, press at +{self.press_at:.2f}s, "
                f"client drops after frames {self.drops}")


WEIGHTS = {
    "gateway": {"delay": 4, "frames": 3, "end": 1, "request": 2, "press": 2},
    "agent-runner": {"delay": 4, "frames": 4, "end": 2, "request": 2},
    "pve-executor": {"press": 7, "delay": 2, "request": 1},
    "nats-server": {"delay": 3, "frames": 3, "end": 2, "request": 2, "press": 2},
}


def make_plan(rng: random.Random, target: str) -> Plan:
    weights = WEIGHTS[target]
    trigger = rng.choices(list(weights), list(weights.values()))[0]
    value = {
        "delay": lambda: rng.uniform(0.0, 3.5),
        "frames": lambda: float(rng.randint(1, 45)),
        "end": lambda: 0.0,
        "request": lambda: rng.uniform(0.0, 0.08),
        "press": lambda: rng.uniform(0.0, 0.8),
    }[trigger]()
    drops = sorted(rng.sample(range(3, 60), rng.randint(0, 2)))
    downtime = rng.uniform(0.0, 1.0)
    if target == "nats-server" and rng.random() < 0.3:
        downtime = rng.uniform(4.0, 8.0)  # longer than a turn's lease (4 s in this stack)
    # presses land during the turn and, now and then, just after it
    return Plan(trigger, value, press_at=rng.uniform(0.0, 3.0), downtime=downtime, drops=drops)


@dataclass
class Press:
    """An operator pressing `reset` with one idempotency key, and pressing
    again (same key) while there is no definitive answer."""

    client: httpx.AsyncClient
    session_id: str
    key: str
    attempts: list[str] = field(default_factory=list)
    final: dict | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.started.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        unanswered = 0
        while unanswered < 3 and loop.time() < deadline:
            try:
                answer = await self.client.post(
                    "/api/pve/reset", json={"idempotency_key": self.key, "session_id": self.session_id},
                    timeout=VERB_WAIT_SECONDS + 15,
                )
                body = _json(answer)
                if answer.status_code in (200, 502) and isinstance(body, dict) and "exit_code" in body:
                    self.attempts.append(f"{answer.status_code}/exit {body['exit_code']}"
                                         + ("/rejected" if body["rejected"] else ""))
                    if body["exit_code"] != 124:  # 124: no answer in time; press again
                        self.final = body
                        return
                    unanswered += 1
                else:
                    self.attempts.append(f"HTTP {answer.status_code}")
            except httpx.HTTPError as exc:
                self.attempts.append(type(exc).__name__)
            await asyncio.sleep(0.3)


def _json(answer: httpx.Response) -> object:
    try:
        return answer.json()
    except ValueError:
        return None


@dataclass
class Iteration:
    target: str
    index: int
    plan: Plan
    session_id: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The prompt sent after the recovery, once accepted.
    follow_up: str | None = None

    def line(self, seed: str) -> str:
        status = "OK" if not self.problems else f"FAILED ({len(self.problems)})"
        return (f"[chaos] {self.target} #{self.index} seed={seed} {self.plan} -> {'; '.join(self.notes)} "
                f"[{self.seconds:.1f}s] {status}")


async def retrying(make, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await make()
        except (httpx.HTTPError, AssertionError, KeyError, ValueError):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: no success within {timeout:g} s") from None
            await asyncio.sleep(0.2)


async def new_session(client: httpx.AsyncClient) -> str:
    answer = await client.post("/api/session")
    assert answer.status_code == 200, answer.text
    return answer.json()["session_id"]


async def prompt_once(client: httpx.AsyncClient, sid: str, text: str, accepted: list[str], notes: list[str]) -> None:
    """The operator's prompt, sent once (a phone does not resend blindly)."""
    try:
        answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": text})
    except httpx.HTTPError as exc:
        notes.append(f"prompt: {type(exc).__name__}")
        return
    if answer.status_code in (200, 202):
        accepted.append(answer.json()["turn_id"])
        notes.append(f"prompt: {answer.status_code}")
    else:
        notes.append(f"prompt: HTTP {answer.status_code}")


async def prompt_until_accepted(client: httpx.AsyncClient, sid: str, accepted: list[str], it: Iteration) -> None:
    """A new prompt once the last turn ended: 202, or 409 only while the lock
    is still on its way out (a lapsed pick-up lease is reaped by the take)."""
    started = time.monotonic()
    busy = 0
    while time.monotonic() - started < SETTLE_SECONDS:
        try:
            answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": f"{FOLLOW_UP}: are you back?"})
        except httpx.HTTPError:
            await asyncio.sleep(0.3)
            continue
        if answer.status_code in (200, 202):
            it.follow_up = answer.json()["turn_id"]
            accepted.append(it.follow_up)
            if busy:
                it.notes.append(f"follow-up 409 x{busy} for {time.monotonic() - started:.1f}s")
            return
        if answer.status_code == 409:
            busy += 1
        await asyncio.sleep(0.5)
    it.problems.append(f"the turn lock was never freed: no 202 within {SETTLE_SECONDS:g} s ({busy} x 409)")


def open_turns(events: list[store.Stored]) -> list[str]:
    users = [e.event["turn_id"] for e in events if e.kind == "user"]
    ends = {e.event["turn_id"] for e in events if e.kind == "turn_end"}
    return [t for t in users if t not in ends]


async def settle(stack: ChaosStack, sid: str, it: Iteration) -> list[store.Stored]:
    """Wait until every `user` of the session has its `turn_end`."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        async with store.connected(stack.nats_url) as js:
            events = await store.session_events(js, sid)
        if not open_turns(events):
            return events
        if time.monotonic() > deadline:
            it.problems.append(f"turns {open_turns(events)} never ended within {SETTLE_SECONDS:g} s")
            return events
        await asyncio.sleep(0.3)


async def kill_point(plan: Plan, obs: Observer, frames_before: int, press: Press) -> None:
    if plan.trigger in ("delay", "request"):
        await asyncio.sleep(plan.value)
    elif plan.trigger in ("frames", "end"):
        n = frames_before + int(plan.value) if plan.trigger == "frames" else 10**9
        # The turn may end before the n-th frame: then the kill lands after it.
        await obs.until(lambda o: o.frames >= n or "turn_end" in o.kinds, timeout=30)
    else:
        await asyncio.wait_for(press.started.wait(), 30)
        await asyncio.sleep(plan.value)


async def executor_settled(stack: ChaosStack, executor_killed_at: float | None) -> None:
    """Nothing queued for pve-executor and no verb holding the VM (but a lock
    taken before the executor was killed: that one is abandoned), so no `qm`
    call of this iteration can land in the next one's count."""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        async with store.connected(stack.nats_url) as js:
            idle = await store.executor_idle(js)
            lock = await store.vm_lock(js)
        abandoned = lock is not None and executor_killed_at is not None and lock["taken_at"] < executor_killed_at
        if idle and (lock is None or abandoned):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)


def stored_bytes(seq: int, frame_data: bytes) -> bytes | None:
    """The stored event inside an SSE frame: the gateway splices `"id":<seq>`
    in front of the stored JSON's first key and changes nothing else."""
    prefix = b'{"id":%d' % seq
    if not frame_data.startswith(prefix):
        return None
    rest = frame_data[len(prefix):]
    if rest == b"}":
        return b"{}"
    return b"{" + rest[1:] if rest.startswith(b",") else None


def check_session(it: Iteration, events: list[store.Stored], obs: Observer, accepted: list[str],
                  ledger: dict[int, bytes]) -> None:
    by_seq = {e.seq: e for e in events}
    stored_seqs = [e.seq for e in events]
    seen = [seq for seq, _ in obs.records]
    # 2. no gap, no duplicate: exactly the stored sequences, in order
    # (the client stopped once it had the tail it was waiting for; a late
    # event may be stored after that, so compare with the stored prefix)
    if seen != stored_seqs[:len(seen)]:
        dups = sorted({s for s in seen if seen.count(s) > 1})
        missing = sorted(set(stored_seqs[:len(seen)]) - set(seen))
        extra = sorted(set(seen) - set(stored_seqs))
        disorder = [b for a, b in zip(seen, seen[1:]) if b <= a]
        it.problems.append(f"client ids differ from the stored sequences: duplicates {dups}, gaps {missing}, "
                           f"not stored {extra}, out of order {disorder[:5]}")
    # 1. what the client saw is stored, byte for byte
    for seq, data in obs.records:
        original = stored_bytes(seq, data)
        if original is None:
            it.problems.append(f"id {seq}: the frame is not the stored event with its id spliced in: {data[:120]!r}")
        elif seq in by_seq and by_seq[seq].data != original:
            it.problems.append(f"id {seq}: the client saw other bytes than are stored")
        elif seq not in by_seq:
            it.problems.append(f"id {seq}: seen by the client, missing from the stream")
        if original is not None:
            ledger[seq] = original
    # 1b. every prompt acknowledged with 202 has its `user` event
    users = [e.event["turn_id"] for e in events if e.kind == "user"]
    for turn_id in accepted:
        if turn_id not in users:
            it.problems.append(f"turn {turn_id} was acknowledged (202) but its `user` event is missing")
    # 3. exactly one turn_end per user, after it
    for turn_id in users:
        ends = [e for e in events if e.kind == "turn_end" and e.event["turn_id"] == turn_id]
        user_seq = next(e.seq for e in events if e.kind == "user" and e.event["turn_id"] == turn_id)
        if len(ends) != 1:
            it.problems.append(f"turn {turn_id} has {len(ends)} turn_end events")
        elif ends[0].seq < user_seq:
            it.problems.append(f"turn {turn_id} ends before it starts")
    for end in (e for e in events if e.kind == "turn_end"):
        late = [e.kind for e in events if e.seq > end.seq and e.event.get("turn_id") == end.event["turn_id"]]
        if late:
            it.problems.append(f"turn {end.event['turn_id']}: {late} stored after its turn_end")
    if len(set(users)) != len(users):
        it.problems.append("a turn has two `user` events")
    orphans = [e.event["turn_id"] for e in events if e.kind == "turn_end" and e.event["turn_id"] not in users]
    if orphans:
        it.notes.append(f"turn_end without user: {orphans}")
    outcomes = [e.event.get("outcome") for e in events if e.kind == "turn_end"]
    it.notes.append(f"turns {outcomes}")
    # the session goes on: the prompt after the recovery runs normally
    follow_up = [e.event.get("outcome") for e in events if e.kind == "turn_end" and e.event["turn_id"] == it.follow_up]
    if it.follow_up is not None and follow_up != ["ok"]:
        it.problems.append(f"the follow-up turn after the recovery ended {follow_up}, not ok")
    errors = [e.event.get("error", "")[:160] for e in events if e.kind == "error"]
    if errors:
        it.notes.append(f"errors {errors}")
    # 6. the chain holds
    broken = chain.verify((e.seq, e.link, e.data, e.writer) for e in events)
    if broken is not None:
        it.problems.append(f"the session's hash chain is broken at event {broken.index} (seq {broken.seq}): "
                           f"{broken.reason}")


def check_verb(it: Iteration, events: list[store.Stored], press: Press, resets: int) -> None:
    verbs = [e.event for e in events if e.kind == "verb"]
    running = {v["request_id"] for v in verbs if v["phase"] == "running"}
    done = [v for v in verbs if v["phase"] == "done"]
    requested = {v["request_id"] for v in verbs if v["phase"] == "requested"}
    it.notes.append(f"press {press.attempts} -> {len(requested)} requested, {len(running)} running, "
                    f"{len(done)} done, qm reset x{resets}")
    if len(running) > 1:
        it.problems.append(f"key {press.key}: {len(running)} requests reached `running` (a verb ran twice)")
    if resets > 1:
        it.problems.append(f"key {press.key}: qm reset ran {resets} times")
    if resets > len(running):
        it.problems.append(f"key {press.key}: qm reset ran {resets} times but only {len(running)} `running` "
                           "events are stored (a run without its audit event)")
    if press.final is not None and press.final["exit_code"] == 0:
        if not any(v["exit_code"] == 0 and not v.get("rejected") for v in done):
            it.problems.append(f"key {press.key}: answered exit 0 but no `done` with exit 0 is stored")


async def run_iteration(it: Iteration, stack: ChaosStack, seed: str, ledger: dict[int, bytes]) -> None:
    plan, target, index = it.plan, it.target, it.index
    started = time.monotonic()
    resets_before = stack.pve.calls().count(RESET_CALL)
    accepted: list[str] = []
    async with httpx.AsyncClient(base_url=stack.base, headers=HEADERS, timeout=30) as client:
        sid = it.session_id = await retrying(lambda: new_session(client), "open a session")
        obs = Observer(stack.base, HEADERS, sid, plan.drops)
        watching = asyncio.create_task(obs.run())
        press = Press(client, sid, key=f"chaos-{seed}-{target}-{index}")
        turn = pressing = None
        try:
            await asyncio.wait_for(obs.caught_up.wait(), 30)
            frames_before = obs.frames
            turn = asyncio.create_task(prompt_once(client, sid, f"chaos turn {index}", accepted, it.notes))
            pressing = asyncio.create_task(press.run(plan.press_at))
            await kill_point(plan, obs, frames_before, press)
            killed_at = time.time()
            stack.kill(target)
            killed = time.monotonic()
            await asyncio.sleep(plan.downtime)
            stack.restart(target)
            await stack.ready()
            await turn
            await settle(stack, sid, it)
            ended = time.monotonic()
            await prompt_until_accepted(client, sid, accepted, it)
            events = await settle(stack, sid, it)
            await pressing
            await executor_settled(stack, killed_at if target == "pve-executor" else None)
            async with store.connected(stack.nats_url) as js:
                events = await store.session_events(js, sid)
                last = events[-1].seq if events else 0
                if not await obs.until(lambda o: o.last_id >= last, timeout=60):
                    it.problems.append(f"the client never caught up to id {last} (stuck at {obs.last_id})")
                it.notes.append(f"kill->turn ended {ended - killed:.1f}s, kill->client caught up "
                                f"{time.monotonic() - killed:.1f}s")
                # 4. the lock is free once the last turn ended (the runner releases right after turn_end)
                for _ in range(50):
                    if not await store.lock_held(js, sid):
                        break
                    await asyncio.sleep(0.2)
                else:
                    it.problems.append("the turn lock is still held after the last turn_end")
            export = await retrying(lambda: client.get(f"/api/session/{sid}/export", params={"format": "jsonl"}),
                                    "export the session")
        finally:
            tasks = [t for t in (watching, turn, pressing) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            it.seconds = time.monotonic() - started
    async with store.connected(stack.nats_url) as js:
        events = await store.session_events(js, sid)
    check_session(it, events, obs, accepted, ledger)
    problem = verify_jsonl(export.content.splitlines())
    if export.status_code != 200 or problem is not None:
        it.problems.append(f"export: HTTP {export.status_code}, verify: {problem}")
    check_verb(it, events, press, stack.pve.calls().count(RESET_CALL) - resets_before)
    it.notes.append(f"client connects {obs.connects}, resumed from {obs.resumed_from}")
    dead = stack.dead()
    if dead:
        it.problems.append(f"not running after the iteration: {dead}")
        for name in dead:  # keep going with the next iteration
            stack.restart(name)
    it.seconds = time.monotonic() - started


async def final_checks(stack: ChaosStack, sessions: list[str], ledger: dict[int, bytes], problems: list[str]) -> None:
    """After every kill of the run: still all there, nothing held."""
    async with store.connected(stack.nats_url) as js:
        stored: dict[int, bytes] = {}
        for sid in sessions:
            events = await store.session_events(js, sid)
            stored.update((e.seq, e.data) for e in events)
            if open_turns(events):
                problems.append(f"session {sid}: turns {open_turns(events)} have no turn_end")
        lost = [seq for seq in ledger if seq not in stored]
        changed = [seq for seq in ledger if seq in stored and stored[seq] != ledger[seq]]
        if lost or changed:
            problems.append(f"events seen by clients and later lost {lost[:10]} or changed {changed[:10]}")
        held = await store.held_locks(js)
        if held:
            problems.append(f"turn locks left in the KV bucket: {held}")
        audit = await store.read_subject(js, subjects.audit_filters("verb"))
        broken = chain.verify((e.seq, e.link, e.data, e.writer) for e in audit)
        if broken is not None:
            problems.append(f"the verb audit chain is broken at seq {broken.seq}: {broken.reason}")
        per_request: dict[str, int] = {}
        for e in audit:
            if e.event.get("phase") == "running":
                per_request[e.event["request_id"]] = per_request.get(e.event["request_id"], 0) + 1
        total_resets = stack.pve.calls().count(RESET_CALL)
        if total_resets > len(per_request):
            problems.append(f"qm reset ran {total_resets} times for {len(per_request)} audited `running` requests")


def verify_with_cli(stack: ChaosStack, sid: str, problems: list[str]) -> None:
    """`breakglass verify` itself, on one session's export."""
    path = stack.dir / f"{sid}.jsonl"
    path.write_bytes(httpx.get(f"{stack.base}/api/session/{sid}/export", params={"format": "jsonl"},
                               headers=HEADERS, timeout=30).content)
    result = subprocess.run([sys.executable, "-m", "breakglass", "verify", str(path)], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.startswith("OK"):
        problems.append(f"breakglass verify: exit {result.returncode}: {result.stdout}{result.stderr}")


@pytest.mark.parametrize("target", TARGETS)
async def test_kill9_at_random_points_of_scripted_turns(target: str, chaos_stack: ChaosStack, chaos_seed: str) -> None:
    count = iterations()
    rng = random.Random(f"{chaos_seed}:{target}")
    stack = chaos_stack
    started = time.monotonic()
    await stack.ready()
    ledger: dict[int, bytes] = {}
    results: list[Iteration] = []
    for index in range(count):
        it = Iteration(target, index, make_plan(rng, target))
        try:
            await run_iteration(it, stack, chaos_seed, ledger)
        except Exception as exc:  # a hang guard tripped: record it, bring the stack back, go on
            it.problems.append(f"{type(exc).__name__}: {exc}")
            for name in stack.dead():
                stack.restart(name)
            await stack.ready(timeout=60)
        results.append(it)
        print(it.line(chaos_seed), flush=True)
        for problem in it.problems:
            print(f"[chaos]     problem: {problem}", flush=True)
    problems: list[str] = []
    sessions = [r.session_id for r in results if r.session_id]
    await final_checks(stack, sessions, ledger, problems)
    await asyncio.to_thread(verify_with_cli, stack, sessions[-1], problems)
    failed = [r for r in results if r.problems]
    summary = (f"[chaos] {target}: seed={chaos_seed} iterations={count} passed={count - len(failed)} "
               f"failed={len(failed)} final-check problems={len(problems)} kills={stack.kills} "
               f"wall={time.monotonic() - started:.1f}s")
    print(summary, flush=True)
    if failed or problems:
        print(stack.logs(), flush=True)
    details = [f"#{r.index}: {p}" for r in failed for p in r.problems] + problems
    assert not details, summary + "\n" + "\n".join(details)
