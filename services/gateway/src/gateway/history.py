"""The sessions index and a session's stored events, for the history list,
read-only replay and exports.

The index is computed when asked, from what the bus already knows: the
session records in KV, per-subject counts from one stream-info call, and
each session's first and last event (direct gets). No second copy of the
log to keep in step.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from nats.js.errors import NoKeysError, NotFoundError

from events import subjects
from events.codec import ContractError, decode, decode_event_lenient
from events.commands import SessionRecord
from events.kinds import TurnEnded, UserPrompted
from events.locks import LOCK_PREFIX
from events.log import Record

from .bus import Bus

TITLE_SCAN = 20
TITLE_CHARS = 120


class SessionSummary(msgspec.Struct, kw_only=True):
    session_id: str
    created_by: str
    created_at: datetime
    title: str
    state: str  # "running" | "idle"
    event_count: int
    last_event_at: datetime | None = None
    outcome: str | None = None


async def list_sessions(bus: Bus, *, query: str = "", limit: int = 50) -> list[SessionSummary]:
    kv = await bus.kv()
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    records: list[SessionRecord] = []
    running: set[str] = set()
    for key in keys:
        if key.startswith(LOCK_PREFIX):
            running.add(key[len(LOCK_PREFIX):])
        elif key.startswith("sessions."):
            try:
                records.append(decode((await kv.get(key)).value or b"", SessionRecord))
            except (ContractError, Exception):
                continue
    records.sort(key=lambda r: r.created_at, reverse=True)
    info = await bus.js.stream_info(bus.topology.events_stream, subjects_filter=subjects.SESSION_EVENTS_ALL)
    counts = (info.state.subjects or {}) if info.state else {}
    summaries = await asyncio.gather(*(_summary(bus, r, counts, r.session_id in running) for r in records))
    needle = query.strip().lower()
    if needle:
        summaries = [s for s in summaries if needle in s.title.lower() or needle in s.created_by.lower()
                     or needle in s.session_id]
    return summaries[:limit]


async def _summary(bus: Bus, record: SessionRecord, counts: dict[str, int], running: bool) -> SessionSummary:
    sid = record.session_id
    count = counts.get(subjects.session_events(sid), 0)
    title, last_at, outcome = "(no prompt yet)", None, None
    if count:
        for r in await bus.log.read(sid, limit=TITLE_SCAN):
            event = decode_event_lenient(r.data)
            if isinstance(event, UserPrompted):
                title = event.text.strip().splitlines()[0][:TITLE_CHARS] if event.text.strip() else title
                break
        try:
            last = await bus.js.get_last_msg(bus.topology.events_stream, subjects.session_events(sid), direct=True)
            event = decode_event_lenient(last.data or b"")
            if event is not None:
                last_at = event.ts
                outcome = event.outcome.value if isinstance(event, TurnEnded) and event.outcome else None
        except (NotFoundError, ContractError):
            pass
    return SessionSummary(
        session_id=sid, created_by=record.created_by, created_at=record.created_at, title=title,
        state="running" if running else "idle", event_count=count, last_event_at=last_at, outcome=outcome,
    )


async def events_page(bus: Bus, session_id: str, *, after: int, limit: int) -> list[Record]:
    return await bus.log.read(session_id, after=after, limit=limit)
