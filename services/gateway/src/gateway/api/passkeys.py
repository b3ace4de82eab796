"""Passkey routes: register an operator's passkey for step-up (gateway.stepup),
and tell the PWA which confirmations this deployment asks for."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..auth import require_identity
from ..stepup import StepUp
from .deps import Identity, bus_of

router = APIRouter(prefix="/api/passkeys", dependencies=[Depends(require_identity)], tags=["step-up"])


class PasskeyInfo(BaseModel):
    id: str
    created_at: float


class PasskeyState(BaseModel):
    user: str
    passkeys: list[PasskeyInfo]
    #: Mutating verbs need a passkey assertion (BREAKGLASS_STEP_UP).
    step_up: bool
    #: Verbs that need a second operator's Approve (BREAKGLASS_TWO_PERSON_VERBS).
    two_person: list[str]


class Registration(BaseModel):
    credential: dict[str, Any]


class EnrolBody(BaseModel):
    step_up: dict[str, Any] | None = None


class Registered(BaseModel):
    id: str


def _step_up(request: Request) -> StepUp:
    return StepUp(bus_of(request), request.app.state.settings)


@router.get("", response_model=PasskeyState)
async def passkey_state(request: Request, who: Identity) -> PasskeyState:
    settings = request.app.state.settings
    keys, _ = await _step_up(request).passkeys(who)
    return PasskeyState(
        user=who, passkeys=[PasskeyInfo(id=c.id, created_at=c.created_at) for c in (keys.credentials if keys else [])],
        step_up=settings.step_up, two_person=sorted(v.value for v in settings.two_person),
    )


@router.post("/options", responses={403: {"description": "too many passkeys, or the step-up was refused"},
                                    428: {"description": "a further passkey: confirm with one you have"}})
async def registration_options(request: Request, who: Identity, body: EnrolBody | None = None) -> dict[str, Any]:
    """WebAuthn creation options for `navigator.credentials.create` (user
    verification required). The first passkey needs the login only; a
    further one an assertion of an existing one (428, then `step_up`)."""
    return await _step_up(request).registration_options(who, (body or EnrolBody()).step_up)


@router.post("", response_model=Registered, responses={403: {"description": "the registration did not verify"}})
async def register(request: Request, body: Registration, who: Identity) -> Registered:
    return Registered(id=await _step_up(request).register(who, body.credential))
