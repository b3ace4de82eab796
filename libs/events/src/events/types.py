"""Constrained field types shared by every message.

Constraints live in the types so that msgspec enforces them at decode time:
a session id that is not a UUID never reaches a subject name, a prompt over
the size limit never reaches the bus.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated

import msgspec

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

#: A breakglass session id: a lower-case UUID. Used inside subject names, so
#: the pattern also guarantees no `.`, `*`, `>` or whitespace can get there.
SessionId = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN, description="Lower-case UUID.")]
TurnId = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN, description="Lower-case UUID of one turn.")]
RequestId = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)]

#: Who acted: an operator's name, `agent`, or a service name.
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]

MAX_PROMPT_BYTES = 32 * 1024
#: Characters, not bytes: msgspec measures str length in characters. The
#: byte limit is checked where the body arrives (the gateway).
Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROMPT_BYTES)]

ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-\[\]]+$")]

IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, TypeError, AttributeError):
        return False


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
