"""Session and turn handlers: what the HTTP routes ask of the bus.

No HTTP here: these raise domain errors that the routes turn into status
codes, so the same handlers serve any other entrypoint.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError

from events import subjects
from eventbus import trace
from events.codec import ContractError, decode, encode
from events.commands import CancelReply, CancelTurn, SessionRecord, StartTurn, Unclaimed, WarmSession
from events.kinds import Outcome, TurnCancelled, TurnEnded, TurnFailed, TurnInterrupted, UserPrompted
from eventbus.locks import end_msg_id
from eventbus.topology import session_key
from events.types import new_id, utcnow

from .bus import Bus

logger = logging.getLogger(__name__)

CANCEL_TIMEOUT = 3.0


class SessionNotFound(LookupError):
    pass


class TurnBusy(RuntimeError):
    pass


class TurnLost(RuntimeError):
    """The turn was ended before it was queued (see `start_turn`)."""


async def open_session(bus: Bus, by: str, *, session_id: str | None = None, vm: str | None = None) -> str:
    """A new session (`session_id`: one the caller already chose, e.g. the
    alert receiver, which names it before it exists), bound to `vm` (a name
    of BREAKGLASS_VMS the caller checked; None: the default VM)."""
    session_id = session_id or new_id()
    record = SessionRecord(session_id=session_id, created_by=by, created_at=utcnow(), vm=vm)
    await (await bus.kv()).create(session_key(session_id), encode(record))
    return session_id


async def hint_warm(bus: Bus, session_id: str, by: str, model: str | None, vm: str | None = "") -> None:
    """Tell the runners a prompt may follow (WarmSession): one of them
    starts the session's CLI ahead of need. Best effort and never in the
    way: without NATS, or refused, the first prompt only starts cold.
    `vm` "": read it from the session's record."""
    nc = bus.nc
    if nc is None or not nc.is_connected:
        return
    try:
        if vm == "":
            vm = (await get_session(bus, session_id)).vm
        hint = WarmSession(by=by, session_id=session_id, model=model, vm=vm)
        await nc.publish(subjects.warm(session_id), encode(hint))
    except Exception as exc:  # a hint lost costs only the head start
        logger.info("could not send the warm hint for %s: %s", session_id, exc)


async def get_session(bus: Bus, session_id: str) -> SessionRecord:
    try:
        entry = await (await bus.kv()).get(session_key(session_id))
    except KeyNotFoundError:
        raise SessionNotFound(session_id) from None
    try:
        return decode(entry.value or b"", SessionRecord)
    except ContractError:
        raise SessionNotFound(session_id) from None


async def start_turn(bus: Bus, session_id: str, prompt: str, model: str, by: str, *, read_only: bool = False) -> str:
    """Lock, record `user`, publish the command, mark the lock queued; undo
    the lock if that fails. Until it is marked queued the lock has a short
    lease (eventbus.locks), so a gateway dying in here frees the session in
    seconds. `read_only`: the runner holds every mutating verb for a
    human's approval whatever its policy (an alert's triage;
    StartTurn.read_only)."""
    turn_id = new_id()
    trace.bind(session_id=session_id, turn_id=turn_id, by=by)
    locks = await bus.locks()
    # The session's record and the lock in one round trip; a lock taken for
    # a session that is not there is given back at once.
    record, revision = await asyncio.gather(get_session(bus, session_id), locks.take(session_id, turn_id, by),
                                            return_exceptions=True)
    if isinstance(record, BaseException):
        if isinstance(revision, int):
            await locks.release(session_id, turn_id)
        raise record
    if isinstance(revision, BaseException):
        raise revision
    if revision is None:
        raise TurnBusy(session_id)
    try:
        await bus.log.append(
            UserPrompted(session_id=session_id, turn_id=turn_id, by=by, text=prompt, model=model),
            msg_id=f"{turn_id}:user",
        )
    except Exception:
        await locks.release(session_id, turn_id)
        raise
    command = StartTurn(by=by, session_id=session_id, turn_id=turn_id, prompt=prompt, model=model, read_only=read_only,
                        vm=record.vm)
    try:
        await bus.js.publish(subjects.PROMPT, encode(command), headers=trace.headers(**{"Nats-Msg-Id": turn_id}))
    except Exception as exc:
        logger.error("could not queue turn %s: %s", turn_id, exc)
        await _end_unstarted(bus, session_id, turn_id, TurnFailed(
            session_id=session_id, turn_id=turn_id, by="gateway", error="the turn could not be queued"),
            Outcome.ERROR)
        raise
    if not await _queued(locks, session_id, turn_id, revision):
        # This request outlasted the pending lease and a reaper freed the
        # lock; the runner will drop the command. End the turn (the reaper
        # did too if it saw `user`: same message ids, stored once).
        logger.error("turn %s was reaped before it was queued (the gateway stalled)", turn_id)
        await bus.log.append(TurnInterrupted(session_id=session_id, turn_id=turn_id, by="gateway",
                                             reason="the gateway stalled before the turn was queued"),
                             msg_id=f"{turn_id}:interrupted")
        await bus.log.append(TurnEnded(session_id=session_id, turn_id=turn_id, by="gateway",
                                       outcome=Outcome.INTERRUPTED), msg_id=end_msg_id(turn_id))
        raise TurnLost(session_id)
    logger.info("turn queued (model %s, prompt of %d characters)", model, len(prompt))
    return turn_id


async def _queued(locks, session_id: str, turn_id: str, revision: int) -> bool:  # type: ignore[no-untyped-def]
    """`locks.queued`; if the bus fails right then, the command is queued
    all the same: a runner's claim takes the lock over within the pending
    lease, so the turn is treated as started."""
    try:
        return await locks.queued(session_id, turn_id, revision)
    except Exception as exc:
        logger.warning("could not mark turn %s queued (%s); a runner's claim takes the lock over", turn_id, exc)
        return True


async def cancel_turn(bus: Bus, session_id: str, by: str) -> bool:
    """Ask the runner that owns the turn to stop it; if no runner has picked
    the turn up yet, end it here. True when a turn was running."""
    await get_session(bus, session_id)
    locks = await bus.locks()
    held = await locks.current(session_id)
    if held is None:
        return False
    command = CancelTurn(by=by, session_id=session_id, turn_id=held.lock.turn_id)
    trace.bind(session_id=session_id, turn_id=held.lock.turn_id, by=by)
    logger.info("stop requested")
    try:
        reply = await bus.nc.request(subjects.cancel(session_id), encode(command), timeout=CANCEL_TIMEOUT,  # type: ignore[union-attr]
                                     headers=trace.headers())
        return decode(reply.data, CancelReply).cancelled
    except (NoRespondersError, NatsTimeoutError, ContractError):
        pass
    if not isinstance(held.lock.phase, Unclaimed):
        if held.lock.lease_until > time.time():
            return False  # a runner owns it and its lease holds: it is alive, just slow to answer
        # The owner is gone (its lease lapsed): end the turn now, as the reaper would.
        return await locks.reap(session_id, held, reason="stopped by the operator; the agent runner was not answering")
    return await _end_unstarted(
        bus, session_id, held.lock.turn_id,
        TurnCancelled(session_id=session_id, turn_id=held.lock.turn_id, by=by), Outcome.CANCELLED,
    )


async def _end_unstarted(bus: Bus, session_id: str, turn_id: str, why, outcome: Outcome) -> bool:
    """End a turn no runner has started. The lock is released first (CAS), so
    a runner claiming it at the same moment either wins and runs the turn, or
    loses and drops it; only the winner writes the end of the turn."""
    if not await (await bus.locks()).release(session_id, turn_id):
        return False
    await bus.log.append(why, msg_id=f"{turn_id}:{type(why).__struct_config__.tag}")
    await bus.log.append(TurnEnded(session_id=session_id, turn_id=turn_id, by="gateway", outcome=outcome),
                         msg_id=end_msg_id(turn_id))
    return True
