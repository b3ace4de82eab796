"""Answering the agent's approval requests (policy `approve-mutating`).

The approval waits inside the agent-runner that owns the session's turn, so
the answer is a core NATS request on the session's approval subject; that
runner replies whether the approval was still pending. Every other outcome
(no turn running, no runner answering, a reply that does not decode) means
nothing was approved or denied: `False`, never an error the phone must
interpret.
"""

from __future__ import annotations

import logging

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from events import subjects, trace
from events.codec import ContractError, decode, encode
from events.commands import AnswerApproval, ApprovalReply

from . import sessions
from .bus import Bus

log = logging.getLogger("gateway.approvals")

ANSWER_TIMEOUT = 3.0


async def answer_approval(bus: Bus, session_id: str, approval_id: str, *, approve: bool, by: str) -> bool:
    """True when the runner took the answer. Raises `SessionNotFound`."""
    await sessions.get_session(bus, session_id)
    if await (await bus.locks()).current(session_id) is None:
        return False  # no turn runs, so no approval can be waiting
    trace.bind(session_id=session_id, by=by)
    command = AnswerApproval(by=by, session_id=session_id, approval_id=approval_id, approved=approve)
    nc = bus.nc
    assert nc is not None
    try:
        reply = await nc.request(subjects.approval(session_id), encode(command), timeout=ANSWER_TIMEOUT,
                                 headers=trace.headers())
        accepted = decode(reply.data, ApprovalReply).accepted
    except (NoRespondersError, NatsTimeoutError, ContractError) as exc:
        log.info("approval %s of session %s got no answer: %s", approval_id, session_id, type(exc).__name__)
        return False
    log.info("approval %s of session %s %s by %s (accepted: %s)",
             approval_id, session_id, "approved" if approve else "denied", by, accepted)
    return accepted
