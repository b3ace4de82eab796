"""Recording an approval's escalation: whoever sent an unanswered approval
to a second channel (examples/notifier) tells the gateway where, and the
gateway records it in the session (`escalated`), so the page shows it.

The gateway is the only writer of the fact (events.authorship): the sender
is a reader of the bus and holds no right to write events. It is recorded
once per approval, and only while nobody has decided it: an escalation
that raced the operator's answer is refused (409, with who decided)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from events.kinds import ApprovalEscalated

from .. import approvals, sessions
from ..auth import require_identity
from .approvals import ApprovalIdParam
from .deps import Identity, SessionIdParam, bus_of

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)], tags=["approvals"])


class EscalationBody(BaseModel):
    #: Where it was sent, for the operator to read: a kind and a host
    #: (`ntfy at ntfy.example`), never a secret such as an ntfy topic.
    channel: str = Field(min_length=1, max_length=120, pattern=r"^[\w .:@/+-]+$")
    after_seconds: float = Field(ge=0, le=86400)


class Escalated(BaseModel):
    recorded: bool


@router.post(
    "/session/{session_id}/approval/{approval_id}/escalation", response_model=Escalated, status_code=201,
    responses={404: {"description": "unknown session or approval"}, 409: {"description": "already decided"}},
)
async def record_escalation(
    request: Request, session_id: SessionIdParam, approval_id: ApprovalIdParam, body: EscalationBody, who: Identity,
) -> Escalated:
    bus = bus_of(request)
    try:
        await sessions.get_session(bus, session_id)
    except sessions.SessionNotFound:
        raise HTTPException(404, "unknown session") from None
    asked = await approvals.find_asked(bus, session_id, approval_id)
    if asked is None:
        raise HTTPException(404, "no such approval in this session")
    decided = await approvals.decided_by(bus, session_id, approval_id, wait=False)
    if decided is not None:
        raise HTTPException(409, f"already decided by {decided}")
    await bus.log.append(ApprovalEscalated(
        session_id=session_id, turn_id=asked.turn_id, by=who, approval_id=approval_id, channel=body.channel,
        after_seconds=body.after_seconds,
    ), msg_id=f"{approval_id}:escalated")
    return Escalated(recorded=True)
