"""Approval route: the operator's Approve/Deny of a verb the agent asked for."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field, StrictBool

from events.types import UUID_PATTERN

from .. import approvals, presses, sessions, stepup
from ..auth import require_identity
from .deps import Identity, SessionIdParam, bus_of

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)], tags=["approvals"])

ApprovalIdParam = Annotated[str, Path(pattern=UUID_PATTERN, description="The `approval_id` of an `approval` event.")]


class ApprovalBody(BaseModel):
    approve: StrictBool
    step_up: dict[str, Any] | None = Field(
        default=None, description="the passkey assertion (a PublicKeyCredential as JSON) the 428 asked for")


class ApprovalAnswered(BaseModel):
    accepted: bool
    #: When not accepted: who decided first (an operator, or `timeout`).
    decided_by: str | None = None


@router.post(
    "/session/{session_id}/approval/{approval_id}",
    response_model=ApprovalAnswered, response_model_exclude_none=True,
    responses={404: {"description": "unknown session"},
               403: {"description": "step-up refused, or your own two-person press"},
               409: {"description": "a two-person press someone else decided first"},
               428: {"description": "step-up: confirm with a passkey (`step_up` holds the WebAuthn options)"}},
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

    With step-up on, approving a mutating verb needs the caller's passkey
    (428, then the same request with `step_up`). An `approval` the gateway
    recorded for an operator's two-person press is decided here (gateway.presses).
    """
    bus = bus_of(request)
    settings = request.app.state.settings
    try:
        asked = await presses.find(bus, session_id, approval_id)
        if asked is not None and body.approve and stepup.required(settings, asked.event.verb):
            binding = stepup.Binding(user=who, action="approve", verb=asked.event.verb.value,
                                     session_id=session_id, subject=approval_id)
            await stepup.StepUp(bus, settings).demand(binding, body.step_up, request_id=asked.event.request_id or "")
        if asked is not None and asked.is_press:
            accepted = await presses.answer(bus, settings, asked, approve=body.approve, by=who)
        else:
            accepted = await approvals.answer_approval(bus, session_id, approval_id, approve=body.approve, by=who)
    except sessions.SessionNotFound:
        raise HTTPException(404, "unknown session") from None
    except presses.PressRefused as exc:
        raise HTTPException(403, str(exc)) from None
    except presses.PressDecided as exc:
        raise HTTPException(409, str(exc)) from None
    if accepted:
        return ApprovalAnswered(accepted=True)
    return ApprovalAnswered(accepted=False, decided_by=await approvals.decided_by(bus, session_id, approval_id))
