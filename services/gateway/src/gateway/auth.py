"""Who is asking (SPEC §6). Fails closed.

Two sources of identity, and nothing else:
- the edge proxy's user header, honoured ONLY when the deployment says it
  sits behind that proxy (`BREAKGLASS_TRUST_EDGE_HEADER=1`); otherwise anyone
  could type the header;
- `Authorization: Bearer <token>`, compared in constant time with the
  configured token. An unset or empty configured token matches nothing.
No identity, a wrong token, a broken configuration: 401.
"""

from __future__ import annotations

import hmac
import re

from fastapi import HTTPException, Request

from .settings import Settings

#: The actor recorded in events for requests authenticated by the bearer token.
TOKEN_ACTOR = "operator"
_NAME = re.compile(r"^[\w.@+-]{1,128}$")

UNAUTHORIZED = HTTPException(status_code=401, detail="authentication required", headers={"WWW-Authenticate": "Bearer"})


def identify(settings: Settings, headers) -> str | None:  # headers: a case-insensitive mapping
    if settings.trust_edge_header:
        user = headers.get(settings.edge_user_header)
        if user is not None:
            user = user.strip()
            return user if _NAME.match(user) else None
    token = settings.api_token
    authorization = headers.get("authorization")
    if token and authorization:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return TOKEN_ACTOR
    return None


async def require_identity(request: Request) -> str:
    """FastAPI dependency on every `/api` route."""
    who = identify(request.app.state.settings, request.headers)
    if who is None:
        raise UNAUTHORIZED
    return who
