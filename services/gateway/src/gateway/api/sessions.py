"""Session routes (SPEC §3): open, attach, prompt, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel, Field

from events.types import MAX_PROMPT_BYTES

from .. import observers, sessions
from ..attach import frames
from ..eventstream import EventStream
from ..auth import require_identity
from .deps import Identity, SessionIdParam, bus_of, event_id, require_session
from .vms import resolve

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)])



class OpenedSession(BaseModel):
    session_id: str
    vm: str = Field(description="the VM the session is bound to")


class OpenBody(BaseModel):
    vm: str | None = Field(default=None, min_length=1, max_length=64,
                           description="the VM the session is about (name or VMID); default: the first VM")


class PromptBody(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_BYTES)
    model: str | None = Field(default=None, max_length=128)


class TurnStarted(BaseModel):
    status: str = "started"
    turn_id: str


class Cancelled(BaseModel):
    cancelled: bool


@router.post("/session", response_model=OpenedSession, responses={404: {"description": "unknown VM"}})
async def open_session(request: Request, who: Identity, body: Annotated[OpenBody | None, Body()] = None) -> OpenedSession:
    vms = request.app.state.settings.vms
    vm = resolve(vms, body.vm) if body is not None and body.vm is not None else vms.default
    bus = bus_of(request)
    session_id = await sessions.open_session(bus, who, vm=vm.name)
    await sessions.hint_warm(bus, session_id, who, request.app.state.settings.model, vm.name)
    return OpenedSession(session_id=session_id, vm=vm.name)


@router.get(
    "/session/{session_id}/stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": "replay, `caught-up`, then live"},
               404: {"description": "unknown session"}},
)
async def stream(
    request: Request,
    session_id: SessionIdParam,
    who: Identity,
    after: Annotated[str | None, Query(description="resume strictly after this event id (a decimal number)")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventStream:
    bus = bus_of(request)
    start = event_id(after, "after")
    if last_event_id is not None:
        start = event_id(last_event_id, "Last-Event-ID")
    await require_session(bus, session_id)
    keepalive = request.app.state.settings.keepalive_seconds
    events = frames(bus, session_id, start)
    secret = observers.credential(request.headers, request.query_params)
    if secret is not None:  # an observer's stream ends with its link; an observer never prompts, so no warm CLI
        events = observers.while_live(events, bus, secret)
    else:
        await sessions.hint_warm(bus, session_id, who, request.app.state.settings.model)  # its VM: from its record
    # The keepalive is a named event, not a comment: a browser's EventSource
    # never shows a comment to the page, and the PWA needs the keepalive to
    # PROVE the stream live (and learns the interval from it). Other clients
    # skip an event they do not listen for.
    return EventStream(events, keepalive=keepalive, streams=request.app.state.streams)


@router.post(
    "/session/{session_id}/prompt",
    status_code=202,
    response_model=TurnStarted,
    responses={404: {"description": "unknown session"}, 409: {"description": "a turn already runs"},
               422: {"description": "empty or oversized prompt, or unknown model"},
               503: {"description": "the turn was interrupted before it was queued"}},
)
async def prompt(request: Request, session_id: SessionIdParam, body: PromptBody, who: Identity) -> TurnStarted:
    settings = request.app.state.settings
    text = body.prompt
    if not text.strip():
        raise HTTPException(422, "the prompt is empty")
    if len(text.encode()) > MAX_PROMPT_BYTES:
        raise HTTPException(422, f"the prompt is over {MAX_PROMPT_BYTES} bytes")
    model = body.model or settings.model
    if model not in settings.models:
        raise HTTPException(422, f"unknown model {model!r}; allowed: {', '.join(settings.models)}")
    bus = bus_of(request)
    try:
        turn_id = await sessions.start_turn(bus, session_id, text, model, who)
    except sessions.SessionNotFound:
        raise HTTPException(404, "unknown session") from None
    except sessions.TurnBusy:
        raise HTTPException(409, "a turn is already running in this session") from None
    except sessions.TurnLost:
        raise HTTPException(503, "the turn was interrupted before it could start; send the prompt again") from None
    return TurnStarted(turn_id=turn_id)


@router.post("/session/{session_id}/cancel", response_model=Cancelled, responses={404: {"description": "unknown session"}})
async def cancel(request: Request, session_id: SessionIdParam, who: Identity) -> Cancelled:
    try:
        return Cancelled(cancelled=await sessions.cancel_turn(bus_of(request), session_id, who))
    except sessions.SessionNotFound:
        raise HTTPException(404, "unknown session") from None

