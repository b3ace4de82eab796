"""The sessions index, for the PWA's history list and `breakglass sessions`.

Computed when asked, from what the bus already knows, without a consumer
and without reading anything per session before the page is chosen:

- the page: session records are created once each, so their order in the
  KV bucket's stream is creation order; the newest N (before a cursor) are
  read backwards from the stream's tail (`eventbus.direct.newest`);
- then, for that page only: each session's first events (title, and the
  event count from the server's pending count), the newest event of every
  session on the page and their lock keys (two multi-last requests).

So a first page costs the same with 1,000 or 100,000 sessions stored.
Search walks the same pages newest first until it has enough matches or
has looked at SEARCH_SCAN sessions (then it answers "searched N of M"
with a cursor to go on: a bounded scan, not an index, because titles are
the sessions' first prompts, in the events, and a process remembers each
title it read): filters on the record (creator, id, date) cost nothing
per session, a title or outcome filter costs the page's reads.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from . import direct
from events import subjects
from events.codec import ContractError, decode, decode_event_lenient
from events.commands import SessionRecord
from events.kinds import AlertReceived, TurnEnded, UserPrompted, VerbPhase, VerbProgressed
from .topology import SESSION_KEYS, Topology, lock_key

TITLE_SCAN = 20
TITLE_CHARS = 120
#: Sessions read per step while searching.
SEARCH_STEP = 200
#: Sessions a search looks at per call before it answers (with a cursor to go on).
SEARCH_SCAN = 2_000


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
    #: The VM the session is bound to (None: the default VM).
    vm: str | None = None


class Search(msgspec.Struct, kw_only=True, frozen=True):
    """What to look for; every field left empty matches everything."""

    #: In the title, the creator or the id (case-insensitive).
    text: str = ""
    #: Created at or after / before.
    since: datetime | None = None
    until: datetime | None = None
    #: The last turn's outcome (`ok`, `error`, ...).
    outcome: str | None = None

    def on_record(self, record: SessionRecord) -> bool | None:
        """True/False when the record alone decides, None when the title decides."""
        if self.since is not None and record.created_at < self.since:
            return False
        if self.until is not None and record.created_at >= self.until:
            return False
        needle = self.text.strip().lower()
        if not needle or needle in record.created_by.lower() or needle in record.session_id:
            return True
        return None

    def on_summary(self, summary: SessionSummary) -> bool:
        needle = self.text.strip().lower()
        if needle and not (needle in summary.title.lower() or needle in summary.created_by.lower()
                           or needle in summary.session_id):
            return False
        return self.outcome is None or summary.outcome == self.outcome


class Page(msgspec.Struct, kw_only=True):
    sessions: list[SessionSummary]
    #: Pass as `before` for the next (older) page; None when this was the last.
    next_before: int | None = None
    #: Sessions looked at for this page (a search stops after about SEARCH_SCAN).
    searched: int = 0
    #: Sessions stored (a search's "searched N of M"); None for a plain page.
    stored: int | None = None


async def page_sessions(
    js: JetStreamContext, topology: Topology, *, search: Search = Search(), limit: int = 50, before: int | None = None,
    scan: int = SEARCH_SCAN,
) -> Page:
    """The newest `limit` sessions matching `search`, created before the
    cursor `before` (a `next_before` of an earlier page).

    A search looks at about `scan` sessions at most per call, newest
    first (a title costs a read the first time a process sees it): it
    answers what it found, how many it looked at and how many are stored,
    and a `next_before` to go on from when it stopped short."""
    nc = js._nc
    filter_ = f"{topology.kv_subjects}.{SESSION_KEYS}.*"
    plain = search == Search()
    found: list[SessionSummary] = []
    cursor = before
    searched = 0
    while len(found) < limit:
        if not plain and searched >= scan:
            break  # the rest is another call's work, from `cursor` (next_before)
        step = limit - len(found) if plain else min(max(SEARCH_STEP, limit), scan - searched)
        records = await _records_before(nc, topology.kv_stream, filter_, step, cursor)
        if not records:
            cursor = None
            break
        searched += len(records)
        decided = [(seq, r, search.on_record(r)) for seq, r in records]
        undecided = [r.session_id for _, r, verdict in decided if verdict is None]
        titles = await _titles(js, topology, undecided) if undecided else {}
        needle = search.text.strip().lower()
        candidates = [(seq, r) for seq, r, verdict in decided
                      if verdict or (verdict is None and needle in titles.get(r.session_id, "").lower())]
        summaries = await _summaries(js, topology, [r for _, r in candidates])
        for (seq, _), summary in zip(candidates, summaries):
            if search.on_summary(summary):
                found.append(summary)
                cursor = seq
                if len(found) == limit:
                    break
        else:
            cursor = records[-1][0]
        if len(records) < step:
            if len(found) < limit:
                cursor = None  # the oldest session was looked at
            break
    stored = None if plain else await _stored(nc, topology.kv_stream, filter_)
    return Page(sessions=found, next_before=cursor, searched=searched, stored=stored)


async def _stored(nc, stream: str, filter_: str) -> int:  # type: ignore[no-untyped-def]
    """How many session records are stored: one direct get of the first,
    whose pending count is the rest (counted by the server)."""
    got, more = await direct.get_batch(nc, stream, seq=1, subject=filter_, batch=1)
    return len(got) + more


async def list_sessions(
    js: JetStreamContext, kv: KeyValue | None, topology: Topology, *, query: str = "", limit: int = 50,
) -> list[SessionSummary]:
    """The newest `limit` sessions whose title, creator or id holds `query`."""
    return (await page_sessions(js, topology, search=Search(text=query), limit=limit)).sessions


async def _records_before(nc, stream: str, filter_: str, n: int, before: int | None) -> list[tuple[int, SessionRecord]]:  # type: ignore[no-untyped-def]
    """The newest `n` session records with a stream sequence < `before`, newest first."""
    out: list[tuple[int, SessionRecord]] = []
    for g in reversed(await direct.newest(nc, stream, filter_, n, below=before)):
        try:
            out.append((g.seq, decode(g.data, SessionRecord)))
        except ContractError:
            continue
    return out


#: Titles seen, by session: a title is the session's first prompt, so it
#: never changes once there is one. Bounded (oldest dropped first), so a
#: second search over many sessions reads only what it has not seen.
_TITLES: dict[str, str] = {}
TITLE_CACHE = 100_000


async def _titles(js: JetStreamContext, topology: Topology, ids: list[str]) -> dict[str, str]:
    """The title of each session of `ids` (empty when it has no prompt yet)."""
    missing = [sid for sid in ids if sid not in _TITLES]
    nc, stream = js._nc, topology.events_stream
    last_of, legacy = await _where(nc, stream, missing) if missing else ({}, set())
    missing = [sid for sid in missing if sid in last_of]  # no events: no title yet
    firsts = await asyncio.gather(*(
        direct.get_batch_any(nc, stream, seq=1, filters=_filters(sid, legacy), batch=TITLE_SCAN)
        for sid in missing))
    for sid, (first, _) in zip(missing, firsts):
        title = _title(first)
        if title is not None:
            _remember(sid, title)
    return {sid: _TITLES.get(sid, "") for sid in ids}


def _title(first: list[direct.Got]) -> str | None:
    """The first prompt's first line among a session's first events (an
    alert's triage session: named by its alert), None when none."""
    for g in first:
        event = _event(g.data)
        if isinstance(event, AlertReceived):
            return f"alert: {event.alertname} on {event.vm}"[:TITLE_CHARS]
        if isinstance(event, UserPrompted):
            text = event.text.strip()
            return text.splitlines()[0][:TITLE_CHARS] if text else ""
    return None


#: Event counts seen, by session: (its newest sequence then, the count, its
#: first sequence). A session whose newest event is still the same has the
#: same count, so a listing of idle sessions reads no events. Bounded.
_COUNTS: dict[str, tuple[int, int, int]] = {}


def _count(session_id: str, last: int, count: int, first: int) -> None:
    _COUNTS.pop(session_id, None)
    _COUNTS[session_id] = (last, count, first)
    if len(_COUNTS) > TITLE_CACHE:
        del _COUNTS[next(iter(_COUNTS))]


def _remember(session_id: str, title: str) -> None:
    _TITLES[session_id] = title
    if len(_TITLES) > TITLE_CACHE:
        del _TITLES[next(iter(_TITLES))]


#: Sessions per multi-last request (four subjects each; a batch answers at most direct.MAX_BATCH).
WHERE_CHUNK = 100


async def _where(nc, stream: str, ids: list[str]) -> tuple[dict[str | None, direct.Got], set[str | None]]:  # type: ignore[no-untyped-def]
    """The newest event of each session of `ids` that has one (the newest
    across its old subject and each writer's), and the sessions with
    anything on the old subject: a few multi-last requests, so the reads
    that follow ask only where events are."""
    chunks = [ids[i:i + WHERE_CHUNK] for i in range(0, len(ids), WHERE_CHUNK)]
    # Literal subjects (the old one and each writer's), not a wildcard per
    # session: the server looks each up in its subject index, where a
    # wildcard costs it more as sessions accumulate.
    answers = await asyncio.gather(*(
        direct.get_batch(nc, stream, multi_last=[f for sid in chunk for f in _subjects_of(sid)], batch=direct.MAX_BATCH)
        for chunk in chunks))
    last_of: dict[str | None, direct.Got] = {}
    legacy: set[str | None] = set()
    for got, _ in answers:
        for g in got:
            sid = subjects.session_of(g.subject)
            if subjects.writer_of(g.subject) is None:
                legacy.add(sid)
            if sid not in last_of or g.seq > last_of[sid].seq:
                last_of[sid] = g
    return last_of, legacy


def _subjects_of(sid: str) -> tuple[str, ...]:
    return (subjects.session_events(sid), *(subjects.session_writer(sid, w) for w in subjects.WRITERS))


def _filters(sid: str, legacy: set[str | None]) -> tuple[str, ...]:
    base, every = subjects.session_filters(sid)
    return (base, every) if sid in legacy else (every,)


async def _summaries(js: JetStreamContext, topology: Topology, records: list[SessionRecord]) -> list[SessionSummary]:
    """Summaries of `records`, in their order, from a bounded number of reads each."""
    if not records:
        return []
    nc = js._nc
    stream = topology.events_stream
    ids = [r.session_id for r in records]
    last_of, legacy = await _where(nc, stream, ids)

    async def first_of(sid: str) -> tuple[list[direct.Got], int, int]:
        """(the session's first events, how many it holds, its first sequence)."""
        last = last_of.get(sid)
        if last is None:
            return [], 0, 0
        known = _COUNTS.get(sid)
        if known is not None and known[0] == last.seq and sid in _TITLES:
            return [], known[1], known[2]  # nothing stored since it was counted
        # A known title needs no events, only the count (the first one and how many follow).
        batch = 1 if sid in _TITLES else TITLE_SCAN
        first, left = await direct.get_batch_any(nc, stream, seq=1, filters=_filters(sid, legacy), batch=batch)
        if not first:
            return [], 0, 0
        _count(sid, last.seq, len(first) + left, first[0].seq)
        return first, len(first) + left, first[0].seq

    locks_read = direct.get_batch(nc, topology.kv_stream,
                                  multi_last=[f"{topology.kv_subjects}.{lock_key(sid)}" for sid in ids], batch=len(ids))
    firsts, (locks, _) = await asyncio.gather(asyncio.gather(*(first_of(sid) for sid in ids)), locks_read)
    running = {g.subject.rsplit(".", 1)[-1] for g in locks
               if g.headers.get("KV-Operation") not in ("DEL", "PURGE") and g.data}
    # A verb's audit event is stored after the session's first event: the
    # audit subject is read from the page's oldest first event on, not from
    # the beginning of time.
    starts = [start for _, count, start in firsts if count]
    verbs = await _verbs_run(js, topology, set(ids), min(starts)) if starts else {}
    out = []
    for record, (first, count, _) in zip(records, firsts):
        sid = record.session_id
        title, last_at, outcome = "(no prompt yet)", None, None
        found = _TITLES.get(sid) if sid in _TITLES else _title(first)
        if found is not None:
            _remember(sid, found)
            title = found or title
        last = last_of.get(sid)
        if last is not None:
            event = _event(last.data)
            if event is not None:
                last_at = event.ts
                outcome = event.outcome.value if isinstance(event, TurnEnded) and event.outcome else None
        out.append(SessionSummary(
            session_id=sid, created_by=record.created_by, created_at=record.created_at, title=title,
            state="running" if sid in running else "idle", event_count=count,
            last_event_at=last_at, outcome=outcome, verbs_run=verbs.get(sid, 0), vm=record.vm,
        ))
    return out


def _event(data: bytes):  # type: ignore[no-untyped-def]
    """The event, or None for a kind this version does not know or bytes that do not decode."""
    try:
        return decode_event_lenient(data)
    except ContractError:
        return None


async def _verbs_run(js: JetStreamContext, topology: Topology, ids: set[str], seq: int) -> dict[str, int]:
    """Verbs that ran, per session of `ids`, from the verb audit subject
    from sequence `seq` on (every verb is recorded there, after its
    session's first event; presses are few, sessions' events many), read
    by direct gets."""
    nc = js._nc
    counts: dict[str, int] = {}
    while True:
        got, more = await direct.get_batch_any(nc, topology.events_stream, seq=seq, filters=subjects.audit_filters("verb"))
        for g in got:
            event = _event(g.data)
            if (isinstance(event, VerbProgressed) and event.phase is VerbPhase.DONE and not event.rejected
                    and event.session_id in ids):
                counts[event.session_id] = counts.get(event.session_id, 0) + 1
        if not got or not more:
            return counts
        seq = got[-1].seq + 1
