"""Who is asking (SPEC §6). Fails closed.

Two sources of identity, and nothing else:
- the edge proxy's user header, honoured ONLY when the deployment says it
  sits behind that proxy (`BREAKGLASS_TRUST_EDGE_HEADER=1`) AND the request
  carries the secret the proxy sends with it (`BREAKGLASS_EDGE_SECRET_FILE`,
  compared in constant time): otherwise any local client, the agent's shell
  included, could type the header and be anyone;
- `Authorization: Bearer <token>`, compared in constant time with the
  configured token. An unset or empty configured token matches nothing.
No identity, a wrong token, a broken configuration: 401.

A browser's EventSource cannot send an Authorization header, so
`POST /api/login` (itself bearer-authenticated) sets an HttpOnly,
SameSite=Strict cookie honoured on GET requests only (the stream, history,
exports). The cookie holds a random login id, never the token: the server
keeps the login (gateway.logins) and `POST /api/logout` revokes it, so a
copied cookie dies with the logout. State-changing requests still need the
header, so a cross-site form can never press a button.
"""

from __future__ import annotations

import hmac
import re

from fastapi import HTTPException, Request

from . import observers
from .settings import Settings

#: The actor recorded in events for requests authenticated by the bearer token.
TOKEN_ACTOR = "operator"
_NAME = re.compile(r"^[\w.@+-]{1,128}$")

UNAUTHORIZED = HTTPException(status_code=401, detail="authentication required", headers={"WWW-Authenticate": "Bearer"})


COOKIE = "breakglass_login"
SAFE_METHODS = frozenset({"GET", "HEAD"})


def _matches(presented: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(presented.strip().encode(), token.encode())  # type: ignore[union-attr]


def _from_edge(settings: Settings, headers) -> bool:  # type: ignore[no-untyped-def]
    """The request came through the auth proxy: it carries the proxy's secret."""
    if not settings.trust_edge_header or not settings.edge_secret:
        return False
    return _matches(headers.get(settings.edge_secret_header) or "", settings.edge_secret)


def identify(settings: Settings, headers) -> str | None:  # headers: case-insensitive
    """The identity the request's headers prove, or None (cookies: `require_identity`)."""
    if _from_edge(settings, headers):
        user = headers.get(settings.edge_user_header)
        if user is not None:
            user = user.strip()
            return user if _NAME.match(user) else None
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, presented = authorization.partition(" ")
        return TOKEN_ACTOR if scheme.lower() == "bearer" and _matches(presented, settings.api_token) else None
    return None


async def require_identity(request: Request) -> str:
    """FastAPI dependency on every `/api` route. A request with an observer
    link is that observer's whatever else it carries (gateway.observers)."""
    settings: Settings = request.app.state.settings
    secret = observers.credential(request.headers, request.query_params)
    if secret is not None:
        return await observers.observer_identity(request, secret)
    who = identify(settings, request.headers)
    if who is None and "authorization" not in request.headers and request.method in SAFE_METHODS:
        cookie = request.cookies.get(COOKIE)
        if cookie and settings.api_token:
            who = await request.app.state.logins.who(cookie, settings.api_token)
    if who is None:
        raise UNAUTHORIZED
    return who
