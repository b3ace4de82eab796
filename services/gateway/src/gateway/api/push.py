"""Web Push routes: the key to subscribe with, (un)subscribing, and the
decision a notification's Approve/Deny posts with the grant its push carried.

The decision route takes no bearer and no cookie: the service worker that
handles a notification action holds neither. Its credential is the grant,
in the `X-Breakglass-Push-Grant` header (never a URL, which logs keep):
single use, one approval, one identity, expiring with the approval
(gateway.push.grants). The guard lets a request carrying a well-formed
grant through to this one route; everything else needs an identity.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from pydantic import BaseModel, Field, StrictBool

from events.verbs import Verb

from .. import approvals, presses, sessions
from ..auth import require_identity
from ..push import grants
from ..push.sender import Pusher
from ..push.store import BadSubscription, Subscription, check_endpoint, check_keys
from .deps import Identity

router = APIRouter(prefix="/api/push", tags=["push"])
GRANT_HEADER = grants.GRANT_HEADER


def pusher_of(request: Request) -> Pusher:
    pusher = getattr(request.app.state, "pusher", None)
    if pusher is not None and pusher.off:
        raise HTTPException(503, f"Web Push is off: {pusher.off}")
    if pusher is None or pusher.subs is None:
        raise HTTPException(503, "Web Push is starting; try again")
    return pusher


class PushKey(BaseModel):
    public_key: str = Field(description="The VAPID public key (base64url): the `applicationServerKey`.")


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)


class SubscriptionBody(BaseModel):
    """`PushSubscription.toJSON()` as the browser gives it."""

    endpoint: str = Field(max_length=2048)
    keys: SubscriptionKeys
    expirationTime: float | None = None


class Subscribed(BaseModel):
    expires_at: float


class Unsubscribe(BaseModel):
    endpoint: str = Field(max_length=2048)


class DecisionBody(BaseModel):
    approve: StrictBool


class Decided(BaseModel):
    accepted: bool
    by: str
    session_id: str
    approval_id: str


@router.get("/key", response_model=PushKey, dependencies=[Depends(require_identity)])
async def key(request: Request) -> PushKey:
    return PushKey(public_key=pusher_of(request).public_key)


@router.post("/subscription", response_model=Subscribed, status_code=201,
             responses={400: {"description": "not a usable subscription"}})
async def subscribe(request: Request, body: SubscriptionBody, who: Identity) -> Subscribed:
    """Store (or renew) this browser's subscription for the caller."""
    pusher = pusher_of(request)
    settings = request.app.state.settings
    try:
        check_endpoint(body.endpoint, allow_http=settings.push_allow_http)
        check_keys(body.keys.p256dh, body.keys.auth)
    except BadSubscription as exc:
        raise HTTPException(400, str(exc)) from None
    now = time.time()
    expires_at = now + settings.push_subscription_days * 86400
    if body.expirationTime:  # the browser's own end (ms since the epoch), when sooner
        expires_at = min(expires_at, body.expirationTime / 1000)
    if expires_at <= now:
        raise HTTPException(400, "this subscription has already expired")
    assert pusher.subs is not None
    await pusher.subs.put(Subscription(identity=who, endpoint=body.endpoint, p256dh=body.keys.p256dh,
                                       auth=body.keys.auth, created_at=now, expires_at=expires_at))
    return Subscribed(expires_at=expires_at)


@router.delete("/subscription", status_code=204, responses={404: {"description": "no such subscription of yours"}})
async def unsubscribe(request: Request, body: Unsubscribe, who: Identity) -> Response:
    assert pusher_of(request).subs is not None
    if not await pusher_of(request).subs.remove_endpoint(body.endpoint, who):  # type: ignore[union-attr]
        raise HTTPException(404, "no such subscription of yours")
    return Response(status_code=204)


@router.post(
    "/decision", response_model=Decided,
    responses={403: {"description": "no grant, or not one this gateway issued"},
               409: {"description": "already decided (by whom), or the grant was already used"},
               410: {"description": "the approval's time is over"}},
)
async def decide(
    request: Request, body: DecisionBody,
    grant: Annotated[str | None, Header(alias=GRANT_HEADER, description="The grant the push carried.")] = None,
) -> Decided:
    """Approve or deny from a notification: the grant decides its own
    approval once, as the identity the push was sent to."""
    bus = request.app.state.bus
    action = "approve" if body.approve else "deny"
    try:
        spent = await grants.spend(await bus.kv(), grant or "", action)
    except grants.GrantRefused as exc:
        raise HTTPException(exc.status, exc.detail) from None
    if approvals.decided_in_page_only(request.app.state.settings, Verb(spent.verb)):
        raise HTTPException(403, "this verb needs a passkey check: open the page to decide")
    try:
        asked = await presses.find(bus, spent.session_id, spent.approval_id)
        if asked is not None and asked.is_press:  # an operator's two-person press: never its presser's to approve
            accepted = await presses.answer(bus, request.app.state.settings, asked,
                                            approve=body.approve, by=spent.identity)
        else:
            accepted = await approvals.answer_approval(bus, spent.session_id, spent.approval_id,
                                                       approve=body.approve, by=spent.identity)
    except sessions.SessionNotFound:
        raise HTTPException(403, "the grant names a session that does not exist") from None
    except presses.PressRefused as exc:
        raise HTTPException(403, str(exc)) from None
    except presses.PressDecided as exc:
        raise HTTPException(409, str(exc)) from None
    if not accepted:
        who = await approvals.decided_by(bus, spent.session_id, spent.approval_id)
        raise HTTPException(409, f"already decided by {who}" if who else
                            "no longer waiting for a decision (its turn is over)")
    return Decided(accepted=True, by=spent.identity, session_id=spent.session_id, approval_id=spent.approval_id)
