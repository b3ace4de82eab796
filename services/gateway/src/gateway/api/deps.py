"""What every route depends on: the caller's identity, the bus, path types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from events.types import UUID_PATTERN

from .. import sessions
from ..auth import require_identity
from ..bus import Bus

SessionIdParam = Annotated[str, Path(pattern=UUID_PATTERN, description="A lower-case UUID.")]
#: The largest event id (JetStream stream sequences are unsigned 64-bit).
MAX_EVENT_ID = 2**64 - 1


def event_id(value: str | None, what: str) -> int:
    """An event id from a header or query (0 when absent); 400 for anything
    that is not a decimal number JetStream could have issued."""
    if value is None:
        return 0
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 20 or int(value) > MAX_EVENT_ID:
        raise HTTPException(400, f"{what} must be an event id: a decimal number below 2^64")
    return int(value)
Identity = Annotated[str, Depends(require_identity)]


def bus_of(request: Request) -> Bus:
    return request.app.state.bus


async def require_session(bus: Bus, session_id: str) -> None:
    """404 unless the session exists."""
    try:
        await sessions.get_session(bus, session_id)
    except sessions.SessionNotFound:
        raise HTTPException(404, "unknown session") from None
