"""The gateway's front door: checks made before any route sees a request.

- A request that presents an observer link may only GET the observable
  paths of a session (gateway.observers): anything else is 403 here,
  whatever route it names, before the route or its own guard runs.
- `Host` must be one this gateway serves (settings.hosts()): a page on some
  other site that rebinds its DNS name to this address gets 400, not the API.
- A request that carries a body to `/api` (anything but GET/HEAD/OPTIONS)
  must prove an identity by its headers first (cookies never open those
  methods): a stranger gets 401 before one byte of the body is read. The
  one exception is a notification's decision carrying a push grant.
- Bodies are capped: PROMPT_BODY_BYTES on the prompt route (a prompt is at
  most 32 KiB of text, JSON escaping included), BODY_BYTES elsewhere. A
  declared length over the cap is refused without reading; an undeclared
  (chunked) body is read only up to the cap. 413 either way.

Pure ASGI (no BaseHTTPMiddleware): the attach stream passes through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers, QueryParams

from . import observers
from .auth import identify
from .push.grants import DECISION_PATH, GRANT_HEADER, well_formed
from .settings import Settings

PROMPT_BODY_BYTES = 64 * 1024
BODY_BYTES = 16 * 1024
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Routes with a credential and a body cap of their own, both checked before
#: the body is read (api/alerts.py: Alertmanager's webhook, up to 1 MiB).
OWN_GUARD_PREFIXES = ("/api/alerts/",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def host_allowed(host: str | None, allowed: list[str]) -> bool:
    if "*" in allowed:
        return True
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name.split("]", 1)[0] + "]"
    else:
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return name in allowed


def carries_grant(path: str, headers: Headers) -> bool:
    """A notification's decision (api/push.py) proves itself with the grant
    its push carried, checked by the route; only that route, only a token
    of the grant's shape."""
    return path == DECISION_PATH and well_formed(headers.get(GRANT_HEADER))


def body_cap(path: str) -> int:
    return PROMPT_BODY_BYTES if path.startswith("/api/session/") and path.endswith("/prompt") else BODY_BYTES


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.allowed = [h.lower() for h in settings.hosts()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not host_allowed(headers.get("host"), self.allowed):
            await _refuse(send, 400, "unknown host; add it to BREAKGLASS_ALLOWED_HOSTS")
            return
        path: str = scope["path"]
        if path.startswith("/api/") and observers.credential(headers, QueryParams(scope.get("query_string", b""))) \
                is not None and not (scope["method"] in observers.OBSERVABLE_METHODS
                                     and observers.OBSERVABLE_PATHS.match(path)):
            await _refuse(send, 403, observers.READ_ONLY)
            return
        if scope["method"] in NO_BODY_METHODS or not path.startswith("/api/") or path.startswith(OWN_GUARD_PREFIXES):
            await self.app(scope, receive, send)
            return
        if identify(self.settings, headers) is None and not carries_grant(path, headers):
            await _refuse(send, 401, "authentication required", {"WWW-Authenticate": "Bearer"})
            return
        cap = body_cap(path)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isascii() or not declared.isdigit() or len(declared) > 12
                                     or int(declared) > cap):
            await _refuse(send, 413, f"request body over {cap} bytes")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > cap:
                await _refuse(send, 413, f"request body over {cap} bytes")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
