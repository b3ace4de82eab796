"""Login for token deployments: trade the bearer token for a login cookie the
browser's EventSource will send (see auth.py for why it is GET-only, and
logins.py for why it holds a login id, not the token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..auth import COOKIE, require_identity
from ..logins import MAX_AGE
from .deps import Identity

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)], tags=["auth"])


@router.post("/login", responses={200: {"description": "`{user}`; the stream cookie is set"}})
async def login(request: Request, response: Response, who: Identity) -> dict[str, str]:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    if token:
        login_id = await request.app.state.logins.open(who, token)
        response.set_cookie(
            COOKIE, login_id, max_age=MAX_AGE, httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path="/api",
        )
    return {"user": who}


@router.post("/logout", responses={200: {"description": "`{user}`; the login is revoked on the server"}})
async def logout(request: Request, response: Response, who: Identity) -> dict[str, str]:
    login_id = request.cookies.get(COOKIE)
    if login_id:
        await request.app.state.logins.revoke(login_id)
    response.delete_cookie(COOKIE, path="/api")
    return {"user": who}
