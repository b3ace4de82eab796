"""The gateway's Prometheus metrics and its `GET /metrics`.

- HTTP requests are counted by route *template* (`/api/session/{session_id}/stream`),
  never the raw path: a path holds a session id, and one series per session
  would grow without end. Methods outside the usual few are `other`.
- The counting middleware is plain ASGI, so it never buffers an SSE stream;
  a stream is counted when it ends, with the status it started with.
- `/metrics` needs a caller, like `/api`, and fails closed the same way: the
  API's own identity (bearer token, trusted edge header), or the scrape-only
  `BREAKGLASS_METRICS_TOKEN`. That token reads counts and nothing else, so
  Prometheus never holds the operator's token, which can reset the VM. Not
  open-but-bind-local, as exporters often are: the gateway has one listener
  and it is the one that faces the network (0.0.0.0 behind the proxy). The
  workers' endpoints hold the same kind of counts but listen on loopback by
  default (eventbus.metrics).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventbus.metrics import PREFIX

from .auth import require_identity

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Seconds to catch up: milliseconds for a phone resuming, seconds for a
#: long session replayed from the start.
REPLAY_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
REPLAY_EVENTS = (0, 1, 10, 50, 100, 500, 1000, 5000, 10000, 50000)
REPLAY_BYTES = (0, 1024, 16 * 1024, 64 * 1024, 256 * 1024, 1024**2, 4 * 1024**2, 16 * 1024**2, 64 * 1024**2)

HTTP_REQUESTS = Counter(f"{PREFIX}http_requests", "HTTP requests answered, by method, route template and status.",
                        ["method", "route", "status"])
SSE_CLIENTS = Gauge(f"{PREFIX}sse_clients", "Clients attached to a session's stream now.")
REPLAY_DURATION = Histogram(f"{PREFIX}replay_duration_seconds",
                            "An attach's catch-up: from attaching to `caught-up`.", buckets=REPLAY_SECONDS)
REPLAY_SIZE_EVENTS = Histogram(f"{PREFIX}replay_events", "Stored events replayed by one attach.",
                               buckets=REPLAY_EVENTS)
REPLAY_SIZE_BYTES = Histogram(f"{PREFIX}replay_size_bytes", "Bytes of stored events replayed by one attach.",
                              buckets=REPLAY_BYTES)


def route_of(scope: Scope) -> str:
    """The matched route's template; `other` for all else: the PWA's files
    and client routes (one mount, whatever the path) and no match at all."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and not isinstance(route, Mount) else "other"


class CountRequests:
    """ASGI middleware: `breakglass_http_requests_total` for every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the outer error handler answers if the app raises first

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            HTTP_REQUESTS.labels(method=method, route=route_of(scope), status=str(status)).inc()


class Replay:
    """Wraps a listener's `replayed` to measure one attach's catch-up."""

    def __init__(
        self, deliver: Callable[[int, bytes], object],
        deliver_many: Callable[[list[tuple[int, bytes]]], object] | None = None,
    ) -> None:
        self._deliver = deliver
        self._deliver_many = deliver_many
        self.events = 0
        self.bytes = 0

    def __call__(self, seq: int, data: bytes) -> object:
        self.events += 1
        self.bytes += len(data)
        return self._deliver(seq, data)

    def many(self, records: list[tuple[int, bytes]]) -> object:
        """For a replay handing on many records at once (EventLog.replay's
        `deliver_many`); needs `deliver_many`."""
        assert self._deliver_many is not None
        self.events += len(records)
        self.bytes += sum(len(data) for _, data in records)
        return self._deliver_many(records)

    def caught_up(self, started: float) -> None:
        """`started`: time.monotonic() when the attach began."""
        REPLAY_DURATION.observe(time.monotonic() - started)
        REPLAY_SIZE_EVENTS.observe(self.events)
        REPLAY_SIZE_BYTES.observe(self.bytes)


def _is_scraper(request: Request) -> bool:
    token = request.app.state.settings.metrics_token
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


async def require_scraper(request: Request) -> None:
    """The metrics token, or else whatever `/api` accepts (401 otherwise)."""
    if not _is_scraper(request):
        await require_identity(request)


router = APIRouter(tags=["ops"])


@router.get("/metrics", dependencies=[Depends(require_scraper)],
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: {"description": "no or wrong token"}})
async def metrics() -> Response:
    """Prometheus text format: every metric of this process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
