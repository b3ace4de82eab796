"""Turn locks whose owner died (issue 17, real NATS): a gateway that died
inside `POST /prompt` before the command was published blocks its session
only for the short pending lease, and never leaves a `turn_end` without its
`user`; a restarted runner ends its predecessor's turns at once.

The locks' clock is the only thing faked: it moves past a lease without
the test sleeping through it."""

from __future__ import annotations

import json

import pytest

from events.codec import decode, encode
from events.kinds import TurnEnded, TurnInterrupted, UserPrompted, VerbPhase, VerbProgressed
from events.verbs import Verb
from events.commands import Ending, Reaping, Running, TurnLock, Unclaimed
from eventbus.locks import PENDING_LEASE_SECONDS, PICKUP_LEASE_SECONDS, TurnLocks
from eventbus.log import EventLog
from eventbus.topology import lock_key
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
    assert (await locks.current(sid)).lock.phase == Running(runner="runner/1")
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
    await locks._set(sid, held, Reaping())  # a reaper won the lock (CAS) and is ending the turn
    assert not await locks.queued(sid, turn, revision)


async def test_a_restarted_runner_ends_only_its_predecessors_turns_at_once(rig):
    locks, log, clock = rig
    mine, live_other, fresh = new_id(), new_id(), new_id()
    turns = {sid: new_id() for sid in (mine, live_other, fresh)}
    runners = {mine: "host:runner1/aaaaaa", live_other: "host:runner2/bbbbbb", fresh: "host:runner1/cccccc"}
    for sid, turn in turns.items():
        assert await locks.take(sid, turn, "ops")
        await user(log, sid, turn)
        assert await locks.claim(sid, turn, runners[sid]) is not None
    # the dead incarnation was writing its end when it died
    held = await locks.current(mine)
    assert await locks.renew(mine, turns[mine], Ending(runner=runners[mine]), held.revision)
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
    assert (await locks.current(sid)).lock.phase == Running(runner="runner/1")


# ------------------------------------------------------------ each transition, directly


async def stored(rig_kv, session_id: str):  # type: ignore[no-untyped-def]
    """The lock as the KV bucket holds it (bytes decoded by the contract)."""
    return decode((await rig_kv.get(lock_key(session_id))).value, TurnLock)


@pytest.fixture
async def kv(js, topology):  # type: ignore[no-untyped-def]
    return await js.key_value(topology.kv_bucket)


async def test_take_creates_an_unclaimed_lock_with_the_pending_lease(rig, kv):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    revision = await locks.take(sid, turn, "ops")
    lock = await stored(kv, sid)
    assert (lock.turn_id, lock.by, lock.phase) == (turn, "ops", Unclaimed())
    assert lock.lease_until == clock.now + PENDING_LEASE_SECONDS
    assert (await locks.current(sid)).revision == revision


async def test_take_of_a_held_lock_is_refused_and_leaves_it_alone(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    assert await locks.take(sid, turn, "ops")
    before = await locks.current(sid)
    assert await locks.take(sid, new_id(), "other") is None
    assert await locks.current(sid) == before


async def test_queued_extends_the_lease_to_the_pickup_lease_and_stays_unclaimed(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    revision = await locks.take(sid, turn, "ops")
    clock.now += 1
    assert await locks.queued(sid, turn, revision)
    held = await locks.current(sid)
    assert held.revision > revision
    assert (held.lock.phase, held.lock.lease_until) == (Unclaimed(), clock.now + PICKUP_LEASE_SECONDS)


async def test_queued_for_another_turn_is_refused(rig):
    locks, log, clock = rig
    sid = new_id()
    revision = await locks.take(sid, new_id(), "ops")
    assert not await locks.queued(sid, new_id(), revision)


async def test_claim_moves_an_unclaimed_lock_to_running_and_is_idempotent_for_its_runner(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    first = await locks.claim(sid, turn, "host:r/1")
    held = await locks.current(sid)
    assert (held.revision, held.lock.phase) == (first, Running(runner="host:r/1"))
    assert held.lock.lease_until == clock.now + 30
    assert await locks.claim(sid, turn, "host:r/1") > first  # a retried claim whose answer was lost
    assert await locks.claim(sid, turn, "host:r/2") is None  # another runner's is refused
    assert await locks.claim(sid, new_id(), "host:r/1") is None  # so is another turn's
    assert (await locks.current(sid)).lock.phase == Running(runner="host:r/1")


async def test_claim_of_a_reaping_or_ending_lock_is_refused(rig):
    locks, log, clock = rig
    for phase in (Reaping(), Ending(runner="host:r/1")):
        sid, turn = new_id(), new_id()
        await locks.take(sid, turn, "ops")
        await locks._set(sid, await locks.current(sid), phase)
        assert await locks.claim(sid, turn, "host:r/1") is None
        assert (await locks.current(sid)).lock.phase == phase


async def test_renew_extends_the_lease_and_moves_running_to_ending(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    revision = await locks.claim(sid, turn, "host:r/1")
    clock.now += 10
    renewed = await locks.renew(sid, turn, Running(runner="host:r/1"), revision)
    held = await locks.current(sid)
    assert (held.revision, held.lock.lease_until) == (renewed, clock.now + 30)
    ending = await locks.renew(sid, turn, Ending(runner="host:r/1"), renewed)
    assert (await locks.current(sid)).lock.phase == Ending(runner="host:r/1")
    assert ending > renewed


async def test_renew_with_a_stale_revision_is_refused(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    revision = await locks.claim(sid, turn, "host:r/1")
    assert await locks.renew(sid, turn, Running(runner="host:r/1"), revision)
    before = await locks.current(sid)
    assert await locks.renew(sid, turn, Running(runner="host:r/1"), revision) is None  # the old revision
    assert await locks.current(sid) == before


async def test_a_stale_revision_loses_the_compare_and_set(rig):
    """What every transition rests on: a write on a revision someone else
    moved past does not land (here `_set`, the writer of every phase)."""
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    stale = await locks.current(sid)
    assert await locks.claim(sid, turn, "host:r/1")
    assert await locks._set(sid, stale, Reaping()) is None
    assert (await locks.current(sid)).lock.phase == Running(runner="host:r/1")
    assert not await locks._delete(sid, stale.revision)
    assert await locks.current(sid) is not None


async def test_release_frees_the_lock_of_its_turn_only(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    assert not await locks.release(sid, new_id())
    assert await locks.current(sid) is not None
    assert await locks.release(sid, turn)
    assert await locks.current(sid) is None
    assert not await locks.release(sid, turn)  # nothing left to free


async def test_a_lapsed_running_turn_is_interrupted_then_ended_and_freed(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    await user(log, sid, turn)
    await locks.claim(sid, turn, "host:r/1")
    assert await locks.reap_lapsed() == []  # its lease holds
    clock.now += 30
    assert await locks.reap_lapsed() == [sid]
    assert await kinds(log, sid) == [("user", turn), ("interrupted", turn), ("turn_end", turn)]
    assert await locks.current(sid) is None


async def test_a_lapsed_ending_turn_gets_only_its_turn_end(rig):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    await user(log, sid, turn)
    revision = await locks.claim(sid, turn, "host:r/1")
    await locks.renew(sid, turn, Ending(runner="host:r/1"), revision)
    clock.now += 30
    assert await locks.reap_lapsed() == [sid]
    assert await kinds(log, sid) == [("user", turn), ("turn_end", turn)]


async def test_reap_on_a_stale_revision_writes_nothing(rig):
    """A runner renewed between the reaper's read and its CAS: the turn is
    not the reaper's to end."""
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    await user(log, sid, turn)
    revision = await locks.claim(sid, turn, "host:r/1")
    clock.now += 30
    lapsed = await locks.current(sid)
    assert await locks.renew(sid, turn, Running(runner="host:r/1"), revision)
    assert not await locks.reap(sid, lapsed, reason="test")
    assert await kinds(log, sid) == [("user", turn)]
    assert (await locks.current(sid)).lock.phase == Running(runner="host:r/1")


async def test_a_reaper_writes_the_reaping_phase_before_it_ends_the_turn(rig, kv):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    await locks.take(sid, turn, "ops")
    await user(log, sid, turn)
    await locks.claim(sid, turn, "host:r/1")
    clock.now += 30
    assert await locks.reap_lapsed() == [sid]
    history = [e for e in await kv.history(lock_key(sid))]
    phases = [decode(e.value, TurnLock).phase if e.value else None for e in history]
    assert phases[-2:] == [Reaping(), None]  # taken over (CAS), then freed


# ------------------------------------------------------------ the stored form


TURN = "6f1c1c9e-3c5b-4a53-9d55-6a2f7d1f4a10"


@pytest.mark.parametrize(("owner", "phase"), [
    ("", Unclaimed()),
    ("host:runner/abc", Running(runner="host:runner/abc")),
    ("host:runner/abc+ending", Ending(runner="host:runner/abc")),
    ("reaper", Reaping()),
])
def test_a_lock_an_older_writer_stored_decodes_to_its_phase(owner: str, phase) -> None:  # type: ignore[no-untyped-def]
    old = json.dumps({"turn_id": TURN, "by": "ops", "started_at": 1.0, "lease_until": 2.0, "owner": owner})
    lock = decode(old.encode(), TurnLock)
    assert lock.phase == phase
    # ... and a reader from before `phase` reads what this version writes as it always did
    assert json.loads(encode(lock))["owner"] == owner


async def test_a_lock_an_older_writer_stored_is_claimed_and_reaped_as_before(rig, kv):
    locks, log, clock = rig
    sid, turn = new_id(), new_id()
    old = {"turn_id": turn, "by": "ops", "started_at": clock.now, "lease_until": clock.now + 60, "owner": ""}
    await kv.create(lock_key(sid), json.dumps(old).encode())
    await user(log, sid, turn)
    assert await locks.claim(sid, turn, "host:r/1")
    assert (await locks.current(sid)).lock.phase == Running(runner="host:r/1")
    old_ending = {**old, "owner": "host:r/1+ending"}
    await kv.put(lock_key(sid), json.dumps(old_ending).encode())
    clock.now += 61
    assert await locks.reap_lapsed() == [sid]
    assert await kinds(log, sid) == [("user", turn), ("turn_end", turn)]  # an ending turn: no `interrupted`


async def test_an_unreadable_lock_counts_as_unclaimed_and_lapsed(rig, kv):
    locks, log, clock = rig
    sid = new_id()
    await kv.create(lock_key(sid), b'{"turn_id": "not a lock"}')
    held = await locks.current(sid)
    assert (held.lock.phase, held.lock.lease_until) == (Unclaimed(), 0)
    assert await locks.take(sid, new_id(), "ops")  # not wedged: reaped, then taken
