"""The FastAPI application: routes are wired here, nothing else happens here."""

from __future__ import annotations

from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nats.errors import Error as NatsError

from .alerts.triage import Triages
from .api import alerts, approvals, escalations, history, login, observers, passkeys, push, pve, sessions, vms
from .api import health as health_checks
from . import metrics, pwa, stepup
from .bus import Bus
from .correlation import RequestIds
from .eventstream import Streams
from .guard import Guard
from .logins import Logins
from .push.sender import Pusher
from .settings import Settings


#: Errors answered by the app itself ("gateway", not this module's name: the
#: name these records have always had).
logger = logging.getLogger("gateway")

#: Routers of `/api`, in the order they are matched.
API_ROUTERS = (sessions.router, approvals.router, pve.router, vms.router, health_checks.router, history.router,
               login.router, alerts.router, push.router, escalations.router, passkeys.router, observers.router)


def create_app(settings: Settings, bus: Bus | None = None) -> FastAPI:
    bus = bus or Bus(settings.nats_url)
    app = _app(settings)
    _hold(app, settings, bus)
    _ops_routes(app, settings, bus)
    for router in API_ROUTERS:
        app.include_router(router)
    stepup.install(app)
    _error_answers(app)
    app.add_middleware(Guard, settings=settings)  # innermost middleware, before routing reads a byte
    app.add_middleware(RequestIds)
    app.include_router(metrics.router)
    app.add_middleware(metrics.CountRequests)
    pwa.install(app)  # last: the PWA at `/`, never shadowing /api, /health, /ready
    return app


def _app(settings: Settings) -> FastAPI:
    """The API's own map stays off unless asked for (BREAKGLASS_API_DOCS=1):
    tools that need the schema take `app.openapi()` from the app object."""
    docs = settings.api_docs
    return FastAPI(
        title="breakglass gateway", version="0.1.0", lifespan=_lifespan,
        docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )


def _hold(app: FastAPI, settings: Settings, bus: Bus) -> None:
    """What the routes share, on `app.state`."""
    app.state.settings = settings
    app.state.bus = bus
    app.state.logins = Logins(bus)
    app.state.streams = Streams()  # open attach streams, ended at shutdown (see __main__)
    app.state.triages = Triages(bus, settings)
    app.state.pusher = Pusher(bus, settings)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    bus, pusher, triages = state.bus, state.pusher, state.triages
    await bus.start()
    pusher.start()
    try:
        yield
    finally:
        await pusher.close()
        await triages.close()
        await bus.close()


def _ops_routes(app: FastAPI, settings: Settings, bus: Bus) -> None:
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process serves HTTP. No auth, no dependencies."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: {"description": "not ready, with the reason"}})
    async def ready() -> JSONResponse:
        """Readiness: NATS connected and the streams and KV bucket exist. The
        body also says when the agent is allowed to run without a sandbox."""
        warning = {"agent_sandbox": "OFF: BREAKGLASS_ALLOW_UNSANDBOXED_AGENT=1"} if settings.agent_unsandboxed else {}
        reason = await bus.not_ready_reason()
        if reason:
            return JSONResponse({"status": "unavailable", "reason": reason, **warning}, status_code=503)
        return JSONResponse({"status": "ready", **warning})


def _error_answers(app: FastAPI) -> None:
    """The bus away is a 503 to try again; anything else a 500 without details."""
    for error in (ConnectionError, NatsError, asyncio.TimeoutError):
        app.add_exception_handler(error, _bus_unavailable)
    app.add_exception_handler(Exception, _internal_error)


async def _bus_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("bus unavailable on %s: %s", request.url.path, exc)
    return JSONResponse({"detail": "the message bus is unavailable; try again"}, status_code=503)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)
