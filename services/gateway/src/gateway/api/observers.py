"""Observer-link routes: an operator creates or revokes a read-only link to
one session (gateway.observers says what a link can and cannot do)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field

from ..auth import require_identity
from ..observers import DEFAULT_SECONDS, Observers
from .deps import Identity, SessionIdParam, bus_of, require_session

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)], tags=["observers"])

ObserverIdParam = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The `observer_id` of the link.")]


class ObserverRequest(BaseModel):
    seconds: float = Field(default=DEFAULT_SECONDS, gt=0, description="how long the link works")


class ObserverLink(BaseModel):
    observer_id: str
    #: Shown once: the gateway keeps only its hash.
    secret: str
    expires_at: float
    #: The PWA's read-only view of the session (the secret stays in the fragment, never sent in a URL).
    url: str


class Revoked(BaseModel):
    revoked: bool


@router.post("/session/{session_id}/observers", response_model=ObserverLink,
             responses={404: {"description": "unknown session"}, 422: {"description": "seconds over the maximum"}})
async def create_observer(
    request: Request, session_id: SessionIdParam, who: Identity, body: ObserverRequest | None = None,
) -> ObserverLink:
    body = body or ObserverRequest()
    most = request.app.state.settings.observer_max_seconds
    if body.seconds > most:
        raise HTTPException(422, f"an observer link lives at most {most:g} s (BREAKGLASS_OBSERVER_MAX_SECONDS)")
    bus = bus_of(request)
    await require_session(bus, session_id)
    secret, observer_id, expires_at = await Observers(bus).create(session_id, who, body.seconds)
    return ObserverLink(observer_id=observer_id, secret=secret, expires_at=expires_at,
                        url=f"/#observe/{session_id}/{secret}")


@router.delete("/session/{session_id}/observers/{observer_id}", response_model=Revoked,
               responses={404: {"description": "unknown session"}})
async def revoke_observer(request: Request, session_id: SessionIdParam, observer_id: ObserverIdParam,
                          who: Identity) -> Revoked:
    """`revoked` is false when the session has no such live link."""
    bus = bus_of(request)
    await require_session(bus, session_id)
    return Revoked(revoked=await Observers(bus).revoke(session_id, observer_id, who))
