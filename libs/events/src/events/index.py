"""The sessions index, for the PWA's history list and `breakglass sessions`.

Computed when asked, from what the bus already knows: the session records
in KV, per-subject counts from one stream-info call, and each session's
first and last events. No second copy of the log to keep in step.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from nats.js.errors import KeyNotFoundError, NotFoundError

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from . import subjects
from .codec import ContractError, decode, decode_event_lenient
from .commands import SessionRecord
from .kinds import AlertReceived, TurnEnded, UserPrompted, VerbPhase, VerbProgressed
from .locks import LOCK_PREFIX
from .log import EventLog
from .topology import Topology, kv_keys

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
    #: Power verbs that ran on the host for this session (not refused).
    verbs_run: int = 0


async def list_sessions(
    js: JetStreamContext, kv: KeyValue, topology: Topology, *, query: str = "", limit: int = 50,
) -> list[SessionSummary]:
    keys = await kv_keys(kv)
    records: list[SessionRecord] = []
    running: set[str] = set()
    for key in keys:
        if key.startswith(LOCK_PREFIX):
            running.add(key[len(LOCK_PREFIX):])
        elif key.startswith("sessions."):
            try:
                records.append(decode((await kv.get(key)).value or b"", SessionRecord))
            except (ContractError, KeyNotFoundError):
                continue
    records.sort(key=lambda r: r.created_at, reverse=True)
    info = await js.stream_info(topology.events_stream, subjects_filter=subjects.SESSION_EVENTS_ALL)
    counts = (info.state.subjects or {}) if info.state else {}
    log = EventLog(js, topology)
    summaries = await asyncio.gather(
        *(_summary(js, log, topology, r, counts, r.session_id in running) for r in records)
    )
    verbs = await _verbs_run(js, topology)
    for summary in summaries:
        summary.verbs_run = verbs.get(summary.session_id, 0)
    needle = query.strip().lower()
    if needle:
        summaries = [s for s in summaries if needle in s.title.lower() or needle in s.created_by.lower()
                     or needle in s.session_id]
    return summaries[:limit]


async def _summary(
    js: JetStreamContext, log: EventLog, topology: Topology, record: SessionRecord, counts: dict[str, int], running: bool,
) -> SessionSummary:
    sid = record.session_id
    count = counts.get(subjects.session_events(sid), 0)
    title, last_at, outcome = "(no prompt yet)", None, None
    if count:
        for r in await log.read(sid, limit=TITLE_SCAN):
            event = decode_event_lenient(r.data)
            if isinstance(event, AlertReceived):  # an alert's triage session: named by its alert
                title = f"alert: {event.alertname} on {event.vm}"[:TITLE_CHARS]
                break
            if isinstance(event, UserPrompted):
                title = event.text.strip().splitlines()[0][:TITLE_CHARS] if event.text.strip() else title
                break
        try:
            last = await js.get_last_msg(topology.events_stream, subjects.session_events(sid), direct=True)
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


async def _verbs_run(js: JetStreamContext, topology: Topology) -> dict[str, int]:
    """Verbs that ran, per session, from one pass over the verb audit subject
    (every verb is recorded there; presses are few, sessions' events many)."""
    subject = subjects.audit("verb")
    try:
        last = (await js.get_last_msg(topology.events_stream, subject, direct=True)).seq or 0
    except NotFoundError:
        return {}
    counts: dict[str, int] = {}
    sub = await js.subscribe(
        subject, stream=topology.events_stream, ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=2.0),
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            event = decode_event_lenient(msg.data)
            if (isinstance(event, VerbProgressed) and event.phase is VerbPhase.DONE and not event.rejected
                    and event.session_id):
                counts[event.session_id] = counts.get(event.session_id, 0) + 1
            if msg.metadata.sequence.stream >= last:
                return counts
    finally:
        await sub.unsubscribe()
