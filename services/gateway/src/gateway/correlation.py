"""A request id for every HTTP request, and one access line per API call.

The id is made here (never taken from the client: it also names the reply
subject of a verb the request asks for, so it must be unique) and returned
in `X-Request-Id`, so an operator can quote it from the browser's network
tab and find the same id in every service's log lines and in the NATS
headers of the commands and events the request caused (eventbus.trace).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventbus import trace
from events.types import new_id

log = logging.getLogger("gateway.access")

HEADER = "X-Request-Id"
#: Paths too frequent or too dull for an access line (probes, the PWA's files).
QUIET_PREFIXES = ("/health", "/ready", "/metrics")


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id()
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER.lower().encode(), request_id.encode())]
            await send(message)

        with trace.bound(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = scope.get("path", "")
                if path.startswith("/api") and not path.startswith(QUIET_PREFIXES):
                    log.info("%s %s %d %.0f ms", scope.get("method", ""), path, status,
                             (time.perf_counter() - started) * 1000)
