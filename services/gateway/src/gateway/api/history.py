"""History routes (SPEC §3 additions): list sessions, page a session's
events as JSON, export a transcript (Markdown, or JSONL that
`breakglass verify` checks offline)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Depends, Query, Request, Response

from eventbus import export, index
from events import transcript
from events.kinds import Outcome

from ..hub import with_id
from ..auth import require_identity
from .deps import SessionIdParam, bus_of, event_id, require_session

router = APIRouter(prefix="/api", dependencies=[Depends(require_identity)], tags=["history"])


@router.get("/sessions", responses={200: {"description": "`{sessions: [...], next_before, searched, stored}`, newest first; a search looks at about 2,000 sessions per call (`searched` of `stored`) and goes on from `next_before`"}})
async def list_sessions(
    request: Request,
    q: Annotated[str, Query(max_length=200, description="filter on title, creator or id")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, description="the `next_before` of the previous page")] = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601)")] = None,
    outcome: Annotated[Outcome | None, Query(description="the last turn's outcome")] = None,
) -> Response:
    bus = bus_of(request)
    search = index.Search(text=q, since=_aware(since), until=_aware(until), outcome=outcome.value if outcome else None)
    page = await index.page_sessions(bus.js, bus.topology, search=search, limit=limit, before=before)
    return Response(msgspec.json.encode(page), media_type="application/json")


def _aware(at: datetime | None) -> datetime | None:
    """A date without a zone is UTC (every stored time is)."""
    return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at


@router.get("/session/{session_id}/events", responses={404: {"description": "unknown session"}})
async def page_events(
    request: Request,
    session_id: SessionIdParam,
    after: Annotated[str | None, Query(description="an event id (a decimal number)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    """`{events: [{id, kind, ...}], next_after}`: the stored events after `after`."""
    bus = bus_of(request)
    start = event_id(after, "after")
    await require_session(bus, session_id)
    records = await bus.log.read(session_id, after=start, limit=limit)
    body = b'{"events":[' + b",".join(with_id(r.seq, r.data) for r in records) + b'],"next_after":%d}' % (
        records[-1].seq if records else start
    )
    return Response(body, media_type="application/json")


@router.get("/session/{session_id}/export", responses={404: {"description": "unknown session"}})
async def export_session(
    request: Request,
    session_id: SessionIdParam,
    format: Annotated[Literal["md", "jsonl"], Query()] = "jsonl",
) -> Response:
    bus = bus_of(request)
    await require_session(bus, session_id)
    records = await bus.log.read(session_id)
    name = f"breakglass-{session_id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "md":
        text = transcript.markdown(session_id, [(r.seq, r.data) for r in records])
        return Response(text, media_type="text/markdown; charset=utf-8", headers=headers)
    return Response(b"".join(export.jsonl(session_id, records)), media_type="application/x-ndjson", headers=headers)


