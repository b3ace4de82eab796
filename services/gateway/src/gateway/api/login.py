"""Login for token deployments: trade the bearer token for a cookie the
browser's EventSource will send (see auth.py for why it is GET-only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..auth import COOKIE, require_identity
from .deps import Identity

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)], tags=["auth"])

MAX_AGE = 30 * 24 * 3600


@router.post("/login", responses={200: {"description": "`{user}`; the stream cookie is set"}})
async def login(request: Request, response: Response, who: Identity) -> dict[str, str]:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    if token:
        response.set_cookie(
            COOKIE, token, max_age=MAX_AGE, httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path="/api",
        )
    return {"user": who}


@router.post("/logout")
async def logout(response: Response, who: Identity) -> dict[str, str]:
    response.delete_cookie(COOKIE, path="/api")
    return {"user": who}
