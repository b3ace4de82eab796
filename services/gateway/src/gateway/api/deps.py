"""What every route depends on: the caller's identity, the bus, path types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from events.types import UUID_PATTERN

from .. import sessions
from ..auth import require_identity
from ..bus import Bus

SessionIdParam = Annotated[str, Path(pattern=UUID_PATTERN, description="A lower-case UUID.")]
Identity = Annotated[str, Depends(require_identity)]


def bus_of(request: Request) -> Bus:
    return request.app.state.bus


async def require_session(bus: Bus, session_id: str) -> None:
    """404 unless the session exists."""
    try:
        await sessions.get_session(bus, session_id)
    except sessions.SessionNotFound:
        raise HTTPException(404, "unknown session") from None
