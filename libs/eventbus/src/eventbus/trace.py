"""Correlation: which request, session, turn and verb a piece of work is for.

An operator asks "what happened to turn T" of three services and a bus. The
answer is one set of ids that travels with the work: the gateway binds the
request id it gave the HTTP request and the ids it creates, publishes them
as NATS headers beside each command, and every worker binds them again from
those headers (and from the command itself) before it does anything. Log
lines pick them up from here (`eventbus.logfmt`), and events a worker appends
carry them as headers too.

The ids live in a context variable, so an asyncio task sees what was bound
where it was created, and two turns in one process never see each other's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

#: The fields a log line or a message header may carry, in display order.
FIELDS = ("request_id", "session_id", "turn_id", "verb", "by")

#: NATS header names; only the ids travel on the bus (`by` and `verb` are in
#: every command's body already).
HEADERS = {
    "request_id": "Breakglass-Request-Id",
    "session_id": "Breakglass-Session-Id",
    "turn_id": "Breakglass-Turn-Id",
}

#: A header value longer than this is not one of our ids; it is dropped.
MAX_ID_LENGTH = 64

_bound: ContextVar[Mapping[str, str]] = ContextVar("breakglass_trace", default={})


def current() -> Mapping[str, str]:
    return _bound.get()


def _merged(fields: Mapping[str, Any]) -> dict[str, str]:
    merged = dict(_bound.get())
    for name, value in fields.items():
        if name in FIELDS and value is not None and value != "":
            merged[name] = str(getattr(value, "value", value))  # enums log their value
    return merged


def bind(**fields: Any) -> None:
    """Add `fields` to the current context (None values are ignored).

    Meant for the top of a task or request: what is bound stays bound for
    the rest of the task and every task it creates.
    """
    _bound.set(_merged(fields))


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """`bind` for a block only."""
    token = _bound.set(_merged(fields))
    try:
        yield
    finally:
        _bound.reset(token)


def headers(**extra: str) -> dict[str, str]:
    """The bound ids as NATS headers, plus `extra` (e.g. Nats-Msg-Id)."""
    context = _bound.get()
    out = {header: context[name] for name, header in HEADERS.items() if name in context}
    out.update(extra)
    return out


def from_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The ids a message's headers carry. Anything odd is dropped, not
    trusted: headers come from the bus, where anyone with publish rights
    may write them."""
    found: dict[str, str] = {}
    for name, header in HEADERS.items():
        value = (headers or {}).get(header)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable() and " " not in value:
            found[name] = value
    return found


def of_command(command: object) -> dict[str, Any]:
    """The correlation fields a command's own body carries."""
    return {name: getattr(command, name) for name in FIELDS if getattr(command, name, None) is not None}
