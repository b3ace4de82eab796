"""Approval route: the operator's Approve/Deny of a verb the agent asked for."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, StrictBool

from events.types import UUID_PATTERN

from .. import approvals, sessions
from ..auth import require_identity
from .deps import Identity, SessionIdParam, bus_of

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)], tags=["approvals"])

ApprovalIdParam = Annotated[str, Path(pattern=UUID_PATTERN, description="The `approval_id` of an `approval` event.")]


class ApprovalBody(BaseModel):
    approve: StrictBool


class ApprovalAnswered(BaseModel):
    accepted: bool
    #: When not accepted: who decided first (an operator, or `timeout`).
    decided_by: str | None = None


@router.post(
    "/session/{session_id}/approval/{approval_id}",
    response_model=ApprovalAnswered, response_model_exclude_none=True,
    responses={404: {"description": "unknown session"}},
)
async def answer_approval(
    request: Request, session_id: SessionIdParam, approval_id: ApprovalIdParam, body: ApprovalBody, who: Identity,
) -> ApprovalAnswered:
    """Approve (`{"approve": true}`) or deny a pending `approval` of the session.

    `accepted` is false when no such approval is pending: already answered,
    timed out (which denied it), or its turn is over; `decided_by` then
    names who decided it first, when the session records one. The outcome is recorded
    in the session as a `verb` event with phase `approved` or `denied` and
    `by` the caller.
    """
    try:
        accepted = await approvals.answer_approval(
            bus_of(request), session_id, approval_id, approve=body.approve, by=who,
        )
    except sessions.SessionNotFound:
        raise HTTPException(404, "unknown session") from None
    if accepted:
        return ApprovalAnswered(accepted=True)
    return ApprovalAnswered(accepted=False, decided_by=await approvals.decided_by(bus_of(request), session_id, approval_id))
