"""Who is asking (SPEC §6). Fails closed.

Two sources of identity, and nothing else:
- the edge proxy's user header, honoured ONLY when the deployment says it
  sits behind that proxy (`BREAKGLASS_TRUST_EDGE_HEADER=1`); otherwise anyone
  could type the header;
- `Authorization: Bearer <token>`, compared in constant time with the
  configured token. An unset or empty configured token matches nothing.
No identity, a wrong token, a broken configuration: 401.

A browser's EventSource cannot send an Authorization header, so
`POST /api/login` (itself bearer-authenticated) sets the token as an
HttpOnly, SameSite=Strict cookie that is honoured on GET requests only (the
stream, history, exports). State-changing requests still need the header,
so a cross-site form can never press a button.
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


COOKIE = "breakglass_token"
SAFE_METHODS = frozenset({"GET", "HEAD"})


def _matches(presented: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(presented.strip().encode(), token.encode())  # type: ignore[union-attr]


def identify(settings: Settings, headers, cookie: str | None = None) -> str | None:  # headers: case-insensitive
    """The acting identity, or None. `cookie` is passed only for safe methods."""
    if settings.trust_edge_header:
        user = headers.get(settings.edge_user_header)
        if user is not None:
            user = user.strip()
            return user if _NAME.match(user) else None
    token = settings.api_token
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, presented = authorization.partition(" ")
        return TOKEN_ACTOR if scheme.lower() == "bearer" and _matches(presented, token) else None
    if cookie is not None and _matches(cookie, token):
        return TOKEN_ACTOR
    return None


async def require_identity(request: Request) -> str:
    """FastAPI dependency on every `/api` route."""
    cookie = request.cookies.get(COOKIE) if request.method in SAFE_METHODS else None
    who = identify(request.app.state.settings, request.headers, cookie)
    if who is None:
        raise UNAUTHORIZED
    return who
