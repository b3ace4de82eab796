"""Answering the agent's approval requests (policy `approve-mutating`).

The approval waits inside the agent-runner that owns the session's turn, so
the answer is a core NATS request on the session's approval subject; that
runner replies whether the approval was still pending. Every other outcome
(no turn running, no runner answering, a reply that does not decode) means
nothing was approved or denied: `False`, never an error the phone must
interpret.

An Approve is also a grant (`ApprovalGrant` in the KV bucket, which only the
gateway's NATS user may write): pve-executor runs the agent's mutating verb
only against it, so neither the agent nor agent-runner can approve their
own verb. It is bound to the verb and request of the `approval` event the
operator saw, expires after GRANT_SECONDS, and is redeemed once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError

from events import subjects
from eventbus import trace
from events.codec import ContractError, decode, encode
from events.codec import decode_event_lenient
from events.commands import AnswerApproval, ApprovalGrant, ApprovalReply
from events.kinds import ApprovalRequested, VerbPhase, VerbProgressed
from eventbus.retry import Backoff, polling
from events.verbs import Verb
from eventbus.topology import grant_key
from events.types import utcnow

from . import sessions, stepup
from .bus import Bus

log = logging.getLogger("gateway.approvals")

ANSWER_TIMEOUT = 3.0
#: How long an Approve may wait to be redeemed by pve-executor (the runner
#: publishes the verb as soon as it hears the answer).
GRANT_SECONDS = 120.0


async def answer_approval(bus: Bus, session_id: str, approval_id: str, *, approve: bool, by: str) -> bool:
    """True when the runner took the answer. Raises `SessionNotFound`."""
    await sessions.get_session(bus, session_id)
    if await (await bus.locks()).current(session_id) is None:
        return False  # no turn runs, so no approval can be waiting
    trace.bind(session_id=session_id, by=by)
    asked = await find_asked(bus, session_id, approval_id)
    if asked is None or asked.request_id is None:
        log.info("approval %s of session %s: no such approval was asked for", approval_id, session_id)
        return False
    trace.bind(turn_id=asked.turn_id, request_id=asked.request_id)  # the decision belongs to the verb's turn
    if approve:
        if await decided_by(bus, session_id, approval_id, wait=False) is not None:
            return False  # decided (or timed out) already: a late Approve leaves no grant behind
        await _grant(bus, asked, by)
    command = AnswerApproval(by=by, session_id=session_id, approval_id=approval_id, approved=approve)
    nc = bus.nc
    assert nc is not None
    try:
        reply = await nc.request(subjects.approval(session_id), encode(command), timeout=ANSWER_TIMEOUT,
                                 headers=trace.headers())
        accepted = decode(reply.data, ApprovalReply).accepted
    except (NoRespondersError, NatsTimeoutError, ContractError) as exc:
        log.info("approval %s of session %s got no answer: %s", approval_id, session_id, type(exc).__name__)
        accepted = False
    if approve and not accepted:  # not taken: the grant must not outlive the refusal
        await _withdraw(bus, approval_id)
    log.info("approval %s of session %s %s by %s (accepted: %s)",
             approval_id, session_id, "approved" if approve else "denied", by, accepted)
    if accepted:  # the operator's decision is the gateway's to record (events.authorship)
        phase = VerbPhase.APPROVED if approve else VerbPhase.DENIED
        await bus.log.append(VerbProgressed(
            session_id=session_id, turn_id=asked.turn_id, by=by, verb=asked.verb, phase=phase,
            request_id=asked.request_id,
        ), msg_id=f"{asked.request_id}:{phase.value}")
    return accepted


def decided_in_page_only(settings: Any, verb: Verb) -> bool:
    """True when a decision on `verb` must be made in the page (step-up: a
    fresh passkey assertion bound to the request), so a push carries no
    decision grant and its action only opens the page, and a grant issued
    before step-up was turned on is refused."""
    return stepup.required(settings, verb)


#: How long a refused decision looks for the one that won (the winner's
#: gateway records it right after the runner's reply).
DECIDED_LOOKUP_SECONDS = 1.0


async def decided_by(bus: Bus, session_id: str, approval_id: str, *, wait: bool = True) -> str | None:
    """Who decided this approval (an operator, or `timeout`/`agent-runner`
    for an automatic denial), as the session records it; None when nobody
    has (after looking for DECIDED_LOOKUP_SECONDS when `wait`)."""
    asked = await find_asked(bus, session_id, approval_id)
    request_id = asked.request_id if asked is not None else None
    if request_id is None:
        return None

    async def lookup() -> str | None:
        for record in await bus.log.read(session_id):
            event = decode_event_lenient(record.data)
            if (isinstance(event, VerbProgressed) and event.request_id == request_id
                    and event.phase in (VerbPhase.APPROVED, VerbPhase.DENIED)):
                return event.by
        return None

    return await polling(lookup, Backoff(DECIDED_LOOKUP_SECONDS if wait else 0.0, 0.1))


async def find_asked(bus: Bus, session_id: str, approval_id: str) -> ApprovalRequested | None:
    """The session's `approval` event with this id: what the operator saw."""
    for record in reversed(await bus.log.read(session_id)):
        event = decode_event_lenient(record.data)
        if isinstance(event, ApprovalRequested) and event.approval_id == approval_id:
            return event
    return None


async def _withdraw(bus: Bus, approval_id: str) -> None:
    try:
        await (await bus.kv()).delete(grant_key(approval_id))
    except KeyNotFoundError:
        pass


async def _grant(bus: Bus, asked: ApprovalRequested, by: str) -> None:
    """Store the operator's grant for what the session asked."""
    assert asked.session_id is not None and asked.request_id is not None
    grant = ApprovalGrant(
        approval_id=asked.approval_id, session_id=asked.session_id, request_id=asked.request_id, verb=asked.verb,
        approved_by=by, requested_by=asked.by, expires_at=utcnow() + timedelta(seconds=GRANT_SECONDS),
    )
    await (await bus.kv()).put(grant_key(asked.approval_id), encode(grant))
