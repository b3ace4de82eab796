"""Observer links: read-only, expiring access to ONE session for a colleague.

An operator creates a link (`POST /api/session/{id}/observers`); its secret
(32 random bytes) is shown once and stored only as its SHA-256
(`observers.<hash>` in the KV bucket, gateway-only), which is also the
link's id in the audit. Whoever holds the secret presents it in the
`X-Breakglass-Observer` header or the `observer` query parameter (an
EventSource and a download link cannot send headers), and may then do
exactly three things with that one session: attach (the stream), replay
(its events) and export. Nothing else: no prompt, Stop, verb, approval,
other session or listing, whatever route is added later, because the check
is an allow-list in two places:

- `Guard` refuses, before any route runs, every request carrying an
  observer credential that is not a GET of one of OBSERVABLE_PATHS (403);
- `auth.require_identity` (on every /api route) resolves the link and
  allows it only on OBSERVABLE_ROUTES for the session it names (403).

Creation, every use and revocation are `observer` events in the session.
A revoked or expired link is 401, like no credential at all, and a stream
it holds open ends within RECHECK_SECONDS of the revocation or expiry.
Every use is audited, so uses are rate-limited (USES_PER_MINUTE per link
and gateway, then 429): a link holder cannot grow the session's log
without bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator

import msgspec
from fastapi import HTTPException, Request
from nats.js.errors import KeyNotFoundError

from events.kinds import ObserverAction, ObserverAudited
from eventbus.topology import observer_key
from events.types import UUID_PATTERN
from datetime import datetime, timezone

from .bus import Bus

HEADER = "X-Breakglass-Observer"
QUERY = "observer"
#: The route templates an observer may reach (GET only), by what they do.
OBSERVABLE_ROUTES: dict[str, str] = {
    "/api/session/{session_id}/stream": "stream",
    "/api/session/{session_id}/events": "events",
    "/api/session/{session_id}/export": "export",
}
OBSERVABLE_PATHS = re.compile(r"^/api/session/" + UUID_PATTERN.strip("^$") + r"/(stream|events|export)$")
OBSERVABLE_METHODS = frozenset({"GET", "HEAD"})
READ_ONLY = "an observer link is read-only: it can attach to, replay and export its one session, nothing else"
#: How often an attached observer's stream checks that its link still lives.
RECHECK_SECONDS = 2.0
#: Audited uses of one link a gateway allows per minute (then 429).
USES_PER_MINUTE = 30
_uses: dict[str, deque[float]] = {}
#: How long a link lives when its creator does not say.
DEFAULT_SECONDS = 3600.0


class Link(msgspec.Struct, kw_only=True):
    session_id: str
    created_by: str
    expires_at: float


def credential(request_headers, query_params) -> str | None:  # type: ignore[no-untyped-def]
    """The observer secret a request presents, if any ("" counts as presented)."""
    value = request_headers.get(HEADER)
    if value is None:
        value = query_params.get(QUERY)
    return None if value is None else value.strip()


def link_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def observer_name(observer_id: str) -> str:
    """The actor recorded for a use of the link."""
    return f"observer-{observer_id[:12]}"


class Observers:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def create(self, session_id: str, by: str, seconds: float) -> tuple[str, str, float]:
        """(secret, link id, expires_at) of a new link, recorded in the session."""
        secret = secrets.token_urlsafe(32)
        observer_id = link_id(secret)
        link = Link(session_id=session_id, created_by=by, expires_at=time.time() + seconds)
        await (await self._bus.kv()).put(observer_key(observer_id), msgspec.json.encode(link))
        await self._audit(session_id, by, ObserverAction.CREATED, observer_id,
                          expires_at=datetime.fromtimestamp(link.expires_at, timezone.utc))
        return secret, observer_id, link.expires_at

    async def resolve(self, secret: str) -> tuple[str, Link] | None:
        """(link id, link) of a live link, None for anything else."""
        if not 20 <= len(secret) <= 100:
            return None
        observer_id = link_id(secret)
        try:
            entry = await (await self._bus.kv()).get(observer_key(observer_id))
            link = msgspec.json.decode(entry.value or b"", type=Link)
        except (KeyNotFoundError, msgspec.DecodeError):
            return None
        return (observer_id, link) if time.time() < link.expires_at else None

    async def revoke(self, session_id: str, observer_id: str, by: str) -> bool:
        """False when no such link of this session exists (or it expired)."""
        kv = await self._bus.kv()
        try:
            link = msgspec.json.decode((await kv.get(observer_key(observer_id))).value or b"", type=Link)
        except (KeyNotFoundError, msgspec.DecodeError, ValueError):
            return False
        if link.session_id != session_id:
            return False
        await kv.delete(observer_key(observer_id))
        await self._audit(session_id, by, ObserverAction.REVOKED, observer_id)
        return True

    async def used(self, observer_id: str, link: Link, route: str) -> None:
        await self._audit(link.session_id, observer_name(observer_id), ObserverAction.USED, observer_id, route=route)

    async def _audit(self, session_id: str, by: str, action: ObserverAction, observer_id: str, **fields) -> None:  # type: ignore[no-untyped-def]
        await self._bus.log.append(ObserverAudited(
            session_id=session_id, by=by, action=action, observer_id=observer_id, **fields))


async def observer_identity(request: Request, secret: str) -> str:
    """The actor for a request made with an observer link: allowed only on
    OBSERVABLE_ROUTES of the link's own session, and audited there."""
    found = await Observers(request.app.state.bus).resolve(secret)
    if found is None:
        raise HTTPException(401, "this observer link is unknown, expired or revoked")
    observer_id, link = found
    route = getattr(request.scope.get("route"), "path", None)
    what = OBSERVABLE_ROUTES.get(route or "")
    if what is None or request.method not in OBSERVABLE_METHODS:
        raise HTTPException(403, READ_ONLY)
    if request.path_params.get("session_id") != link.session_id:
        raise HTTPException(403, "this observer link opens another session only")
    if not _take_use(observer_id, time.monotonic()):
        raise HTTPException(429, f"this observer link is used too often (at most {USES_PER_MINUTE} a minute); "
                                 "wait a minute", headers={"Retry-After": "60"})
    await Observers(request.app.state.bus).used(observer_id, link, what)
    return observer_name(observer_id)


def _take_use(observer_id: str, now: float) -> bool:
    """One more use of the link in the last minute, if under the limit."""
    if len(_uses) > 1000:  # forget idle links so the table stays small
        for key in [k for k, v in _uses.items() if not v or now - v[-1] > 60]:
            del _uses[key]
    window = _uses.setdefault(observer_id, deque())
    while window and now - window[0] > 60:
        window.popleft()
    if len(window) >= USES_PER_MINUTE:
        return False
    window.append(now)
    return True


async def while_live(frames: AsyncIterator[bytes], bus: Bus, secret: str) -> AsyncIterator[bytes]:
    """`frames` until the observer link `secret` is revoked or expires
    (checked every RECHECK_SECONDS, whether or not frames flow)."""
    loop = asyncio.get_running_loop()
    source = frames.__aiter__()
    links = Observers(bus)
    next_check = loop.time() + RECHECK_SECONDS
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(source.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, next_check - loop.time()))
            if done:
                try:
                    frame = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield frame
            if loop.time() >= next_check:
                if await links.resolve(secret) is None:
                    return
                next_check = loop.time() + RECHECK_SECONDS
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
