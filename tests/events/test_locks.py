"""Turn locks whose owner died (issue 17, real NATS): a gateway that died
inside `POST /prompt` before the command was published blocks its session
only for the short pending lease, and never leaves a `turn_end` without its
`user`; a restarted runner ends its predecessor's turns at once.

The locks' clock is the only thing faked: it moves past a lease without
the test sleeping through it."""

from __future__ import annotations

import pytest

from events.kinds import TurnEnded, TurnInterrupted, UserPrompted, VerbPhase, VerbProgressed
from events.verbs import Verb
from eventbus.locks import PENDING_LEASE_SECONDS, PICKUP_LEASE_SECONDS, REAPER, TurnLocks
from eventbus.log import EventLog
from events.types import new_id


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def rig(js, topology):  # type: ignore[no-untyped-def]
    kv = await js.key_value(topology.kv_bucket)
    log = EventLog(js, topology)
    clock = Clock()
    return TurnLocks(kv, log, run_lease=30, clock=clock), log, clock


async def kinds(log: EventLog, session_id: str) -> list[tuple[str, str | None]]:
    return [(type(r.event()).__struct_config__.tag, r.event().turn_id) for r in await log.read(session_id)]


async def user(log: EventLog, session_id: str, turn_id: str) -> None:
    await log.append(UserPrompted(session_id=session_id, turn_id=turn_id, by="ops", text="hi"),
                     msg_id=f"{turn_id}:user")


async def test_a_lock_taken_by_a_gateway_that_died_before_storing_user_is_freed_without_a_turn_end(rig):
    locks, log, clock = rig
    sid, dead_turn = new_id(), new_id()
    assert await locks.take(sid, dead_turn, "ops")  # ... and the gateway died right here
    assert await locks.take(sid, new_id(), "ops") is None  # busy while the pending lease runs
    clock.now += PENDING_LEASE_SECONDS + 0.1
    assert await locks.reap_lapsed() == [sid]
    assert await kinds(log, sid) == []  # no `turn_end` for a turn whose `user` was never stored
    assert await locks.current(sid) is None
    # the operator's next prompt is taken at once
    assert await locks.take(sid, new_id(), "ops")


async def test_a_prompt_stored_but_never_published_is_interrupted_after_its_user(rig):
    locks, log, clock = rig
    sid, dead_turn, next_turn = new_id(), new_id(), new_id()
    assert await locks.take(sid, dead_turn, "ops")
    await user(log, sid, dead_turn)  # ... and the gateway died before publishing
    clock.now += PENDING_LEASE_SECONDS + 0.1
    assert await locks.take(sid, next_turn, "ops")  # the new prompt's take reaps it
    assert await kinds(log, sid) == [("user", dead_turn), ("interrupted", dead_turn), ("turn_end", dead_turn)]


async def test_a_prompt_followed_by_another_writers_event_is_still_interrupted(rig):
    # Found by chaos: an operator's verb press stored its `verb` event after
    # the turn's `user`; the reaper, looking only at the newest event, took
    # the turn for one never prompted and freed the lock without a
    # `turn_end` (the runner then dropped the turn): a `user` with no end.
    locks, log, clock = rig
    sid, dead_turn = new_id(), new_id()
    assert await locks.take(sid, dead_turn, "ops")
    await user(log, sid, dead_turn)
    await log.append(VerbProgressed(session_id=sid, by="ops", request_id=new_id(), verb=Verb.STATUS,
                                    phase=VerbPhase.REQUESTED))
    clock.now += PENDING_LEASE_SECONDS + 0.1
    assert await locks.reap_lapsed() == [sid]
    assert [k for k in await kinds(log, sid) if k[1] == dead_turn] == [
        ("user", dead_turn), ("interrupted", dead_turn), ("turn_end", dead_turn)]


async def test_a_queued_turn_keeps_its_lock_for_the_pickup_lease(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    revision = await locks.take(sid, turn, "ops")
    await user(log, sid, turn)
    assert await locks.queued(sid, turn, revision)
    clock.now += PENDING_LEASE_SECONDS + 5  # waiting for a free runner is not a dead gateway
    assert await locks.reap_lapsed() == []
    assert await locks.claim(sid, turn, "runner/1") is not None
    assert await locks.queued(sid, turn, revision)  # claimed already: still the turn's, nothing changes
    assert (await locks.current(sid)).lock.owner == "runner/1"
    clock.now += PICKUP_LEASE_SECONDS  # the runner's own lease lapsed: reaped as before
    assert await locks.reap_lapsed() == [sid]


async def test_a_gateway_that_stalled_past_the_pending_lease_learns_its_turn_was_reaped(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    revision = await locks.take(sid, turn, "ops")
    clock.now += PENDING_LEASE_SECONDS + 0.1
    assert await locks.reap_lapsed() == [sid]
    await user(log, sid, turn)  # the stalled request goes on ...
    assert not await locks.queued(sid, turn, revision)  # ... and is told: the caller ends the turn
    assert await locks.claim(sid, turn, "runner/1") is None  # the runner drops its command


async def test_a_reaper_holding_the_lock_is_not_a_queued_turn(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    revision = await locks.take(sid, turn, "ops")
    held = await locks.current(sid)
    await locks._set(sid, held, REAPER)  # a reaper won the lock (CAS) and is ending the turn
    assert not await locks.queued(sid, turn, revision)


async def test_a_restarted_runner_ends_only_its_predecessors_turns_at_once(rig):
    locks, log, clock = rig
    mine, live_other, fresh = new_id(), new_id(), new_id()
    turns = {sid: new_id() for sid in (mine, live_other, fresh)}
    owners = {mine: "host:runner1/aaaaaa+ending", live_other: "host:runner2/bbbbbb", fresh: "host:runner1/cccccc"}
    for sid, turn in turns.items():
        assert await locks.take(sid, turn, "ops")
        await user(log, sid, turn)
        assert await locks.claim(sid, turn, owners[sid].removesuffix("+ending")) is not None
    # the dead incarnation was writing its end when it died
    held = await locks.current(mine)
    assert await locks.renew(mine, turns[mine], owners[mine], held.revision)
    ended = await locks.reap_owned("host:runner1/", except_owner="host:runner1/cccccc", reason="restarted")
    assert ended == [mine]  # no lease lapsed: only the predecessor's turn, at once
    assert await kinds(log, mine) == [("user", turns[mine]), ("turn_end", turns[mine])]  # no `interrupted` after an ending
    assert await locks.current(live_other) is not None and await locks.current(fresh) is not None
    assert await kinds(log, live_other) == [("user", turns[live_other])]


async def test_a_reaped_unstarted_turn_gets_its_end_from_the_gateway_once(rig):
    """The gateway's own end of a reaped turn and the reaper's carry the same
    message ids: one `interrupted`, one `turn_end`, whoever writes first."""
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    revision = await locks.take(sid, turn, "ops")
    await user(log, sid, turn)
    clock.now += PENDING_LEASE_SECONDS + 0.1
    assert await locks.reap_lapsed() == [sid]
    assert not await locks.queued(sid, turn, revision)
    await log.append(TurnInterrupted(session_id=sid, turn_id=turn, by="gateway", reason="stalled"),
                     msg_id=f"{turn}:interrupted")
    await log.append(TurnEnded(session_id=sid, turn_id=turn, by="gateway"), msg_id=f"{turn}:turn_end")
    assert await kinds(log, sid) == [("user", turn), ("interrupted", turn), ("turn_end", turn)]
    assert await locks.claim(sid, turn, "runner/1") is None  # the runner that gets the command drops it


async def test_a_claim_racing_the_gateways_queued_mark_still_claims(rig):
    """The runner read the lock, then the gateway marked it queued (a new
    revision) before the runner's CAS: the claim looks again and wins."""
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    revision = await locks.take(sid, turn, "ops")
    real_current = locks.current
    raced = []

    async def stale_then_real(session_id):  # type: ignore[no-untyped-def]
        held = await real_current(session_id)
        if not raced:
            raced.append(True)
            assert await locks.queued(sid, turn, revision)  # lands between the read and the CAS
        return held

    locks.current = stale_then_real
    assert await locks.claim(sid, turn, "runner/1") is not None
    locks.current = real_current
    assert (await locks.current(sid)).lock.owner == "runner/1"
