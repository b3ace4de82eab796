"""Turn locks in the KV bucket: at most one running turn per session, across
any number of gateway and runner replicas.

Every change is a compare-and-set on the key's revision:
- the gateway `take`s the lock (create-if-absent) before recording `user`,
  with a short lease (PENDING_LEASE_SECONDS): until its command is
  published, the lock's owner is that one HTTP request, and a gateway that
  dies inside it must not block the session for long;
- once the command is published, the gateway marks the lock `queued`, with
  the longer pick-up lease (the command may wait for a free runner);
- the runner that picks the command up `claim`s it (phase `running`)
  and `renew`s the lease while the CLI runs, marking it `ending` right
  before it writes `turn_end`;
- the turn's end `release`s it.
A lock whose lease lapsed belongs to a process that died: `reap` takes it
over (phase `reaping`), records `interrupted` + `turn_end` and frees it (or,
when the turn's `user` was never stored, only frees it: a `turn_end` always
follows its `user`). Those two events carry message ids derived from the
turn id, the same ones the runner uses for its own final
events, so whichever side gets there first, the log shows exactly one
`turn_end` per turn (JetStream drops the duplicate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from . import metrics
from events.codec import ContractError, decode, decode_event_lenient, encode
from events.commands import Ending, LockPhase, Reaping, RunnerPhase, Running, TurnLock, Unclaimed
from events.kinds import Outcome, TurnEnded, TurnInterrupted, UserPrompted
from .log import WRONG_LAST_SEQUENCE, EventLog
from .topology import LOCK_KEYS, kv_keys, lock_key

#: A lock whose command is not yet published (the gateway is recording
#: `user` and publishing, a few milliseconds) lapses after this long.
PENDING_LEASE_SECONDS = 3.0
#: A lock whose command is queued but not yet claimed by a runner lapses
#: after this long (queue wait).
PICKUP_LEASE_SECONDS = 60.0
#: A running turn's lease; the runner renews it well before it lapses.
RUN_LEASE_SECONDS = 30.0

LOCK_PREFIX = f"{LOCK_KEYS}."


def end_msg_id(turn_id: str) -> str:
    """The `Nats-Msg-Id` of a turn's `turn_end`: one per turn, whoever writes it."""
    return f"{turn_id}:turn_end"


@dataclass(frozen=True, slots=True)
class Held:
    lock: TurnLock
    revision: int


class TurnLocks:
    def __init__(self, kv: KeyValue, log: EventLog, *, run_lease: float = RUN_LEASE_SECONDS, clock=time.time) -> None:
        self._kv = kv
        self._log = log
        self._run_lease = run_lease
        self._clock = clock

    async def current(self, session_id: str) -> Held | None:
        try:
            entry = await self._kv.get(lock_key(session_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            return Held(decode(entry.value, TurnLock), entry.revision)
        except ContractError:
            # A corrupt lock would wedge the session forever: treat it as lapsed.
            return Held(TurnLock(turn_id="00000000-0000-0000-0000-000000000000", by="unknown",
                                 started_at=0, lease_until=0), entry.revision)

    async def take(self, session_id: str, turn_id: str, by: str) -> int | None:
        """Create the lock if no turn runs, with the short pending lease; reap
        a lapsed one first. Returns its revision (for `queued`); None = busy."""
        now = self._clock()
        lock = TurnLock(turn_id=turn_id, by=by, started_at=now, lease_until=now + PENDING_LEASE_SECONDS)
        for _ in range(2):
            try:
                return await self._kv.create(lock_key(session_id), encode(lock))
            except KeyWrongLastSequenceError:
                held = await self.current(session_id)
                if held is None:
                    continue
                last = await self._log.last_event(session_id)  # cheap: a busy session is asked often
                if isinstance(last, TurnEnded) and last.turn_id == held.lock.turn_id:
                    # Its `turn_end` is written and the runner is about to
                    # release: the turn is over, whoever frees the lock.
                    await self._delete(session_id, held.revision)
                elif held.lock.lease_until > now:
                    return None
                else:
                    await self.reap(session_id, held, reason="the previous turn's runner stopped answering")
        return None

    async def queued(self, session_id: str, turn_id: str, revision: int) -> bool:
        """The turn's command is published: extend the pending lease to the
        pick-up lease (CAS on the revision `take` returned). True when the
        turn is still open (also when a runner claimed it already); False
        when a reaper got there first (the gateway stalled past the pending
        lease): the caller then ends the turn itself."""
        for _ in range(3):
            held = await self.current(session_id)
            if held is None or held.lock.turn_id != turn_id or isinstance(held.lock.phase, Reaping):
                return False
            if not isinstance(held.lock.phase, Unclaimed):
                return True  # claimed by a runner: its run lease counts now
            lock = TurnLock(turn_id=turn_id, by=held.lock.by, started_at=held.lock.started_at,
                            lease_until=self._clock() + PICKUP_LEASE_SECONDS)
            try:
                await self._kv.update(lock_key(session_id), encode(lock), last=held.revision)
                return True
            except KeyWrongLastSequenceError:
                continue  # claimed or reaped in between: look again
        return False

    async def _stored_of(self, session_id: str, turn_id: str) -> set[type]:
        """The kinds of the turn's events that are stored. The whole session
        is read, not only its newest event: other writers (an operator's
        verb press, an alert) may have stored events after the turn's.
        Reaping is rare, so reading a session once then is cheap enough."""
        found: set[type] = set()
        for record in await self._log.read(session_id):
            try:
                event = decode_event_lenient(record.data)
            except ContractError:
                continue
            if getattr(event, "turn_id", None) == turn_id:
                found.add(type(event))
        return found

    async def _ended(self, session_id: str, turn_id: str) -> bool:
        return TurnEnded in await self._stored_of(session_id, turn_id)

    async def _prompted(self, session_id: str, turn_id: str) -> bool:
        """Is the `user` of a turn no runner claimed stored?"""
        return UserPrompted in await self._stored_of(session_id, turn_id)

    async def claim(self, session_id: str, turn_id: str, runner: str) -> int | None:
        """The runner takes the turn (phase `running`); None if the lock is not
        this turn's any more, or is not free to claim (another runner holds it,
        or a reaper took it over to end the turn).
        Idempotent for the same runner (a retried claim whose answer was lost).
        A lost CAS is looked at again: the gateway marking the lock `queued`
        at the same moment does not make the turn any less open."""
        claimed = Running(runner=runner)
        for _ in range(5):
            held = await self.current(session_id)
            if held is None or held.lock.turn_id != turn_id or held.lock.phase not in (Unclaimed(), claimed):
                return None
            revision = await self._set(session_id, held, claimed)
            if revision is not None:
                return revision
        return None

    async def renew(self, session_id: str, turn_id: str, phase: RunnerPhase, revision: int) -> int | None:
        """Extend the lease, in `phase` (`running`, or `ending` once the runner
        writes the turn's end); None if the lock was reaped or taken meanwhile."""
        held = await self.current(session_id)
        if held is None or held.revision != revision or held.lock.turn_id != turn_id:
            return None
        return await self._set(session_id, held, phase)

    async def _set(self, session_id: str, held: Held, phase: LockPhase) -> int | None:
        lock = TurnLock(
            turn_id=held.lock.turn_id, by=held.lock.by, started_at=held.lock.started_at,
            lease_until=self._clock() + self._run_lease, phase=phase,
        )
        try:
            return await self._kv.update(lock_key(session_id), encode(lock), last=held.revision)
        except KeyWrongLastSequenceError:
            return None

    async def release(self, session_id: str, turn_id: str) -> bool:
        held = await self.current(session_id)
        if held is None or held.lock.turn_id != turn_id:
            return False
        return await self._delete(session_id, held.revision)

    async def _delete(self, session_id: str, revision: int) -> bool:
        try:
            await self._kv.delete(lock_key(session_id), last=revision)
            return True
        except KeyWrongLastSequenceError:
            return False
        except APIError as exc:  # nats-py reports a stale revision on delete as a plain API error
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return False
            raise

    async def reap(self, session_id: str, held: Held, *, reason: str) -> bool:
        """End a lapsed turn in the log, then free its lock (CAS).

        The lock decides who writes a turn's end, so nothing is stored after
        a `turn_end`: a turn whose `turn_end` is the session's last event
        only has its lock freed; otherwise the reaper first takes the lock
        over (CAS on the revision it read) and writes only if that worked. A
        runner whose lease lapsed while NATS was away renews (CAS) before it
        writes its own end (agent_runner.turns), so only one of them writes;
        and a runner that died while writing its `turn_end` (phase `ending`)
        gets only a `turn_end` (a duplicate, dropped, if its own is stored)."""
        turn_id = held.lock.turn_id
        if await self._ended(session_id, turn_id):
            return await self._delete(session_id, held.revision)
        ending = isinstance(held.lock.phase, Ending)
        unclaimed = isinstance(held.lock.phase, Unclaimed)
        taken = await self._set(session_id, held, Reaping())
        if taken is None:
            return False  # renewed, released or reaped meanwhile: not ours to end
        held = Held(held.lock, taken)
        if unclaimed and not await self._prompted(session_id, turn_id):
            # The gateway died before it stored `user`: there is no turn to
            # end, only the lock to free (a `turn_end` needs its `user`).
            freed = await self._delete(session_id, held.revision)
            if freed:
                metrics.LEASES_LAPSED.inc()
            return freed
        if not ending:  # else its runner was writing `turn_end`: no `interrupted` after it
            await self._log.append(
                TurnInterrupted(session_id=session_id, turn_id=turn_id, by="breakglass", reason=reason),
                msg_id=f"{turn_id}:interrupted",
            )
        await self._log.append(
            TurnEnded(session_id=session_id, turn_id=turn_id, by="breakglass", outcome=Outcome.INTERRUPTED),
            msg_id=end_msg_id(turn_id),
        )
        freed = await self._delete(session_id, held.revision)
        if freed:  # counted once, by the reaper that won the CAS
            metrics.LEASES_LAPSED.inc()
        return freed

    async def reap_lapsed(self) -> list[str]:
        """Reap every lapsed lock; returns the sessions whose turn was ended."""
        now = self._clock()
        return await self._reap_where(lambda lock: lock.lease_until <= now,
                                      reason="the agent runner stopped answering (lease lapsed)")

    async def reap_owned(self, prefix: str, *, except_owner: str, reason: str) -> list[str]:
        """Reap every lock held (running or ending) by a runner whose name
        starts with `prefix` but is not `except_owner`, lapsed or not: for a
        caller that knows those runners are dead (a restarted runner ending
        its predecessor's turns, see agent_runner.identity) instead of
        waiting out their lease."""
        def dead(lock: TurnLock) -> bool:
            phase = lock.phase
            return isinstance(phase, RunnerPhase) and phase.runner.startswith(prefix) and phase.runner != except_owner
        return await self._reap_where(dead, reason=reason)

    async def _reap_where(self, dead, *, reason: str) -> list[str]:  # type: ignore[no-untyped-def]
        reaped = []
        for key in await kv_keys(self._kv, f"{LOCK_PREFIX}*"):
            if not key.startswith(LOCK_PREFIX):
                continue
            session_id = key[len(LOCK_PREFIX):]
            held = await self.current(session_id)
            if held is not None and dead(held.lock) and await self.reap(session_id, held, reason=reason):
                reaped.append(session_id)
        return reaped
