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


def create_app(settings: Settings, bus: Bus | None = None) -> FastAPI:
    bus = bus or Bus(settings.nats_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        pusher.start()
        try:
            yield
        finally:
            await pusher.close()
            await triages.close()
            await bus.close()

    # The API's own map stays off unless asked for (BREAKGLASS_API_DOCS=1):
    # tools that need the schema take `app.openapi()` from the app object.
    docs = settings.api_docs
    app = FastAPI(
        title="breakglass gateway", version="0.1.0", lifespan=lifespan,
        docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.bus = bus
    app.state.logins = Logins(bus)
    app.state.streams = Streams()  # open attach streams, ended at shutdown (see __main__)
    triages = app.state.triages = Triages(bus, settings)
    pusher = app.state.pusher = Pusher(bus, settings)

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

    app.include_router(sessions.router)
    app.include_router(approvals.router)
    app.include_router(pve.router)
    app.include_router(vms.router)
    app.include_router(health_checks.router)
    app.include_router(history.router)
    app.include_router(login.router)
    app.include_router(alerts.router)
    app.include_router(push.router)
    app.include_router(escalations.router)
    app.include_router(passkeys.router)
    app.include_router(observers.router)
    stepup.install(app)

    async def bus_unavailable(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("gateway").warning("bus unavailable on %s: %s", request.url.path, exc)
        return JSONResponse({"detail": "the message bus is unavailable; try again"}, status_code=503)

    for error in (ConnectionError, NatsError, asyncio.TimeoutError):
        app.add_exception_handler(error, bus_unavailable)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("gateway").exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_middleware(Guard, settings=settings)  # innermost middleware, before routing reads a byte
    app.add_middleware(RequestIds)
    app.include_router(metrics.router)
    app.add_middleware(metrics.CountRequests)
    pwa.install(app)  # last: the PWA at `/`, never shadowing /api, /health, /ready
    return app
