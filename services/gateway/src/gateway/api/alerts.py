"""The alert receiver's route: Prometheus Alertmanager's webhook.

Its own credential, and nothing else opens it: `Authorization: Bearer
<secret>` where the secret is the content of `BREAKGLASS_ALERT_TOKEN_FILE`
(Alertmanager's `http_config.authorization.credentials_file`). That secret
opens no other route, and no other credential (API token, edge header,
cookie) opens this one. Unauthenticated: 401; not a version 4 webhook:
400/413/422 with the reason. In both cases nothing is recorded or started.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from ..alerts import payload, receive, state
from ..auth import UNAUTHORIZED
from .deps import bus_of

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


class Received(BaseModel):
    alerts: int
    recorded: int
    ignored: int
    sessions: list[str]
    triages: list[str]


def _authenticated(request: Request) -> bool:
    secret = request.app.state.settings.alert_token
    scheme, _, presented = (request.headers.get("authorization") or "").partition(" ")
    return bool(secret) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), secret.encode())


@router.post(
    "/alertmanager",
    response_model=Received,
    responses={401: {"description": "no or wrong alert credential"}, 413: {"description": "body too large"},
               422: {"description": "not an Alertmanager version 4 webhook"},
               503: {"description": "the bus is unavailable, or the group is too contended: retry"}},
)
async def alertmanager(request: Request) -> Received:
    """Alertmanager's webhook (`webhook_configs`, payload version 4)."""
    if not _authenticated(request):
        raise UNAUTHORIZED
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > payload.MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is over {payload.MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > payload.MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is over {payload.MAX_BODY_BYTES} bytes")
    try:
        hook = payload.parse(body)
    except payload.BadPayload as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        receipt = await receive.receive(bus_of(request), request.app.state.settings, hook, request.app.state.triages.start)
    except state.Lost:  # Alertmanager retries a 5xx: by then the writers ahead of it are done
        raise HTTPException(503, "too many concurrent updates of this alert group; try again") from None
    return Received(**vars(receipt))
